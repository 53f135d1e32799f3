// The webhook remembers what decisions work out per image (parse, index keys, rule matches, candidates)
// in a PreparedMemo. These tests hold it to its promise: a warm memo changes no decision, a new snapshot
// (or other settings) starts it over, and it stays bounded.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import type { ExistenceFacts, ProbeOutcome } from '../../src/core/facts.ts';
import {
  analyzeMaps,
  buildSnapshot,
  DEFAULT_DECISION_SETTINGS,
  type DecisionSettings,
  decideImage,
  decisionSettings,
  type MapSnapshot,
  prepareFresh,
} from '../../src/core/mapping/index.ts';
import { BoundedMemo } from '../../src/core/memo.ts';
import { PreparedMemo } from '../../src/serve/prepared-memo.ts';

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

/** The maps, or (`moved`) the same with team-a's own mirror moved: a memo must not carry one into the other. */
function snapshot(moved = false): MapSnapshot {
  const objects = moved
    ? maps.map((m) =>
        m.metadata.name === 'own'
          ? { ...m, spec: { mappings: [{ from: 'docker.io/', to: 'team-a.moved/' }] } }
          : m,
      )
    : maps;
  const analysis = analyzeMaps(objects.map((current) => ({ current })));
  assert.equal(analysis.accepted.length, maps.length);
  return buildSnapshot(analysis.accepted);
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
  'cache.other:7439/a.mirror/hub/library/nginx:1.27',
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

/** A cache elsewhere: the front map's images are routed (and recognised as routed) differently. */
const OTHER_CACHE = decisionSettings({ cacheAddress: 'cache.other:7439' });
const otherThan = (settings: DecisionSettings): DecisionSettings =>
  settings === OTHER_CACHE ? DEFAULT_DECISION_SETTINGS : OTHER_CACHE;

function run(
  s: MapSnapshot,
  st: Step,
  memo?: PreparedMemo,
  settings: DecisionSettings = DEFAULT_DECISION_SETTINGS,
) {
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
  return decideImage(s, settings, st.image, ctx, facts, memo);
}

describe('the prepared-image memo', () => {
  test('a warm memo gives the decision deciding afresh gives, in any order of pods, answers, snapshots and settings', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(step, fc.boolean(), fc.boolean()), { minLength: 1, maxLength: 40 }),
        fc.integer({ min: 1, max: 8 }),
        (steps, limit) => {
          // Small limits make the memo start over mid-sequence too; a new snapshot now and then must not
          // be answered from what the memo learnt under the previous one.
          const memo = new PreparedMemo(limit);
          let moved = false;
          let s = snapshot();
          let settings = DEFAULT_DECISION_SETTINGS;
          for (const [st, swap, other] of steps) {
            if (swap) {
              moved = !moved;
              s = snapshot(moved);
            }
            if (other) settings = otherThan(settings);
            assert.deepStrictEqual(run(s, st, memo, settings), run(s, st, undefined, settings));
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  test('what it learnt under an older snapshot is not used under the new one', () => {
    const memo = new PreparedMemo();
    const ctx = { namespace: 'team-a', namespaceLabels: {}, podLabels: {} };
    const old = snapshot();
    assert.equal(
      decideImage(old, DEFAULT_DECISION_SETTINGS, 'nginx:1.27', ctx, () => undefined, memo).image,
      'team-a.mirror/library/nginx:1.27',
    );
    // The maps change; before any review under the new ones, a late review under the old snapshot (it
    // started before the swap) asks about the old rules: what it gets must not be remembered for the new.
    const moved = snapshot(true);
    memo.image(moved, DEFAULT_DECISION_SETTINGS, 'redis:7');
    const image = prepareFresh.image(old, DEFAULT_DECISION_SETTINGS, 'nginx:1.27');
    assert.ok(image.ok);
    const oldRule = memo.matches(old, image, 'team-a').sources[0]!;
    assert.equal(memo.rule(old, DEFAULT_DECISION_SETTINGS, image, oldRule).candidates.length, 1);
    assert.equal(
      decideImage(moved, DEFAULT_DECISION_SETTINGS, 'nginx:1.27', ctx, () => undefined, memo).image,
      'team-a.moved/library/nginx:1.27',
    );
  });

  test('holds at most its limit, starting over when full', () => {
    const memo = new BoundedMemo<number>(3);
    for (let i = 0; i < 10; i++) memo.set(`k${i}`, i);
    assert.ok(memo.size <= 3);
    assert.equal(memo.get('k9'), 9);
    assert.equal(memo.get('k0'), undefined);
  });

  test('remembers at most its limit of images', () => {
    const s = snapshot();
    const memo = new PreparedMemo(100);
    const ctx = { namespace: 'default', namespaceLabels: {}, podLabels: {} };
    for (let i = 0; i < 150; i++)
      decideImage(s, DEFAULT_DECISION_SETTINGS, `quay.io/acme/img${i}:1`, ctx, () => undefined, memo);
    assert.ok(memo.size > 0 && memo.size <= 100, `${memo.size} entries`);
  });
});
