// decideImage keeps what does not depend on the pod (parse, index keys, candidates) in the snapshot's
// memo. These tests hold it to its promise: a warm memo changes no decision, and it stays bounded.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import type { ExistenceFacts, ProbeOutcome } from '../../src/core/facts.ts';
import { analyzeMaps, buildSnapshot, decideImage, type MapSnapshot } from '../../src/core/mapping/index.ts';
import { BoundedMemo } from '../../src/core/memo.ts';

const maps = [
  {
    apiVersion: 'pullmap.dev/v1alpha1',
    kind: 'ClusterImageMap',
    metadata: { name: 'hub' },
    spec: {
      mappings: [
        { from: 'docker.io/', to: ['a.mirror/hub/', 'b.mirror/hub/'], when: 'IfExists' },
        { from: 'quay.io/acme/', to: 'mirror.local/acme/' },
        { from: 'gcr.io/x/app:1', to: 'registry.local/app:1' },
      ],
      mutableTags: ['latest', 'edge-.*'],
      pullPolicyAlways: 'KeepOriginal',
    },
  },
  {
    apiVersion: 'pullmap.dev/v1alpha1',
    kind: 'ClusterImageMap',
    metadata: { name: 'front' },
    spec: {
      podSelector: { matchLabels: { tier: 'front' } },
      mappings: [{ from: 'ghcr.io/', to: 'front.mirror/ghcr/' }],
      cache: { enabled: true },
    },
  },
  {
    apiVersion: 'pullmap.dev/v1alpha1',
    kind: 'ImageMap',
    metadata: { name: 'own', namespace: 'team-a' },
    spec: { mappings: [{ from: 'docker.io/', to: 'team-a.mirror/' }] },
  },
];

function snapshot(limit?: number): MapSnapshot {
  const analysis = analyzeMaps(maps.map((current) => ({ current })));
  assert.equal(analysis.accepted.length, maps.length);
  const s = buildSnapshot(analysis.accepted);
  return limit === undefined ? s : { ...s, images: new BoundedMemo(limit) };
}

const images = [
  'nginx:1.27',
  'nginx',
  'nginx:latest',
  'nginx:edge-3',
  'redis@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef',
  'quay.io/acme/tool:2',
  'gcr.io/x/app:1',
  'gcr.io/x/app:2',
  'ghcr.io/o/r:3',
  'a.mirror/hub/library/nginx:1.27',
  'localhost:7439/a.mirror/hub/library/nginx:1.27',
  'NotValid:x',
  '',
];
const outcomes: (ProbeOutcome | undefined)[] = [undefined, 'Available', 'NotFound', 'Timeout'];

const step = fc.record({
  image: fc.constantFrom(...images),
  namespace: fc.constantFrom('default', 'team-a'),
  tier: fc.constantFrom('front', 'back'),
  pullPolicy: fc.constantFrom(undefined, 'Always', 'IfNotPresent'),
  a: fc.constantFrom(...outcomes),
  b: fc.constantFrom(...outcomes),
});
type Step = typeof step extends fc.Arbitrary<infer T> ? T : never;

function run(s: MapSnapshot, st: Step) {
  const facts: ExistenceFacts = (c) => {
    const outcome = c.startsWith('a.mirror/') ? st.a : c.startsWith('b.mirror/') ? st.b : undefined;
    return outcome && { outcome, cached: true, ageMs: 1000 };
  };
  const ctx = {
    namespace: st.namespace,
    namespaceLabels: { 'kubernetes.io/metadata.name': st.namespace },
    podLabels: { tier: st.tier },
    pullPolicy: st.pullPolicy,
  };
  return decideImage(s, st.image, ctx, facts);
}

describe('the decision memo', () => {
  test('a warm memo gives the decision a fresh snapshot gives, in any order of pods and answers', () => {
    fc.assert(
      fc.property(
        fc.array(step, { minLength: 1, maxLength: 40 }),
        fc.integer({ min: 1, max: 8 }),
        (steps, limit) => {
          const warm = snapshot(limit); // small limits make the memo start over mid-sequence too
          for (const st of steps) assert.deepStrictEqual(run(warm, st), run(snapshot(), st));
        },
      ),
      { numRuns: 300 },
    );
  });

  test('holds at most its limit, starting over when full', () => {
    const memo = new BoundedMemo<number>(3);
    for (let i = 0; i < 10; i++) memo.set(`k${i}`, i);
    assert.ok(memo.size <= 3);
    assert.equal(memo.get('k9'), 9);
    assert.equal(memo.get('k0'), undefined);
  });

  test('a snapshot bounds the images it remembers', () => {
    const s = snapshot();
    const ctx = { namespace: 'default', namespaceLabels: {}, podLabels: {} };
    for (let i = 0; i < s.images.limit + 50; i++)
      decideImage(s, `quay.io/acme/img${i}:1`, ctx, () => undefined);
    assert.ok(s.images.size <= s.images.limit, `${s.images.size} entries`);
  });
});
