// HTTPS_PROXY / HTTP_PROXY / NO_PROXY with Go's semantics (golang.org/x/net/http/httpproxy): the cases
// below are the ones Go's own tests check, so a setting means the same to pullmap as to containerd.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  type ProxyConfig,
  parseProxySettings,
  proxyFor,
  proxySettingsFromEnv,
  redactProxy,
} from '../../src/core/proxy.ts';

function config(noProxy: string): ProxyConfig {
  const parsed = parseProxySettings({
    httpsProxy: 'http://secure.proxy:3128',
    httpProxy: 'http://plain.proxy:3128',
    noProxy,
  });
  assert.ok(parsed.ok);
  return parsed.config;
}

const via = (c: ProxyConfig, url: string): string | undefined => proxyFor(c, new URL(url))?.host;

test('each scheme has its own proxy; HTTPS does not fall back to HTTP_PROXY', () => {
  const c = config('');
  assert.equal(via(c, 'https://registry.example/v2/'), 'secure.proxy:3128');
  assert.equal(via(c, 'http://registry.example/v2/'), 'plain.proxy:3128');
  const onlyHttp = parseProxySettings({ httpProxy: 'http://plain.proxy:3128' });
  assert.ok(onlyHttp.ok);
  assert.equal(via(onlyHttp.config, 'https://registry.example/'), undefined);
});

test('the loopback is never proxied, whatever NO_PROXY says', () => {
  const c = config('');
  for (const url of [
    'http://localhost:5000/',
    'https://LOCALHOST/',
    'http://127.0.0.1:5000/',
    'http://127.9.8.7/',
    'http://[::1]:5000/',
    'http://[::ffff:127.0.0.1]/',
  ])
    assert.equal(via(c, url), undefined, url);
  // Only the name "localhost" itself, as Go: a subdomain of it is a name like any other.
  assert.equal(via(c, 'http://registry.localhost/'), 'plain.proxy:3128');
});

test('NO_PROXY: names, .domains, IPs, CIDRs, ports and *', () => {
  const cases: [string, string, boolean][] = [
    // [NO_PROXY, url, proxied]
    ['example.com', 'https://example.com/', false],
    ['example.com', 'https://www.example.com/', false],
    ['example.com', 'https://notexample.com/', true],
    ['.example.com', 'https://example.com/', true],
    ['.example.com', 'https://www.example.com/', false],
    ['*.example.com', 'https://example.com/', true],
    ['*.example.com', 'https://a.b.example.com/', false],
    ['EXAMPLE.com', 'https://Example.COM/', false],
    ['example.com:443', 'https://example.com/', false],
    ['example.com:8443', 'https://example.com/', true],
    ['example.com:8443', 'https://example.com:8443/', false],
    ['10.1.2.3', 'http://10.1.2.3:5000/', false],
    ['10.1.2.3', 'http://10.1.2.4/', true],
    ['10.1.2.3:80', 'http://10.1.2.3/', false],
    ['10.1.2.3:80', 'http://10.1.2.3:81/', true],
    ['10.0.0.0/8', 'http://10.200.0.1/', false],
    ['10.0.0.0/8', 'http://11.0.0.1/', true],
    ['10.0.0.0/8', 'http://ten.example/', true],
    ['fd00::/8', 'http://[fd12::1]/', false],
    ['fd00::/8', 'http://[fe80::1]/', true],
    ['[2001:db8::1]:443', 'https://[2001:db8::1]/', false],
    ['2001:db8::1', 'https://[2001:db8:0::1]/', false],
    ['*', 'https://anything.example/', false],
    ['a.example, *', 'https://anything.example/', false],
    [' a.example , b.example ', 'https://b.example/', false],
    ['a.example,,b.example', 'https://c.example/', true],
    ['example.com.', 'https://example.com/', true],
    ['example.com', 'https://example.com./', false],
  ];
  for (const [noProxy, url, proxied] of cases)
    assert.equal(via(config(noProxy), url) !== undefined, proxied, `NO_PROXY=${noProxy} ${url}`);
});

test('proxy URLs: a bare host:port is http://; other schemes and paths are refused by name', () => {
  const bare = parseProxySettings({ httpsProxy: 'proxy.corp:3128' });
  assert.ok(bare.ok);
  assert.equal(bare.config.https?.href, 'http://proxy.corp:3128/');
  const tls = parseProxySettings({ httpsProxy: 'https://user:p%40ss@proxy.corp' });
  assert.ok(tls.ok);
  assert.equal(tls.config.https?.protocol, 'https:');
  assert.equal(redactProxy(tls.config.https as URL), 'https://proxy.corp');
  const socks = parseProxySettings({ httpsProxy: 'socks5://proxy.corp:1080' });
  assert.deepEqual(socks, {
    ok: false,
    errors: ['HTTPS_PROXY: proxy scheme socks5 is not supported; use an http:// or https:// proxy'],
  });
  const path = parseProxySettings(
    { httpProxy: 'http://proxy.corp:3128/path' },
    {
      httpsProxy: 'proxy.httpsProxy',
      httpProxy: 'proxy.httpProxy',
    },
  );
  assert.ok(!path.ok && path.errors[0]?.startsWith('proxy.httpProxy: '));
});

test('the environment: upper case first, empty means unset', () => {
  assert.deepEqual(
    proxySettingsFromEnv({
      HTTPS_PROXY: 'http://upper:1',
      https_proxy: 'http://lower:1',
      http_proxy: 'http://lower:2',
      HTTP_PROXY: '',
      no_proxy: '.corp',
    }),
    { httpsProxy: 'http://upper:1', httpProxy: 'http://lower:2', noProxy: '.corp' },
  );
  assert.deepEqual(proxySettingsFromEnv({}), {
    httpsProxy: undefined,
    httpProxy: undefined,
    noProxy: undefined,
  });
});
