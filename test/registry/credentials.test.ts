import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  type CredentialErrorCode,
  decodeBase64Strict,
  parseDockerCfg,
  parseDockerConfigJson,
  parsePullSecret,
} from '../../src/registry/credentials.ts';

const b64 = (text: string): string => Buffer.from(text, 'utf8').toString('base64');

describe('parseDockerConfigJson', () => {
  it('reads auth, username/password and identitytoken entries', () => {
    const result = parseDockerConfigJson(
      JSON.stringify({
        auths: {
          'quay.io': { auth: b64('robot:s3cr:et') },
          'https://index.docker.io/v1/': { username: 'hubuser', password: 'hubpass', email: 'x@y' },
          'registry.example.com': { identitytoken: 'refresh-token', username: '<token>' },
          'empty.example.com': { email: 'nobody@example.com' },
          'blank.example.com': { auth: '' },
        },
        credHelpers: { 'gcr.io': 'gcloud' },
      }),
    );
    assert.ok(result.ok);
    assert.deepEqual(result.value, [
      {
        key: 'quay.io',
        credential: { kind: 'basic', username: 'robot', password: 's3cr:et', source: 'config.json' },
      },
      {
        key: 'https://index.docker.io/v1/',
        credential: { kind: 'basic', username: 'hubuser', password: 'hubpass', source: 'config.json' },
      },
      {
        key: 'registry.example.com',
        credential: {
          kind: 'identityToken',
          username: '<token>',
          token: 'refresh-token',
          source: 'config.json',
        },
      },
    ]);
  });

  it('lets "auth" win over separate username and password, as Docker does', () => {
    const result = parseDockerConfigJson(
      JSON.stringify({ auths: { h: { auth: b64('a:b'), username: 'c', password: 'd' } } }),
    );
    assert.ok(result.ok);
    assert.deepEqual(result.value[0]?.credential, {
      kind: 'basic',
      username: 'a',
      password: 'b',
      source: 'config.json',
    });
  });

  it('accepts a config without auths', () => {
    const result = parseDockerConfigJson('{"credsStore":"desktop"}');
    assert.deepEqual(result, { ok: true, value: [] });
  });

  const bad: [string, string, CredentialErrorCode, string][] = [
    ['malformed JSON', '{"auths":', 'CRED_JSON_INVALID', 'config.json'],
    ['not an object', '[1,2]', 'CRED_SHAPE_INVALID', 'config.json'],
    ['auths not an object', '{"auths":"x"}', 'CRED_SHAPE_INVALID', 'auths'],
    ['entry not an object', '{"auths":{"quay.io":3}}', 'CRED_SHAPE_INVALID', 'auths["quay.io"]'],
    [
      'bad base64',
      '{"auths":{"quay.io":{"auth":"not base64!"}}}',
      'CRED_BASE64_INVALID',
      'auths["quay.io"].auth',
    ],
    [
      'base64 without a colon',
      `{"auths":{"quay.io":{"auth":"${b64('nocolon')}"}}}`,
      'CRED_AUTH_FORMAT',
      'auths["quay.io"].auth',
    ],
    [
      'base64 of invalid UTF-8',
      `{"auths":{"h":{"auth":"${Buffer.from([0xff, 0x3a, 0xfe]).toString('base64')}"}}}`,
      'CRED_BASE64_INVALID',
      'auths["h"].auth',
    ],
    ['username not a string', '{"auths":{"h":{"username":1}}}', 'CRED_SHAPE_INVALID', 'auths["h"].username'],
    [
      'password not a string',
      '{"auths":{"h":{"password":true}}}',
      'CRED_SHAPE_INVALID',
      'auths["h"].password',
    ],
    [
      'identitytoken not a string',
      '{"auths":{"h":{"identitytoken":{}}}}',
      'CRED_SHAPE_INVALID',
      'auths["h"].identitytoken',
    ],
  ];
  for (const [name, text, code, field] of bad) {
    it(`rejects ${name} naming ${field}`, () => {
      const result = parseDockerConfigJson(text);
      assert.equal(result.ok, false);
      if (result.ok) return;
      assert.equal(result.error.code, code);
      assert.equal(result.error.field, field);
      assert.ok(result.error.message.startsWith(field), result.error.message);
    });
  }

  it('never throws on arbitrary input', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.json()), (text) => {
        parseDockerConfigJson(text);
        parseDockerCfg(text);
      }),
      { numRuns: 1000 },
    );
    fc.assert(
      fc.property(fc.jsonValue(), (auths) => {
        parseDockerConfigJson(JSON.stringify({ auths }));
      }),
      { numRuns: 1000 },
    );
  });
});

describe('parseDockerCfg (legacy)', () => {
  it('reads the registry map without the auths wrapper', () => {
    const result = parseDockerCfg(JSON.stringify({ 'https://quay.io': { auth: b64('u:p'), email: 'e' } }));
    assert.ok(result.ok);
    assert.deepEqual(result.value, [
      {
        key: 'https://quay.io',
        credential: { kind: 'basic', username: 'u', password: 'p', source: '.dockercfg' },
      },
    ]);
  });

  it('names the field of a bad entry', () => {
    const result = parseDockerCfg('{"quay.io":{"auth":"%%%"}}');
    assert.equal(result.ok, false);
    if (!result.ok) assert.equal(result.error.field, '.dockercfg["quay.io"].auth');
  });
});

describe('parsePullSecret', () => {
  const configJson = JSON.stringify({ auths: { 'zarf.local:31999': { auth: b64('zarf-pull:pw') } } });

  it('reads kubernetes.io/dockerconfigjson', () => {
    const result = parsePullSecret({
      metadata: { namespace: 'apps', name: 'zarf-pull' },
      type: 'kubernetes.io/dockerconfigjson',
      data: { '.dockerconfigjson': b64(configJson) },
    });
    assert.ok(result.ok);
    assert.deepEqual(result.value, [
      {
        key: 'zarf.local:31999',
        credential: { kind: 'basic', username: 'zarf-pull', password: 'pw', source: 'secret apps/zarf-pull' },
      },
    ]);
  });

  it('reads kubernetes.io/dockercfg', () => {
    const result = parsePullSecret({
      type: 'kubernetes.io/dockercfg',
      data: { '.dockercfg': b64(JSON.stringify({ 'quay.io': { username: 'u', password: 'p' } })) },
    });
    assert.ok(result.ok);
    assert.equal(result.value.length, 1);
  });

  const bad: [string, Parameters<typeof parsePullSecret>[0], CredentialErrorCode, string][] = [
    ['wrong type', { type: 'Opaque', data: {} }, 'CRED_SECRET_TYPE', 'type'],
    ['no type', { data: {} }, 'CRED_SECRET_TYPE', 'type'],
    [
      'missing key',
      { type: 'kubernetes.io/dockerconfigjson', data: {} },
      'CRED_SECRET_DATA_MISSING',
      'data[".dockerconfigjson"]',
    ],
    [
      'data not base64',
      { type: 'kubernetes.io/dockerconfigjson', data: { '.dockerconfigjson': '{"auths":{}}' } },
      'CRED_BASE64_INVALID',
      'data[".dockerconfigjson"]',
    ],
    [
      'base64 of malformed JSON',
      { type: 'kubernetes.io/dockerconfigjson', data: { '.dockerconfigjson': b64('{"auths":') } },
      'CRED_JSON_INVALID',
      'data[".dockerconfigjson"]',
    ],
    [
      'bad auth inside',
      {
        type: 'kubernetes.io/dockerconfigjson',
        data: { '.dockerconfigjson': b64('{"auths":{"q":{"auth":"@@"}}}') },
      },
      'CRED_BASE64_INVALID',
      'data[".dockerconfigjson"].auths["q"].auth',
    ],
  ];
  for (const [name, secret, code, field] of bad) {
    it(`rejects ${name} naming ${field}`, () => {
      const result = parsePullSecret(secret);
      assert.equal(result.ok, false);
      if (result.ok) return;
      assert.equal(result.error.code, code);
      assert.equal(result.error.field, field);
    });
  }
});

describe('decodeBase64Strict', () => {
  const table: [string, string | undefined][] = [
    ['dTpw', 'u:p'],
    ['dTpwcQ==', 'u:pq'],
    ['dTpwcQ', 'u:pq'],
    ['', ''],
    ['dTpwcQ=', undefined],
    ['d', undefined],
    ['dTp w', undefined],
    ['dTp-', undefined],
    ['====', undefined],
  ];
  for (const [input, expected] of table) {
    it(`${JSON.stringify(input)} → ${JSON.stringify(expected)}`, () => {
      const bytes = decodeBase64Strict(input);
      assert.equal(bytes === undefined ? undefined : Buffer.from(bytes).toString('utf8'), expected);
    });
  }
});
