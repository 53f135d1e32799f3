// Per-map TTLs end to end: maps with and without spec.existence, decided through decideWithProbes,
// the existence oracle (fake clock) and a real registry, whose access log shows which answers were
// asked for again.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  analyzeMaps,
  buildSnapshot,
  DEFAULT_DECISION_SETTINGS,
  decideImage,
  type MapSnapshot,
} from '../../src/core/mapping/index.ts';
import { RegistryClient } from '../../src/registry/client.ts';
import { ExistenceOracle, registryProbe } from '../../src/registry/existence-oracle.ts';
import { decideWithProbes } from '../../src/sources/resolve.ts';
import { buildImage, pushImage } from '../harness/images.ts';
import { startRegistry, type TestRegistry } from '../harness/registry.ts';

const DEFAULT_POSITIVE_MS = 300_000;
const DEFAULT_NEGATIVE_MS = 30_000;

function snapshotOf(objects: unknown[]): MapSnapshot {
  const analysis = analyzeMaps(objects.map((current) => ({ current })));
  for (const v of analysis.verdicts)
    assert.equal(v.verdict, 'Accepted', `${v.name}: ${v.findings.map((f) => f.message).join('; ')}`);
  return buildSnapshot(analysis.accepted);
}

describe('per-map existence TTLs against a real registry', () => {
  let registry: TestRegistry;
  let client: RegistryClient;
  let oracle: ExistenceOracle;
  let snapshot: MapSnapshot;
  const clock = { now: Date.parse('2026-01-01T00:00:00Z') };

  before(async () => {
    registry = await startRegistry();
    // "short" trusts answers for 5 s; "default" sets nothing and gets the oracle's 5 min / 30 s.
    const map = (name: string, from: string, existence?: Record<string, string>) => ({
      apiVersion: 'pullmap.dev/v1alpha1',
      kind: 'ClusterImageMap',
      metadata: { name },
      spec: {
        mappings: [{ from, to: `${registry.host}/${name}/`, when: 'IfExists' }],
        ...(existence ? { existence } : {}),
      },
    });
    snapshot = snapshotOf([
      map('short', 'quay.io/', { positiveTTL: '5s', negativeTTL: '5s' }),
      map('default', 'gcr.io/'),
    ]);
    client = new RegistryClient({ endpoints: { [registry.host]: { scheme: 'http' } } });
    oracle = new ExistenceOracle({
      probe: registryProbe(client),
      now: () => clock.now,
      positiveTtlMs: DEFAULT_POSITIVE_MS,
      negativeTtlMs: DEFAULT_NEGATIVE_MS,
    });
  });
  after(async () => {
    await client.close();
    await registry.close();
  });

  const ctx = { namespace: 'default', namespaceLabels: {}, podLabels: {} };
  const decide = (image: string) =>
    decideWithProbes((facts) => decideImage(snapshot, DEFAULT_DECISION_SETTINGS, image, ctx, facts), oracle);
  const heads = async (repository: string): Promise<number[]> =>
    (await registry.requests({ method: 'HEAD', uri: `/v2/${repository}/manifests/` })).map((r) => r.status);

  it('a short negativeTTL re-probes after it; the default one does not', async () => {
    const first = [await decide('quay.io/acme/app:1'), await decide('gcr.io/acme/app:1')];
    assert.deepEqual(
      first.map((d) => d.outcome),
      ['Unchanged', 'Unchanged'],
    );
    assert.deepEqual(await heads('short/acme/app'), [404]);
    assert.deepEqual(await heads('default/acme/app'), [404]);

    // Both images arrive in the mirror; only the map that trusts "missing" for 5 s notices soon.
    const image = buildImage({ files: { 'app.txt': 'app\n' } });
    await pushImage(registry, 'short/acme/app', '1', image);
    await pushImage(registry, 'default/acme/app', '1', image);

    clock.now += 4_999;
    const inside = [await decide('quay.io/acme/app:1'), await decide('gcr.io/acme/app:1')];
    assert.deepEqual(
      inside.map((d) => [d.outcome, d.reasons.at(-2)?.probe?.cached]),
      [
        ['Unchanged', true],
        ['Unchanged', true],
      ],
    );

    clock.now += 1; // 5 s: the short negative TTL is over, the 30 s default is not
    const shortMapped = await decide('quay.io/acme/app:1');
    const defaultKept = await decide('gcr.io/acme/app:1');
    assert.deepEqual(
      [shortMapped.outcome, shortMapped.image],
      ['Mapped', `${registry.host}/short/acme/app:1`],
    );
    assert.equal(defaultKept.outcome, 'Unchanged');
    assert.deepEqual(await heads('short/acme/app'), [404, 200]);
    assert.deepEqual(await heads('default/acme/app'), [404]);

    clock.now += DEFAULT_NEGATIVE_MS - 5_000; // the default negative TTL is over too
    const defaultMapped = await decide('gcr.io/acme/app:1');
    assert.deepEqual(
      [defaultMapped.outcome, defaultMapped.image],
      ['Mapped', `${registry.host}/default/acme/app:1`],
    );
    assert.deepEqual(await heads('default/acme/app'), [404, 200]);
  });

  it('a short positiveTTL re-probes after it; the default one does not', async () => {
    const image = buildImage({ files: { 'web.txt': 'web\n' } });
    await pushImage(registry, 'short/acme/web', '2', image);
    await pushImage(registry, 'default/acme/web', '2', image);
    for (let i = 0; i < 3; i++) {
      const answers = [await decide('quay.io/acme/web:2'), await decide('gcr.io/acme/web:2')];
      assert.deepEqual(
        answers.map((d) => d.outcome),
        ['Mapped', 'Mapped'],
      );
      clock.now += 5_000;
    }
    // Three decisions 5 s apart: the 5 s map asked each time, the 5 min default map once.
    assert.deepEqual(await heads('short/acme/web'), [200, 200, 200]);
    assert.deepEqual(await heads('default/acme/web'), [200]);
  });
});
