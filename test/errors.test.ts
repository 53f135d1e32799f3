// One error shape: PullmapError carries a stable code and the ES2022 cause, each layer's codes are one
// catalogue with its own prefix and no code twice, and no source file branches on message text.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { CACHE_ERRORS, StoreUnavailableError, StoreWriteError } from '../src/cache/errors.ts';
import { answerOf as cacheAnswer } from '../src/cache/server.ts';
import { CLI_ERRORS } from '../src/cli/errors.ts';
import { CORE_ERRORS, fail, hasCode, ok, PullmapError, type Result } from '../src/core/errors.ts';
import { isStatus, KUBE_ERRORS, KubeApiError, KubeConfigError } from '../src/kube/errors.ts';
import { COPY_ERRORS } from '../src/mirror/errors.ts';
import { CREDENTIAL_ERRORS, REGISTRY_ERRORS, RegistryFailure, WIRE_ERRORS } from '../src/registry/errors.ts';
import { HttpError, SERVE_ERRORS } from '../src/serve/errors.ts';
import { answerOf as serveAnswer } from '../src/serve/http.ts';

test('PullmapError: code, message and cause; hasCode matches on the code only', () => {
  const root = new Error('ECONNREFUSED');
  const err = new KubeApiError('KUBE_UNREACHABLE', 'GET /api: connection refused', { cause: root });
  assert.ok(err instanceof PullmapError && err instanceof Error);
  assert.equal(err.code, 'KUBE_UNREACHABLE');
  assert.equal(err.cause, root);
  assert.equal(err.name, 'KubeApiError');
  assert.equal(hasCode(err, 'KUBE_UNREACHABLE', 'KUBE_TIMEOUT'), true);
  assert.equal(hasCode(err, 'KUBE_TIMEOUT'), false);
  assert.equal(hasCode(err), true);
  assert.equal(hasCode(Object.assign(new Error('x'), { code: 'KUBE_TIMEOUT' }), 'KUBE_TIMEOUT'), false);
  assert.equal(new KubeConfigError('no cluster').code, 'KUBE_CONFIG');
  assert.equal(new PullmapError('REF_EMPTY', 'empty').cause, undefined);
});

test('isStatus: only the API server answering with that status', () => {
  assert.equal(
    isStatus(new KubeApiError('KUBE_HTTP', 'gone', { status: 410, reason: 'Expired' }), 410),
    true,
  );
  assert.equal(isStatus(new KubeApiError('KUBE_HTTP', 'conflict', { status: 409 }), 410), false);
  assert.equal(isStatus(new KubeApiError('KUBE_TIMEOUT', 'slow', { status: 410 }), 410), false);
  assert.equal(isStatus(Object.assign(new Error('410'), { code: 'KUBE_HTTP', status: 410 }), 410), false);
});

test('Result: ok carries the value, fail the error', () => {
  const parse = (s: string): Result<number> =>
    /^\d+$/.test(s) ? ok(Number(s)) : fail(new PullmapError('CORE_NOT_A_NUMBER', `${s} is not a number`));
  const good = parse('42');
  const bad = parse('x');
  assert.deepEqual(good, { ok: true, value: 42 });
  assert.equal(bad.ok, false);
  if (!bad.ok) assert.equal(bad.error.code, 'CORE_NOT_A_NUMBER');
});

test('catalogues: one per layer, each code under its layer prefix, no code twice, each explained', () => {
  const catalogues: Record<string, { prefixes: string[]; codes: Record<string, string> }> = {
    core: { prefixes: ['REF_'], codes: CORE_ERRORS },
    kube: { prefixes: ['KUBE_'], codes: KUBE_ERRORS },
    registry: {
      prefixes: ['REG_', 'CRED_', 'WIRE_', 'ERR_INVALID_'],
      codes: { ...REGISTRY_ERRORS, ...CREDENTIAL_ERRORS, ...WIRE_ERRORS },
    },
    cache: { prefixes: ['CACHE_'], codes: CACHE_ERRORS },
    serve: { prefixes: ['SERVE_'], codes: SERVE_ERRORS },
    cli: { prefixes: ['CLI_'], codes: CLI_ERRORS },
    // Unprefixed: a metric label and map status messages show them as they were before the catalogue.
    mirror: { prefixes: [''], codes: COPY_ERRORS },
  };
  const seen = new Map<string, string>();
  for (const [layer, { prefixes, codes }] of Object.entries(catalogues)) {
    for (const [code, meaning] of Object.entries(codes)) {
      assert.ok(
        prefixes.some((p) => code.startsWith(p)),
        `${layer}: ${code} lacks the prefix ${prefixes}`,
      );
      assert.match(code, /^[A-Z][A-Z0-9_]+$/);
      assert.ok(meaning.length > 10, `${code} is explained`);
      assert.equal(seen.get(code), undefined, `${code} is in ${seen.get(code)} and ${layer}`);
      seen.set(code, layer);
    }
  }
});

test('the cache server answers each failure by its code, in the distribution error format', () => {
  const full = new StoreWriteError('commit', Object.assign(new Error('no space'), { code: 'ENOSPC' }));
  assert.equal(full.cause instanceof Error && full.systemCode, 'ENOSPC');
  const table: [Error | RegistryFailure, string | undefined, number, string][] = [
    [full, undefined, 503, 'UNAVAILABLE'],
    [new StoreUnavailableError('bucket down'), undefined, 503, 'UNAVAILABLE'],
    [new RegistryFailure('REG_NOT_FOUND', 'gone'), 'BLOB_UNKNOWN', 404, 'BLOB_UNKNOWN'],
    [new RegistryFailure('REG_RATE_LIMITED', 'slow down'), undefined, 429, 'TOOMANYREQUESTS'],
    [new RegistryFailure('REG_AUTH_REFUSED', 'no'), undefined, 403, 'DENIED'],
    [new RegistryFailure('REG_TIMEOUT', 'slow'), undefined, 504, 'UNAVAILABLE'],
    [new RegistryFailure('REG_SERVER_ERROR', '500'), undefined, 502, 'UNAVAILABLE'],
    [new TypeError('a bug'), undefined, 500, 'UNKNOWN'],
  ];
  for (const [error, unknownCode, status, code] of table) {
    const answer = cacheAnswer(error, unknownCode);
    assert.deepEqual([answer.status, answer.code], [status, code], error.message);
  }
  // A returned RegistryError (plain data) is answered as the thrown one is; a bug says nothing of itself.
  assert.deepEqual(cacheAnswer(new RegistryFailure('REG_NOT_FOUND', 'gone').toError(), 'MANIFEST_UNKNOWN'), {
    status: 404,
    code: 'MANIFEST_UNKNOWN',
    message: 'upstream: gone',
  });
  assert.equal(cacheAnswer(new TypeError('secret detail')).message.includes('secret'), false);
});

test('the webhook server answers a refusal by its code, anything else as a bare 500', () => {
  assert.deepEqual(serveAnswer(new HttpError('SERVE_UNSUPPORTED_MEDIA_TYPE', 'json only')), {
    status: 415,
    body: { error: 'json only', status: 415, code: 'SERVE_UNSUPPORTED_MEDIA_TYPE' },
  });
  assert.equal(serveAnswer(new HttpError('SERVE_BUSY', 'full')).status, 503);
  assert.deepEqual(serveAnswer(new Error('secret detail')), {
    status: 500,
    body: { error: 'internal error', status: 500 },
  });
});

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

test('every error class in src is on PullmapError (directly or through another of its classes)', () => {
  const direct = sources('src').flatMap((file) =>
    readFileSync(file, 'utf8')
      .split('\n')
      .flatMap((line, i) =>
        /\bclass \w+(<[^>]*>)? extends (Error|TypeError|RangeError)\b/.test(line) &&
        !file.endsWith('core/errors.ts')
          ? [`${file}:${i + 1}: ${line.trim()}`]
          : [],
      ),
  );
  assert.deepEqual(direct, []);
});

test('no source file branches on message text', () => {
  // Comparing, searching or matching an error's message: use its code (or its cause) instead.
  const onMessage =
    /\.message\s*(===|!==|==|!=)|\.message\??\.(includes|startsWith|endsWith|match|search|indexOf)\(|\.(test|exec)\([^)]*\.message\s*\)/;
  const offenders = sources('src').flatMap((file) =>
    readFileSync(file, 'utf8')
      .split('\n')
      .flatMap((line, i) => (onMessage.test(line) ? [`${file}:${i + 1}: ${line.trim()}`] : [])),
  );
  assert.deepEqual(offenders, []);
  // The pattern finds what it is meant to find.
  assert.ok(onMessage.test("if (err.message.includes('ECONNRESET'))"));
  assert.ok(onMessage.test('/timed out/.test(e.message)'));
  assert.ok(!onMessage.test("logger.warn('failed', { error: err.message })"));
});
