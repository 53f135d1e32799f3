import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isLoopbackHost, resolveEndpoint } from '../../src/registry/endpoint.ts';
import { classifyNetworkError, outcomeOf, type RegistryErrorCode } from '../../src/registry/errors.ts';
import { parseRetryAfter } from '../../src/registry/http.ts';

describe('resolveEndpoint', () => {
  const table: [string, Parameters<typeof resolveEndpoint>[1], string | RegistryErrorCode][] = [
    ['docker.io', {}, 'https://registry-1.docker.io'],
    ['index.docker.io', {}, 'https://registry-1.docker.io'],
    ['quay.io', {}, 'https://quay.io'],
    ['127.0.0.1:5000', {}, 'https://127.0.0.1:5000'],
    ['127.0.0.1:5000', { scheme: 'http' }, 'http://127.0.0.1:5000'],
    ['localhost:5000', { scheme: 'http' }, 'http://localhost:5000'],
    ['[::1]:5000', { scheme: 'http' }, 'http://[::1]:5000'],
    ['registry.local:5000', { scheme: 'http' }, 'REG_INSECURE_REFUSED'],
    ['registry.local:5000', { scheme: 'http', insecure: true }, 'http://registry.local:5000'],
    ['evil.com/path', {}, 'REG_BAD_INPUT'],
    ['user@host', {}, 'REG_BAD_INPUT'],
    ['', {}, 'REG_BAD_INPUT'],
  ];
  for (const [registry, settings, expected] of table) {
    it(`${registry || '(empty)'} ${JSON.stringify(settings)} → ${expected}`, () => {
      const result = resolveEndpoint(registry, settings);
      assert.equal(result.ok ? result.value.origin : result.error.code, expected);
    });
  }

  it('fills timeouts and limits, ignoring nonsense values', () => {
    const result = resolveEndpoint('quay.io', {
      requestTimeoutMs: -1,
      maxConcurrent: 0,
      connectTimeoutMs: 500,
    });
    assert.ok(result.ok);
    assert.equal(result.value.requestTimeoutMs, 10_000);
    assert.equal(result.value.maxConcurrent, 8);
    assert.equal(result.value.connectTimeoutMs, 500);
  });

  it('recognises loopback hosts', () => {
    for (const host of [
      '127.0.0.1',
      '127.1.2.3:80',
      'localhost',
      'localhost:5000',
      '[::1]:5000',
      'a.localhost',
    ])
      assert.equal(isLoopbackHost(host), true, host);
    for (const host of ['10.0.0.1', 'localhost.example.com', 'quay.io', '[::2]:5000', '128.0.0.1'])
      assert.equal(isLoopbackHost(host), false, host);
  });
});

describe('classifyNetworkError (by code, never by message)', () => {
  const error = (code: string, message = 'whatever the text says'): Error =>
    Object.assign(new Error(message), { code });
  const table: [unknown, RegistryErrorCode][] = [
    [error('ECONNREFUSED'), 'REG_CONNECTION_FAILED'],
    [error('ECONNRESET'), 'REG_CONNECTION_FAILED'],
    [error('UND_ERR_SOCKET'), 'REG_CONNECTION_FAILED'],
    [error('ENOTFOUND'), 'REG_DNS_FAILED'],
    [error('EAI_AGAIN'), 'REG_DNS_FAILED'],
    [error('UND_ERR_CONNECT_TIMEOUT'), 'REG_TIMEOUT'],
    [error('UND_ERR_HEADERS_TIMEOUT'), 'REG_TIMEOUT'],
    [error('UND_ERR_BODY_TIMEOUT'), 'REG_TIMEOUT'],
    [error('ETIMEDOUT'), 'REG_TIMEOUT'],
    [error('UNABLE_TO_VERIFY_LEAF_SIGNATURE'), 'REG_TLS_FAILED'],
    [error('DEPTH_ZERO_SELF_SIGNED_CERT'), 'REG_TLS_FAILED'],
    [error('CERT_HAS_EXPIRED'), 'REG_TLS_FAILED'],
    [error('ERR_TLS_CERT_ALTNAME_INVALID'), 'REG_TLS_FAILED'],
    [error('ERR_SSL_WRONG_VERSION_NUMBER'), 'REG_TLS_FAILED'],
    [error('HPE_INVALID_CONSTANT'), 'REG_INVALID_RESPONSE'],
    [error('UND_ERR_RES_EXCEEDED_MAX_SIZE'), 'REG_TOO_LARGE'],
    [new AggregateError([error('ECONNREFUSED'), error('ECONNREFUSED')]), 'REG_CONNECTION_FAILED'],
    [new AggregateError([error('ETIMEDOUT')]), 'REG_TIMEOUT'],
    [Object.assign(new Error('wrapped'), { cause: error('ENOTFOUND') }), 'REG_DNS_FAILED'],
    // A message that reads like a timeout is not one: only codes count.
    [new Error('connect ETIMEDOUT 10.0.0.1:443'), 'REG_CONNECTION_FAILED'],
    ['a string', 'REG_CONNECTION_FAILED'],
  ];
  for (const [err, expected] of table) {
    it(`${(err as { code?: string }).code ?? (err instanceof Error ? err.constructor.name : typeof err)} → ${expected}`, () => {
      const failure = classifyNetworkError(err, 'test');
      assert.equal(failure.code, expected);
    });
  }

  it('maps codes to probe outcomes', () => {
    assert.equal(outcomeOf('REG_NOT_FOUND'), 'NotFound');
    assert.equal(outcomeOf('REG_FORBIDDEN'), 'Unauthorized');
    assert.equal(outcomeOf('REG_AUTH_REFUSED'), 'Unauthorized');
    assert.equal(outcomeOf('REG_RATE_LIMITED'), 'RateLimited');
    assert.equal(outcomeOf('REG_SERVER_ERROR'), 'Unreachable');
    assert.equal(outcomeOf('REG_TLS_FAILED'), 'Unreachable');
    assert.equal(outcomeOf('REG_DEADLINE'), 'Timeout');
    assert.equal(outcomeOf('REG_DIGEST_MISMATCH'), 'Invalid');
  });
});

describe('parseRetryAfter', () => {
  const now = Date.parse('2026-01-01T00:00:00Z');
  const table: [string | undefined, number | undefined][] = [
    [undefined, undefined],
    ['7', 7_000],
    [' 0 ', 0],
    ['Thu, 01 Jan 2026 00:00:30 GMT', 30_000],
    ['Wed, 31 Dec 2025 23:00:00 GMT', 0],
    ['soon', undefined],
    ['-5', undefined],
    ['1.5', undefined],
  ];
  for (const [value, expected] of table) {
    it(`${JSON.stringify(value)} → ${expected}`, () => {
      assert.equal(parseRetryAfter(value, now), expected);
    });
  }
});
