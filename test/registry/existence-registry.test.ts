// The existence oracle against real registries: answers, TTL expiry with a fake clock, coalescing
// and caching proven by the requests each registry's access log shows it received.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { RegistryClient, type RegistryClientOptions } from '../../src/registry/client.ts';
import {
  ExistenceOracle,
  type ExistenceOracleOptions,
  registryProbe,
} from '../../src/registry/existence-oracle.ts';
import { CredentialKeyring } from '../../src/registry/keyring.ts';
import { buildImage, buildIndex, deleteManifest, pushImage, pushIndex } from '../harness/images.ts';
import { type TempDir, tempDir } from '../harness/process.ts';
import { startRegistry, type TestRegistry } from '../harness/registry.ts';
import {
  type LoopbackStub,
  startDelayingProxy,
  startRateLimitedRegistry,
} from '../harness/registry-stubs.ts';
import { startTokenServer, type TokenServer } from '../harness/token-server.ts';

interface Rig {
  readonly oracle: ExistenceOracle;
  readonly client: RegistryClient;
  readonly clock: { now: number };
}

function rig(clientOptions: RegistryClientOptions, oracleOptions: Partial<ExistenceOracleOptions> = {}): Rig {
  const clock = { now: Date.parse('2026-01-01T00:00:00Z') };
  const client = new RegistryClient(clientOptions);
  const oracle = new ExistenceOracle({
    probe: registryProbe(client),
    now: () => clock.now,
    positiveTtlMs: 300_000,
    negativeTtlMs: 30_000,
    failureTtlMs: 2_000,
    ...oracleOptions,
  });
  return { oracle, client, clock };
}

const http = (host: string): RegistryClientOptions => ({ endpoints: { [host]: { scheme: 'http' } } });

describe('ExistenceOracle against an anonymous registry', () => {
  let registry: TestRegistry;
  const image = buildImage();
  const multi = buildIndex([
    { os: 'linux', architecture: 'amd64' },
    { os: 'linux', architecture: 'arm64' },
  ]);

  before(async () => {
    registry = await startRegistry();
    await pushImage(registry, 'knative/queue', 'v1.15', image);
    await pushIndex(registry, 'knative/multi', 'v1', multi);
  });
  after(() => registry.close());

  it('answers Available with the digest, NotFound, and Available for a multi-arch index', async () => {
    const { oracle, client } = rig(http(registry.host));
    const present = await oracle.exists(`${registry.host}/knative/queue:v1.15`);
    const absent = await oracle.exists(`${registry.host}/acme/app:1.0`);
    const index = await oracle.exists(`${registry.host}/knative/multi:v1`);
    await client.close();
    assert.deepEqual(
      [present.outcome, present.digest, present.status, present.cached, present.ageMs],
      ['Available', image.manifest.digest, 200, false, 0],
    );
    assert.deepEqual([absent.outcome, absent.status, absent.cached], ['NotFound', 404, false]);
    assert.deepEqual([index.outcome, index.digest], ['Available', multi.index.digest]);
  });

  it('sends one registry request for 50 concurrent questions, and none for the next 50', async () => {
    const { oracle, client } = rig(http(registry.host));
    const uri = '/v2/knative/queue/manifests/v1.15';
    const before = await registry.count({ method: 'HEAD', uri });
    const burst = await Promise.all(
      Array.from({ length: 50 }, () => oracle.exists(`${registry.host}/knative/queue:v1.15`)),
    );
    assert.ok(burst.every((a) => a.outcome === 'Available' && a.digest === image.manifest.digest));
    assert.equal((await registry.count({ method: 'HEAD', uri })) - before, 1);
    for (let i = 0; i < 50; i++) {
      const answer = await oracle.exists(`${registry.host}/knative/queue:v1.15`);
      assert.equal(answer.cached, true);
    }
    assert.equal((await registry.count({ method: 'HEAD', uri })) - before, 1);
    const stats = oracle.stats();
    assert.deepEqual([stats.misses, stats.coalesced, stats.hits, stats.probes], [1, 49, 50, 1]);
    await client.close();
  });

  it('sees an image deleted upstream only after the positive TTL, and its return after the negative TTL', async () => {
    const { oracle, client, clock } = rig(http(registry.host));
    const candidate = `${registry.host}/zarf/sidecar:1`;
    const uri = '/v2/zarf/sidecar/manifests/1';
    const heads = async (): Promise<number[]> =>
      (await registry.requests({ method: 'HEAD', uri })).map((r) => r.status);
    const first = buildImage({ files: { 'sidecar.txt': 'one\n' } });
    const digest = await pushImage(registry, 'zarf/sidecar', '1', first);

    assert.equal((await oracle.exists(candidate)).outcome, 'Available');
    await deleteManifest(registry, 'zarf/sidecar', digest);

    clock.now += 299_999; // still inside the positive TTL: the cached answer stands
    const stale = await oracle.exists(candidate);
    assert.deepEqual([stale.outcome, stale.cached, stale.ageMs], ['Available', true, 299_999]);
    assert.deepEqual(await heads(), [200]);

    clock.now += 1; // positive TTL over: the registry is asked and says 404
    const gone = await oracle.exists(candidate);
    assert.deepEqual([gone.outcome, gone.cached], ['NotFound', false]);
    assert.deepEqual(await heads(), [200, 404]);

    const second = buildImage({ files: { 'sidecar.txt': 'two\n' } });
    await pushImage(registry, 'zarf/sidecar', '1', second);
    clock.now += 29_999; // inside the negative TTL: still NotFound from the cache
    const cachedMiss = await oracle.exists(candidate);
    assert.deepEqual([cachedMiss.outcome, cachedMiss.cached, cachedMiss.ageMs], ['NotFound', true, 29_999]);
    assert.deepEqual(await heads(), [200, 404]);

    clock.now += 1; // negative TTL over: found again, with the new digest
    const back = await oracle.exists(candidate);
    assert.deepEqual([back.outcome, back.cached, back.digest], ['Available', false, second.manifest.digest]);
    assert.deepEqual(await heads(), [200, 404, 200]);
    await client.close();
  });

  it('answers Unreachable when the registry is down, and remembers it only briefly', async () => {
    const doomed = await startRegistry();
    await doomed.stop();
    const { oracle, client, clock } = rig(http(doomed.host));
    const down = await oracle.exists(`${doomed.host}/zarf/app:1`);
    assert.equal(down.outcome, 'Unreachable');
    assert.match(down.detail ?? '', /REG_CONNECTION_FAILED/);
    clock.now += 1_999;
    assert.deepEqual(
      [(await oracle.exists(`${doomed.host}/zarf/app:1`)).cached, oracle.stats().probes],
      [true, 1],
    );
    clock.now += 1;
    assert.equal((await oracle.exists(`${doomed.host}/zarf/app:1`)).cached, false);
    assert.equal(oracle.stats().probes, 2);
    await client.close();
    await doomed.close();
  });
});

describe('ExistenceOracle against registries that need credentials', () => {
  let dir: TempDir;
  let tokens: TokenServer;
  let tokenRegistry: TestRegistry;
  let basicRegistry: TestRegistry;
  let tlsRegistry: TestRegistry;
  const image = buildImage();

  before(async () => {
    dir = await tempDir('oracle-tokens');
    tokens = await startTokenServer(dir.path, { users: { zarf: 'pull-secret' } });
    [tokenRegistry, basicRegistry, tlsRegistry] = await Promise.all([
      startRegistry({ auth: { kind: 'token', tokenServer: tokens } }),
      startRegistry({ auth: { kind: 'htpasswd', users: { zarf: 'pull-secret' } } }),
      startRegistry({ tls: true }),
    ]);
    for (const registry of [tokenRegistry, basicRegistry, tlsRegistry])
      await pushImage(registry, 'zarf/sidecar', '1', image);
  });
  after(async () => {
    await Promise.all([tokenRegistry.close(), basicRegistry.close(), tlsRegistry.close()]);
    await tokens.close();
    await dir.remove();
  });

  const keyring = (host: string, password: string): CredentialKeyring =>
    new CredentialKeyring([
      { key: host, credential: { kind: 'basic', username: 'zarf', password, source: `test ${password}` } },
    ]);

  it('coalesces through the Bearer flow: one token, one 401 and one 200', async () => {
    const { oracle, client } = rig({
      ...http(tokenRegistry.host),
      credentials: keyring(tokenRegistry.host, 'pull-secret'),
    });
    const tokensBefore = tokens.requests().length;
    const answers = await Promise.all(
      Array.from({ length: 50 }, () => oracle.exists(`${tokenRegistry.host}/zarf/sidecar:1`)),
    );
    await client.close();
    assert.ok(answers.every((a) => a.outcome === 'Available' && a.digest === image.manifest.digest));
    assert.equal(tokens.requests().length - tokensBefore, 1);
    assert.deepEqual(
      (await tokenRegistry.requests({ method: 'HEAD', uri: '/v2/zarf/sidecar/manifests/1' })).map(
        (r) => r.status,
      ),
      [401, 200],
    );
  });

  it('answers Unauthorized for wrong credentials (Bearer and Basic) and caches it as negative', async () => {
    for (const registry of [tokenRegistry, basicRegistry]) {
      const { oracle, client, clock } = rig({
        ...http(registry.host),
        credentials: keyring(registry.host, 'wrong'),
      });
      const answer = await oracle.exists(`${registry.host}/zarf/sidecar:1`);
      assert.deepEqual([answer.outcome, answer.status], ['Unauthorized', 401]);
      clock.now += 29_999;
      assert.equal((await oracle.exists(`${registry.host}/zarf/sidecar:1`)).cached, true);
      await client.close();
    }
  });

  it('answers Available through htpasswd Basic auth', async () => {
    const { oracle, client } = rig({
      ...http(basicRegistry.host),
      credentials: keyring(basicRegistry.host, 'pull-secret'),
    });
    const answer = await oracle.exists(`${basicRegistry.host}/zarf/sidecar:1`);
    await client.close();
    assert.deepEqual([answer.outcome, answer.digest], ['Available', image.manifest.digest]);
  });

  it('answers Available over TLS with a private CA, Unreachable without it', async () => {
    const trusted = rig({ endpoints: { [tlsRegistry.host]: { caPem: tlsRegistry.pki?.caPem } } });
    const untrusted = rig({});
    const yes = await trusted.oracle.exists(`${tlsRegistry.host}/zarf/sidecar:1`);
    const no = await untrusted.oracle.exists(`${tlsRegistry.host}/zarf/sidecar:1`);
    await trusted.client.close();
    await untrusted.client.close();
    assert.deepEqual([yes.outcome, yes.digest], ['Available', image.manifest.digest]);
    assert.equal(no.outcome, 'Unreachable');
    assert.match(no.detail ?? '', /REG_TLS_FAILED/);
  });
});

describe('ExistenceOracle against slow and rate-limiting registries', () => {
  let registry: TestRegistry;
  let slow: LoopbackStub;
  let limited: LoopbackStub;
  const image = buildImage();

  before(async () => {
    registry = await startRegistry();
    await pushImage(registry, 'zarf/sidecar', '1', image);
    slow = await startDelayingProxy(registry.url, 500);
    limited = await startRateLimitedRegistry(30);
  });
  after(async () => {
    await slow.close();
    await limited.close();
    await registry.close();
  });

  it('answers Timeout at the caller’s deadline; the probe finishes and fills the cache', async () => {
    const { oracle, client } = rig(http(slow.host));
    const answer = await oracle.exists(`${slow.host}/zarf/sidecar:1`, { signal: AbortSignal.timeout(100) });
    // Timeout, not Available: the caller did not wait for the probe, which succeeds later.
    assert.deepEqual([answer.outcome, answer.cached], ['Timeout', false]);
    // The probe runs on; once it lands, the next question is answered from the cache.
    for (let i = 0; i < 100 && oracle.stats().inflight > 0; i++) await new Promise((r) => setTimeout(r, 20));
    const later = await oracle.exists(`${slow.host}/zarf/sidecar:1`, { signal: AbortSignal.timeout(100) });
    await client.close();
    assert.deepEqual([later.outcome, later.cached, later.digest], ['Available', true, image.manifest.digest]);
    assert.equal(slow.requests(), 1);
  });

  it('answers RateLimited and stays away for the Retry-After', async () => {
    const { oracle, client, clock } = rig(http(limited.host));
    const first = await oracle.exists(`${limited.host}/zarf/sidecar:1`);
    assert.deepEqual([first.outcome, first.status], ['RateLimited', 429]);
    clock.now += 29_999;
    const second = await oracle.exists(`${limited.host}/zarf/sidecar:1`);
    assert.deepEqual([second.outcome, second.cached], ['RateLimited', true]);
    assert.equal(limited.requests(), 1);
    clock.now += 1;
    await oracle.exists(`${limited.host}/zarf/sidecar:1`);
    await client.close();
    assert.equal(limited.requests(), 2);
  });
});
