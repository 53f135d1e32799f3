// Listen addresses and loopback names, shared by `serve`, `cache` and the registry client.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isLoopbackName, parseListenAddress, splitHostPort } from '../../src/core/net.ts';

test('listen addresses', () => {
  assert.deepEqual(parseListenAddress('127.0.0.1:8443'), { host: '127.0.0.1', port: 8443 });
  assert.deepEqual(parseListenAddress(':7439'), { host: '0.0.0.0', port: 7439 });
  assert.deepEqual(parseListenAddress('[::1]:0'), { host: '::1', port: 0 });
  assert.deepEqual(parseListenAddress('localhost:1'), { host: 'localhost', port: 1 });
  for (const bad of ['', '8443', '127.0.0.1', '127.0.0.1:65536', '::1:80', 'a:b', '[::1]', 'h:80:81'])
    assert.equal(parseListenAddress(bad), undefined, bad);
});

test('loopback names', () => {
  for (const name of ['localhost', 'LOCALHOST', 'registry.localhost', '::1', '127.0.0.1', '127.3.2.1'])
    assert.ok(isLoopbackName(name), name);
  for (const name of ['0.0.0.0', '128.0.0.1', 'localhost.example', '::', '10.0.0.1', ''])
    assert.ok(!isLoopbackName(name), name);
});

test('host and port of a registry host, a credential key host or a URL host', () => {
  const cases: [string, string, string][] = [
    ['registry.example:5000', 'registry.example', '5000'],
    ['registry.example', 'registry.example', ''],
    ['[::1]:5000', '::1', '5000'],
    ['[::1]', '::1', ''],
    ['::1', '::1', ''],
    ['fe80::1:443', 'fe80::1:443', ''],
    ['[::1', '[::1', ''],
    ['host:', 'host', ''],
  ];
  for (const [text, host, port] of cases) assert.deepEqual(splitHostPort(text), { host, port }, text);
});
