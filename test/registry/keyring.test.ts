import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { CredentialEntry } from '../../src/registry/credentials.ts';
import { CredentialKeyring, globMatch, normalizeCredentialKey } from '../../src/registry/keyring.ts';

/** A keyring whose credentials are named after their key, so lookups show which keys matched. */
function keyring(keys: readonly string[]): CredentialKeyring {
  const entries: CredentialEntry[] = keys.map((key) => ({
    key,
    credential: { kind: 'basic', username: key, password: 'pw', source: key },
  }));
  return new CredentialKeyring(entries);
}

function matched(keys: readonly string[], image: string): string[] {
  const slash = image.indexOf('/');
  return keyring(keys)
    .lookup(image.slice(0, slash), image.slice(slash + 1))
    .map((c) => c.source);
}

describe('normalizeCredentialKey', () => {
  const table: [string, string | undefined][] = [
    ['quay.io', 'quay.io'],
    ['https://quay.io', 'quay.io'],
    ['http://quay.io/', 'quay.io'],
    ['https://quay.io/v1/', 'quay.io'],
    ['https://quay.io/v2/', 'quay.io'],
    ['quay.io/acme', 'quay.io/acme'],
    ['https://quay.io/v2/acme/app', 'quay.io/acme/app'],
    ['registry.local:5000', 'registry.local:5000'],
    ['[::1]:5000/team', '[::1]:5000/team'],
    ['https://index.docker.io/v1/', 'docker.io'],
    ['index.docker.io', 'docker.io'],
    ['registry-1.docker.io', 'docker.io'],
    ['docker.io/library', 'docker.io/library'],
    ['*.example.com', '*.example.com'],
    ['HTTPS://quay.io', 'quay.io'],
    ['', undefined],
    ['https://', undefined],
    ['/path-only', undefined],
  ];
  for (const [key, expected] of table) {
    it(`${JSON.stringify(key)} → ${JSON.stringify(expected)}`, () => {
      assert.equal(normalizeCredentialKey(key), expected);
    });
  }
});

describe('globMatch (Go filepath.Match on one host label)', () => {
  const table: [string, string, boolean][] = [
    ['*', 'anything', true],
    ['*', '', true],
    ['a*', 'abc', true],
    ['*c', 'abc', true],
    ['a*c', 'abbbc', true],
    ['a*c', 'abcd', false],
    ['a?c', 'abc', true],
    ['a?c', 'ac', false],
    ['[a-c]x', 'bx', true],
    ['[a-c]x', 'dx', false],
    ['[^a-c]x', 'dx', true],
    ['[^a-c]x', 'ax', false],
    ['\\*', '*', true],
    ['\\*', 'a', false],
    ['[', 'a', false],
    ['[a-', 'a', false],
    // Escapes inside a class, and the unescaped "-" and "]" Go's filepath.Match refuses.
    ['[\\]]x', ']x', true],
    ['[\\-]x', '-x', true],
    ['[a-\\z]x', 'mx', true],
    ['[]a]x', 'ax', false],
    ['[-a]x', 'ax', false],
    ['[a-]x', 'ax', false],
    ['[a--]x', 'ax', false],
    ['[ab', 'a', false],
    ['[a\\', 'a', false],
    ['registry', 'registry', true],
    ['registry', 'Registry', false],
    ['*a*a*a*a*a*a*b', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', false],
  ];
  for (const [pattern, name, expected] of table) {
    it(`${pattern} ~ ${name} → ${expected}`, () => {
      assert.equal(globMatch(pattern, name), expected);
    });
  }
});

describe('CredentialKeyring.lookup (the kubelet keyring rules)', () => {
  const table: [string, readonly string[], string, string[]][] = [
    ['exact host', ['quay.io'], 'quay.io/acme/app', ['quay.io']],
    ['no match for another host', ['quay.io'], 'gcr.io/acme/app', []],
    ['scheme and /v1/ are ignored', ['https://quay.io/v1/'], 'quay.io/acme/app', ['https://quay.io/v1/']],
    [
      'most specific path first (reverse order)',
      ['quay.io', 'quay.io/acme', 'quay.io/acme/app'],
      'quay.io/acme/app',
      ['quay.io/acme/app', 'quay.io/acme', 'quay.io'],
    ],
    ['path must prefix the repository', ['quay.io/other'], 'quay.io/acme/app', []],
    // The kubelet compares paths as plain strings, not path segments.
    ['path prefix is a string prefix', ['quay.io/acme'], 'quay.io/acme-labs/app', ['quay.io/acme']],
    ['port must match', ['registry.local:5000'], 'registry.local:5000/app', ['registry.local:5000']],
    ['key without port does not match a port', ['registry.local'], 'registry.local:5000/app', []],
    ['key with port does not match no port', ['registry.local:5000'], 'registry.local/app', []],
    ['other port', ['registry.local:5000'], 'registry.local:5001/app', []],
    ['wildcard subdomain', ['*.example.com'], 'eu.example.com/app', ['*.example.com']],
    ['wildcard needs the same number of labels', ['*.example.com'], 'a.b.example.com/app', []],
    ['wildcard does not match the bare domain', ['*.example.com'], 'example.com/app', []],
    [
      'wildcard in the middle',
      ['registry.*.example.com'],
      'registry.eu.example.com/app',
      ['registry.*.example.com'],
    ],
    ['wildcard with port', ['*.example.com:5000'], 'eu.example.com:5000/app', ['*.example.com:5000']],
    ['IPv6 with port', ['[::1]:5000'], '[::1]:5000/team/app', ['[::1]:5000']],
    ['loopback IP', ['127.0.0.1:5000'], '127.0.0.1:5000/team/app', ['127.0.0.1:5000']],
    ['docker.io key', ['docker.io'], 'docker.io/library/nginx', ['docker.io']],
    [
      'index.docker.io/v1/ key',
      ['https://index.docker.io/v1/'],
      'docker.io/library/nginx',
      ['https://index.docker.io/v1/'],
    ],
    ['index.docker.io key', ['index.docker.io'], 'docker.io/bitnami/nats', ['index.docker.io']],
    [
      'registry-1.docker.io key',
      ['registry-1.docker.io'],
      'docker.io/library/nginx',
      ['registry-1.docker.io'],
    ],
    ['Hub credentials only for Hub', ['https://index.docker.io/v1/'], 'quay.io/library/nginx', []],
    [
      'Hub path key before Hub host key',
      ['https://index.docker.io/v1/', 'docker.io/bitnami'],
      'docker.io/bitnami/nats',
      ['docker.io/bitnami', 'https://index.docker.io/v1/'],
    ],
    [
      'aliases of one key keep insertion order',
      ['docker.io', 'https://index.docker.io/v1/'],
      'docker.io/library/nginx',
      ['docker.io', 'https://index.docker.io/v1/'],
    ],
    ['host names are compared exactly', ['Quay.io'], 'quay.io/acme/app', []],
  ];
  for (const [name, keys, image, expected] of table) {
    it(`${name}: ${keys.join(' ')} for ${image}`, () => {
      assert.deepEqual(matched(keys, image), expected);
    });
  }

  it('lists its keys in match order', () => {
    assert.deepEqual(keyring(['quay.io', 'https://quay.io/v2/acme', 'a.io', 'zz.io']).keys(), [
      'zz.io',
      'quay.io/acme',
      'quay.io',
      'a.io',
    ]);
  });
});
