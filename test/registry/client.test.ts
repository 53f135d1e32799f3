// RegistryClient against real docker-registry instances (anonymous, htpasswd, token, TLS); only the slow
// and the rate-limited cases use loopback stubs. Blobs are the cache's: test/cache/blob-client.test.ts.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { RegistryClient } from '../../src/registry/client.ts';
import type { RegistryCredential } from '../../src/registry/credentials.ts';
import { OCI_INDEX, OCI_MANIFEST } from '../../src/registry/media-types.ts';
import { buildImage, buildIndex, pushImage, pushIndex } from '../harness/images.ts';
import { type TempDir, tempDir } from '../harness/process.ts';
import { startRegistry, type TestRegistry } from '../harness/registry.ts';
import { basic, errorCode, keyring, plain, ref } from '../harness/registry-client.ts';
import {
  type LoopbackStub,
  startDelayingProxy,
  startRateLimitedRegistry,
} from '../harness/registry-stubs.ts';
import { startTokenServer, type TokenServer } from '../harness/token-server.ts';

describe('RegistryClient against an anonymous registry', () => {
  let registry: TestRegistry;
  let client: RegistryClient;
  const image = buildImage();
  const multi = buildIndex([
    { os: 'linux', architecture: 'amd64' },
    { os: 'linux', architecture: 'arm64' },
  ]);
  const dockerList = buildIndex(
    [
      { os: 'linux', architecture: 'amd64' },
      { os: 'linux', architecture: 's390x' },
    ],
    'docker',
  );
  const dockerImage = buildImage({ format: 'docker', files: { 'hello.txt': 'docker v2\n' } });

  before(async () => {
    registry = await startRegistry();
    await pushImage(registry, 'team/app', 'v1', image);
    await pushIndex(registry, 'team/multi', 'v1', multi);
    await pushIndex(registry, 'team/dockerlist', 'v1', dockerList);
    await pushImage(registry, 'team/dockerv2', 'v1', dockerImage);
    client = plain(registry.host);
  });
  after(async () => {
    await client.close();
    await registry.close();
  });

  it('HEADs a present manifest and answers its digest', async () => {
    const result = await client.headManifest(ref(`${registry.host}/team/app:v1`));
    assert.ok(result.ok, JSON.stringify(result));
    assert.equal(result.value.digest, image.manifest.digest);
    assert.equal(result.value.mediaType, OCI_MANIFEST);
    assert.equal(result.value.size, image.manifest.size);
  });

  it('answers NotFound for an absent tag and an absent repository', async () => {
    for (const text of [`${registry.host}/team/app:v2`, `${registry.host}/team/nothing:v1`]) {
      const result = await client.headManifest(ref(text));
      assert.equal(result.ok, false);
      if (result.ok) return;
      assert.deepEqual(
        [result.error.code, result.error.outcome, result.error.status],
        ['REG_NOT_FOUND', 'NotFound', 404],
      );
    }
  });

  it('finds a multi-arch OCI index (which a HEAD without the index type would miss)', async () => {
    const result = await client.headManifest(ref(`${registry.host}/team/multi:v1`));
    assert.ok(result.ok, JSON.stringify(result));
    assert.equal(result.value.digest, multi.index.digest);
    assert.equal(result.value.mediaType, OCI_INDEX);
    // The same HEAD accepting only single-image manifests: the registry says 404.
    const narrow = await request(`${registry.url}/v2/team/multi/manifests/v1`, {
      method: 'HEAD',
      headers: { accept: OCI_MANIFEST },
      dispatcher: registry.dispatcher,
    });
    await narrow.body.dump();
    assert.equal(narrow.statusCode, 404);
  });

  it('finds a Docker manifest list and a Docker v2 manifest', async () => {
    const list = await client.headManifest(ref(`${registry.host}/team/dockerlist:v1`));
    assert.ok(list.ok && list.value.digest === dockerList.index.digest, JSON.stringify(list));
    const single = await client.headManifest(ref(`${registry.host}/team/dockerv2:v1`));
    assert.ok(single.ok && single.value.digest === dockerImage.manifest.digest, JSON.stringify(single));
  });

  it('HEADs by digest', async () => {
    const present = await client.headManifest(ref(`${registry.host}/team/app@${image.manifest.digest}`));
    assert.ok(present.ok && present.value.digest === image.manifest.digest);
    const absent = await client.headManifest(ref(`${registry.host}/team/app@sha256:${'0'.repeat(64)}`));
    assert.equal(errorCode(absent), 'REG_NOT_FOUND');
  });

  it('GETs manifests by tag and by digest, verified', async () => {
    const byTag = await client.getManifest(ref(`${registry.host}/team/multi:v1`));
    assert.ok(byTag.ok, JSON.stringify(byTag));
    assert.deepEqual(byTag.value.bytes, multi.index.bytes);
    assert.equal(byTag.value.digest, multi.index.digest);
    assert.equal(byTag.value.mediaType, OCI_INDEX);
    const child = multi.images[1];
    assert.ok(child);
    const byDigest = await client.getManifest(ref(`${registry.host}/team/multi@${child.manifest.digest}`));
    assert.ok(byDigest.ok && byDigest.value.mediaType === OCI_MANIFEST);
    assert.deepEqual(byDigest.value.bytes, child.manifest.bytes);
  });

  it('refuses a manifest whose bytes do not match the digest asked for', async () => {
    const victim = buildImage({ files: { 'manifest-victim.txt': 'x\n' } });
    const digest = await pushImage(registry, 'team/corrupt', 'v1', victim);
    const hex = digest.slice('sha256:'.length);
    const file = join(registry.dir, 'data/docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data');
    // Still a valid manifest (one size changed), so only the digest check can catch it.
    const tampered = victim.manifest.bytes
      .toString('utf8')
      .replace(/"size":(\d+)/, (_, size: string) => `"size":${Number(size) + 1}`);
    await writeFile(file, tampered);
    const result = await client.getManifest(ref(`${registry.host}/team/corrupt@${digest}`));
    assert.equal(errorCode(result), 'REG_DIGEST_MISMATCH');
    assert.equal(result.ok ? '' : result.error.outcome, 'Invalid');
  });

  it('refuses a manifest larger than its bound', async () => {
    const small = plain(registry.host, { maxManifestBytes: 100 });
    const result = await small.getManifest(ref(`${registry.host}/team/app:v1`));
    await small.close();
    assert.equal(errorCode(result), 'REG_TOO_LARGE');
    assert.equal(result.ok ? '' : result.error.outcome, 'Invalid');
  });

  it('keeps connections alive across HEADs', async () => {
    const fresh = plain(registry.host);
    for (let i = 0; i < 20; i++) {
      const result = await fresh.headManifest(ref(`${registry.host}/team/keepalive:v${i}`));
      assert.equal(errorCode(result), 'REG_NOT_FOUND');
    }
    await fresh.close();
    const connections = await registry.clientAddresses({ method: 'HEAD', uri: '/v2/team/keepalive/' });
    assert.ok(connections.size <= 2, `20 HEADs used ${connections.size} connections`);
  });

  it('pings /v2/', async () => {
    const result = await client.ping(registry.host);
    assert.ok(result.ok);
    assert.deepEqual(
      [result.value.status, result.value.authRequired, result.value.apiVersion],
      [200, false, 'registry/2.0'],
    );
  });

  it('refuses plain HTTP to a host that is not loopback unless marked insecure', async () => {
    const strict = new RegistryClient({ defaults: { scheme: 'http' } });
    const result = await strict.headManifest(ref('registry.invalid/team/app:v1'));
    await strict.close();
    assert.equal(errorCode(result), 'REG_INSECURE_REFUSED');
  });

  it('answers Unreachable once the registry is stopped', async () => {
    const doomed = await startRegistry();
    const c = plain(doomed.host);
    assert.equal(errorCode(await c.headManifest(ref(`${doomed.host}/team/app:v1`))), 'REG_NOT_FOUND');
    await doomed.stop();
    const result = await c.headManifest(ref(`${doomed.host}/team/app:v1`));
    await c.close();
    await doomed.close();
    assert.equal(result.ok, false);
    if (result.ok) return;
    assert.deepEqual([result.error.code, result.error.outcome], ['REG_CONNECTION_FAILED', 'Unreachable']);
    assert.equal(result.error.systemCode, 'ECONNREFUSED');
  });
});

describe('RegistryClient with htpasswd Basic auth', () => {
  let registry: TestRegistry;
  const image = buildImage();

  before(async () => {
    registry = await startRegistry({ auth: { kind: 'htpasswd', users: { alice: 'wonderland' } } });
    await pushImage(registry, 'team/app', 'v1', image);
  });
  after(() => registry.close());

  it('answers the Basic challenge, then sends credentials up front', async () => {
    const client = plain(registry.host, {
      credentials: keyring(registry.host, basic('alice', 'wonderland')),
    });
    const first = await client.headManifest(ref(`${registry.host}/team/app:v1`));
    const second = await client.headManifest(ref(`${registry.host}/team/app:v1`));
    await client.close();
    assert.ok(first.ok && first.value.digest === image.manifest.digest, JSON.stringify(first));
    assert.ok(second.ok);
    const heads = await registry.requests({ method: 'HEAD', uri: '/v2/team/app/manifests/v1' });
    assert.deepEqual(
      heads.map((h) => h.status),
      [401, 200, 200],
    );
  });

  it('answers Unauthorized for wrong credentials and for none', async () => {
    for (const credentials of [keyring(registry.host, basic('alice', 'wrong')), undefined]) {
      const client = plain(registry.host, { credentials });
      const result = await client.headManifest(ref(`${registry.host}/team/app:v1`));
      await client.close();
      assert.equal(result.ok, false);
      if (result.ok) return;
      assert.deepEqual(
        [result.error.code, result.error.outcome, result.error.status],
        ['REG_UNAUTHORIZED', 'Unauthorized', 401],
      );
    }
  });

  it('tries the next matching credential when one is refused (rotation)', async () => {
    const credentials = keyring(registry.host, basic('alice', 'old-password'), basic('alice', 'wonderland'));
    const client = plain(registry.host, { credentials });
    const result = await client.headManifest(ref(`${registry.host}/team/app:v1`));
    await client.close();
    assert.ok(result.ok, JSON.stringify(result));
  });
});

describe('RegistryClient with token (Bearer) auth', () => {
  let dir: TempDir;
  let tokens: TokenServer;
  let registry: TestRegistry;
  let oldTokens: TokenServer;
  let oldRegistry: TestRegistry;
  const image = buildImage();

  before(async () => {
    dir = await tempDir('tokens');
    tokens = await startTokenServer(dir.path, {
      users: { bob: 'builder' },
      refreshTokens: { rt: 'bob' },
      expiresInSeconds: 120,
    });
    registry = await startRegistry({ auth: { kind: 'token', tokenServer: tokens } });
    await pushImage(registry, 'team/app', 'v1', image);
    oldTokens = await startTokenServer(dir.path, {
      users: { bob: 'builder' },
      acceptPost: false,
      anonymousPull: true,
    });
    oldRegistry = await startRegistry({ auth: { kind: 'token', tokenServer: oldTokens } });
    await pushImage(oldRegistry, 'team/app', 'v1', image);
  });
  after(async () => {
    await registry.close();
    await oldRegistry.close();
    await tokens.close();
    await oldTokens.close();
    await dir.remove();
  });

  it('gets a token with the OAuth2 POST form, caches it, and renews it after expires_in', async () => {
    let now = Date.now();
    const client = plain(registry.host, {
      credentials: keyring(registry.host, basic('bob', 'builder')),
      now: () => now,
    });
    const before = tokens.requests().length;
    for (let i = 0; i < 3; i++) {
      const result = await client.headManifest(ref(`${registry.host}/team/app:v1`));
      assert.ok(result.ok && result.value.digest === image.manifest.digest, JSON.stringify(result));
    }
    const issued = tokens.requests().slice(before);
    assert.deepEqual(
      issued.map((r) => [r.method, r.account, r.scopes.join(' '), r.status]),
      [['POST', 'bob', 'repository:team/app:pull', 200]],
    );
    assert.deepEqual(
      (await registry.requests({ method: 'HEAD', uri: '/v2/team/app/manifests/v1' })).map((r) => r.status),
      [401, 200, 200, 200],
    );
    now += 120_000; // past expires_in: the next request fetches a new token up front
    const renewed = await client.headManifest(ref(`${registry.host}/team/app:v1`));
    await client.close();
    assert.ok(renewed.ok);
    assert.equal(tokens.requests().length - before, 2);
  });

  it('answers Unauthorized when the token server refuses the credentials', async () => {
    const client = plain(registry.host, { credentials: keyring(registry.host, basic('bob', 'wrong')) });
    const result = await client.headManifest(ref(`${registry.host}/team/app:v1`));
    await client.close();
    assert.equal(result.ok, false);
    if (result.ok) return;
    assert.deepEqual([result.error.code, result.error.outcome], ['REG_AUTH_REFUSED', 'Unauthorized']);
    assert.equal(tokens.requests().at(-1)?.status, 401);
  });

  it('answers Unauthorized when an anonymous token grants nothing', async () => {
    const client = plain(registry.host);
    const result = await client.headManifest(ref(`${registry.host}/team/app:v1`));
    await client.close();
    assert.equal(errorCode(result), 'REG_UNAUTHORIZED');
    assert.equal(tokens.requests().at(-1)?.method, 'GET');
  });

  it('falls back to GET with Basic credentials when the token server has no POST form', async () => {
    const client = plain(oldRegistry.host, {
      credentials: keyring(oldRegistry.host, basic('bob', 'builder')),
    });
    const result = await client.headManifest(ref(`${oldRegistry.host}/team/app:v1`));
    await client.close();
    assert.ok(result.ok, JSON.stringify(result));
    assert.deepEqual(
      oldTokens.requests().map((r) => [r.method, r.status, r.account]),
      [
        ['POST', 404, undefined],
        ['GET', 200, 'bob'],
      ],
    );
  });

  it('pulls anonymously where the token server allows it', async () => {
    const client = plain(oldRegistry.host);
    const result = await client.headManifest(ref(`${oldRegistry.host}/team/app:v1`));
    await client.close();
    assert.ok(result.ok, JSON.stringify(result));
    assert.equal(oldTokens.requests().at(-1)?.account, undefined);
  });

  it('sends an identity token as an OAuth2 refresh_token grant', async () => {
    const identity = (token: string): RegistryCredential => ({
      kind: 'identityToken',
      username: undefined,
      token,
      source: 'test',
    });
    const client = plain(registry.host, { credentials: keyring(registry.host, identity('rt')) });
    const result = await client.headManifest(ref(`${registry.host}/team/app:v1`));
    await client.close();
    assert.ok(result.ok, JSON.stringify(result));
    const sent = tokens.requests().at(-1);
    assert.deepEqual(
      [sent?.method, sent?.status, sent?.account, sent?.form?.grant_type, sent?.form?.refresh_token],
      ['POST', 200, 'bob', 'refresh_token', 'rt'],
    );
    // A token the server does not know: the refusal comes back typed, with no fallback to GET.
    const stale = plain(registry.host, { credentials: keyring(registry.host, identity('revoked')) });
    const refused = await stale.headManifest(ref(`${registry.host}/team/app:v1`));
    await stale.close();
    assert.equal(errorCode(refused), 'REG_AUTH_REFUSED');
    assert.deepEqual(
      tokens
        .requests()
        .slice(-1)
        .map((r) => [r.method, r.status, r.form?.refresh_token]),
      [['POST', 401, 'revoked']],
    );
  });
});

describe('RegistryClient over TLS with a private CA', () => {
  let registry: TestRegistry;
  const image = buildImage();

  before(async () => {
    registry = await startRegistry({ tls: true });
    await pushImage(registry, 'team/app', 'v1', image);
  });
  after(() => registry.close());

  it('trusts the registry with its CA', async () => {
    const client = new RegistryClient({ endpoints: { [registry.host]: { caPem: registry.pki?.caPem } } });
    const result = await client.headManifest(ref(`${registry.host}/team/app:v1`));
    await client.close();
    assert.ok(result.ok && result.value.digest === image.manifest.digest, JSON.stringify(result));
  });

  it('answers Unreachable (TLS) without the CA', async () => {
    const client = new RegistryClient();
    const result = await client.headManifest(ref(`${registry.host}/team/app:v1`));
    await client.close();
    assert.equal(result.ok, false);
    if (result.ok) return;
    assert.deepEqual([result.error.code, result.error.outcome], ['REG_TLS_FAILED', 'Unreachable']);
  });
});

describe('RegistryClient against slow and rate-limiting registries', () => {
  let registry: TestRegistry;
  let slow: LoopbackStub;
  let limited: LoopbackStub;

  before(async () => {
    registry = await startRegistry();
    await pushImage(registry, 'team/app', 'v1', buildImage());
    slow = await startDelayingProxy(registry.url, 400);
    limited = await startRateLimitedRegistry(7);
  });
  after(async () => {
    await slow.close();
    await limited.close();
    await registry.close();
  });

  it('gives up after its own request timeout', async () => {
    const client = new RegistryClient({
      endpoints: { [slow.host]: { scheme: 'http', requestTimeoutMs: 100 } },
    });
    const result = await client.headManifest(ref(`${slow.host}/team/app:v1`));
    await client.close();
    // REG_TIMEOUT is its own request timeout; a caller's deadline would be REG_DEADLINE.
    assert.equal(result.ok, false);
    if (result.ok) return;
    assert.deepEqual([result.error.code, result.error.outcome], ['REG_TIMEOUT', 'Timeout']);
  });

  it('stops waiting at the caller’s deadline', async () => {
    const client = plain(slow.host);
    const result = await client.headManifest(ref(`${slow.host}/team/app:v1`), {
      signal: AbortSignal.timeout(50),
    });
    assert.equal(errorCode(result), 'REG_DEADLINE');
    assert.equal(result.ok ? '' : result.error.outcome, 'Timeout');
    // Given time, the same registry answers.
    const patient = await client.headManifest(ref(`${slow.host}/team/app:v1`));
    await client.close();
    assert.ok(patient.ok, JSON.stringify(patient));
  });

  it('bounds the requests in flight per host', async () => {
    const client = new RegistryClient({ endpoints: { [slow.host]: { scheme: 'http', maxConcurrent: 2 } } });
    const results = await Promise.all(
      Array.from({ length: 6 }, (_, i) => client.headManifest(ref(`${slow.host}/team/app:v${i}`))),
    );
    await client.close();
    assert.equal(results.filter((r) => errorCode(r) === 'REG_NOT_FOUND').length, 5);
    assert.ok(slow.maxInFlight() <= 2, `saw ${slow.maxInFlight()} in flight`);
  });

  it('answers RateLimited with the Retry-After delay', async () => {
    const client = plain(limited.host);
    const result = await client.headManifest(ref(`${limited.host}/team/app:v1`));
    await client.close();
    assert.equal(result.ok, false);
    if (result.ok) return;
    assert.deepEqual(
      [result.error.code, result.error.outcome, result.error.status, result.error.retryAfterMs],
      ['REG_RATE_LIMITED', 'RateLimited', 429, 7000],
    );
  });
});
