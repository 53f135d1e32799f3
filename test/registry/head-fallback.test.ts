// Registries that refuse manifest HEAD (405 or 501): the existence probe falls back to a manifest GET
// and remembers, per host, to go straight to GET. The refusing host is a loopback proxy in front of
// a real registry, so every GET answer is the real registry's.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { ImageReference } from '../../src/core/reference/index.ts';
import { HEAD_REFUSAL_MEMORY_MS, RegistryClient } from '../../src/registry/client.ts';
import { ExistenceOracle, registryProbe } from '../../src/registry/existence-oracle.ts';
import { buildImage, buildIndex, pushImage, pushIndex } from '../harness/images.ts';
import { startRegistry, type TestRegistry } from '../harness/registry.ts';
import { type LoopbackStub, startHeadRefusingProxy } from '../harness/registry-stubs.ts';

describe('HEAD refused: the existence probe falls back to GET', () => {
  let registry: TestRegistry;
  let refuses405: LoopbackStub;
  let refuses501: LoopbackStub;
  const image = buildImage({ files: { 'queue.txt': 'queue\n' } });
  const multi = buildIndex([
    { os: 'linux', architecture: 'amd64' },
    { os: 'linux', architecture: 'arm64' },
  ]);

  before(async () => {
    registry = await startRegistry();
    await pushImage(registry, 'knative/queue', 'v1', image);
    await pushIndex(registry, 'knative/multi', 'v1', multi);
    refuses405 = await startHeadRefusingProxy(registry.url, 405);
    refuses501 = await startHeadRefusingProxy(registry.url, 501);
  });
  after(async () => {
    await refuses405.close();
    await refuses501.close();
    await registry.close();
  });

  function rig(...hosts: string[]) {
    const clock = { now: Date.parse('2026-01-01T00:00:00Z') };
    const client = new RegistryClient({
      endpoints: Object.fromEntries(hosts.map((h) => [h, { scheme: 'http' as const }])),
      now: () => clock.now,
    });
    // A zero TTL: every question reaches the probe, so the requests below are the probe's own.
    const oracle = new ExistenceOracle({
      probe: registryProbe(client),
      now: () => clock.now,
      positiveTtlMs: 0,
      negativeTtlMs: 0,
    });
    return { client, oracle, clock };
  }
  const gets = (repository: string): Promise<number> =>
    registry.count({ method: 'GET', uri: `/v2/${repository}/manifests/` });

  for (const status of [405, 501] as const) {
    it(`HEAD answered ${status}: Available by GET, then straight to GET for the host`, async () => {
      const proxy = status === 405 ? refuses405 : refuses501;
      const { client, oracle } = rig(proxy.host);
      const refusedBefore = proxy.requests();
      const getsBefore = await gets('knative/queue');
      const absentBefore = await gets('knative/absent');

      const first = await oracle.exists(`${proxy.host}/knative/queue:v1`);
      assert.deepEqual(
        [first.outcome, first.digest, first.status],
        ['Available', image.manifest.digest, 200],
      );
      assert.match(first.detail ?? '', /^GET 200 /);
      assert.equal(proxy.requests() - refusedBefore, 1);
      assert.equal((await gets('knative/queue')) - getsBefore, 1);

      // Later checks of any image on this host skip the HEAD.
      const again = await oracle.exists(`${proxy.host}/knative/queue:v1`);
      const absent = await oracle.exists(`${proxy.host}/knative/absent:v1`);
      const index = await oracle.exists(`${proxy.host}/knative/multi:v1`);
      const byDigest = await oracle.exists(`${proxy.host}/knative/queue@${image.manifest.digest}`);
      await client.close();
      assert.deepEqual([again.outcome, again.cached], ['Available', false]);
      assert.deepEqual([absent.outcome, absent.status], ['NotFound', 404]);
      assert.deepEqual([index.outcome, index.digest], ['Available', multi.index.digest]);
      assert.deepEqual([byDigest.outcome, byDigest.digest], ['Available', image.manifest.digest]);
      assert.equal(proxy.requests() - refusedBefore, 1);
      assert.equal((await gets('knative/queue')) - getsBefore, 3);
      assert.equal((await gets('knative/absent')) - absentBefore, 1);
    });
  }

  const multiOn = (registry: string): ImageReference => ({
    registry,
    repository: 'knative/multi',
    tag: 'v1',
    digest: undefined,
  });

  it('the memory is per host: a registry that serves HEAD keeps getting HEADs', async () => {
    const { client } = rig(refuses405.host, registry.host);
    const refusedBefore = refuses405.requests();
    const headsBefore = await registry.count({ method: 'HEAD', uri: '/v2/knative/multi/manifests/v1' });
    const viaProxy = await client.manifestExists(multiOn(refuses405.host));
    const direct = await client.manifestExists(multiOn(registry.host));
    await client.close();
    assert.ok(viaProxy.ok && direct.ok);
    assert.deepEqual([viaProxy.value.method, direct.value.method], ['GET', 'HEAD']);
    assert.equal(viaProxy.value.digest, direct.value.digest);
    assert.equal(refuses405.requests() - refusedBefore, 1);
    assert.equal(
      (await registry.count({ method: 'HEAD', uri: '/v2/knative/multi/manifests/v1' })) - headsBefore,
      1,
    );
  });

  it('HEAD is tried again once the memory of the refusal expires', async () => {
    const { client, oracle, clock } = rig(refuses405.host);
    const refusedBefore = refuses405.requests();
    await oracle.exists(`${refuses405.host}/knative/queue:v1`);
    clock.now += HEAD_REFUSAL_MEMORY_MS - 1;
    await oracle.exists(`${refuses405.host}/knative/queue:v1`);
    assert.equal(refuses405.requests() - refusedBefore, 1);
    clock.now += 1;
    const answer = await oracle.exists(`${refuses405.host}/knative/queue:v1`);
    await client.close();
    assert.equal(answer.outcome, 'Available');
    assert.equal(refuses405.requests() - refusedBefore, 2);
  });

  it('headManifest itself reports the refusal as a typed failure', async () => {
    const { client } = rig(refuses501.host);
    const result = await client.headManifest(multiOn(refuses501.host));
    await client.close();
    assert.ok(!result.ok);
    assert.deepEqual(
      [result.error.code, result.error.outcome, result.error.status],
      ['REG_METHOD_REFUSED', 'Invalid', 501],
    );
  });
});
