// The webhook remembers whole pod plans. It must answer exactly what deciding afresh answers, for any
// sequence of pods and whatever the registries' answers do in between (appear, disappear, expire), and
// it must start over when the maps change.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { type AdmissionRequest, parseReview } from '../../src/core/api/admission.ts';
import type { ProbeOutcome } from '../../src/core/facts.ts';
import { DEFAULT_DECISION_SETTINGS, decisionSettings } from '../../src/core/mapping/index.ts';
import { loadMapsFromText } from '../../src/core/mapping/load.ts';
import type { ImageReference } from '../../src/core/reference/index.ts';
import { ExistenceOracle } from '../../src/registry/existence-oracle.ts';
import { type EncodedPlan, type PodReviewResult, reviewPod } from '../../src/serve/admission.ts';
import { MAX_KEY_CHARS, PlanMemo } from '../../src/serve/plan-memo.ts';
import type { MapState } from '../../src/sources/map-source.ts';

const MAPS = `
apiVersion: pullmap.dev/v1alpha1
kind: ClusterImageMap
metadata: { name: hub }
spec:
  mappings:
    - { from: docker.io/, to: [a.mirror/hub/, b.mirror/hub/], when: IfExists, onProbeError: KeepOriginal }
    - { from: quay.io/, to: q.mirror/ }
  mutableTags: [latest]
  pullPolicyAlways: KeepOriginal
  existence: { positiveTTL: 10s, negativeTTL: 5s }
---
apiVersion: pullmap.dev/v1alpha1
kind: ImageMap
metadata: { name: own, namespace: team-a }
spec:
  mappings:
    - { from: docker.io/, to: team-a.mirror/ }
---
apiVersion: pullmap.dev/v1alpha1
kind: ClusterImageMap
metadata: { name: front }
spec:
  podSelector: { matchLabels: { tier: front } }
  mappings:
    - { from: ghcr.io/, to: front.mirror/ }
`;

function state(version: number): MapState {
  const loaded = loadMapsFromText(MAPS, 'maps');
  assert.deepEqual(loaded.errors, []);
  return { snapshot: loaded.snapshot, analysis: loaded.analysis, version };
}

const images = [
  'nginx:1.27',
  'redis:7',
  'nginx:latest',
  'quay.io/x/y:1',
  'ghcr.io/o/r:2',
  'a.mirror/hub/library/nginx:1.27',
];
/** spec.existence of the hub map. */
const TTLS = { positiveTtlMs: 10_000, negativeTtlMs: 5_000 };
const outcomes: ProbeOutcome[] = ['Available', 'NotFound', 'Unreachable'];

interface Container {
  readonly image: string;
  readonly pullPolicy: string | undefined;
}
const WORKLOADS: Container[][] = [
  [{ image: 'nginx:1.27', pullPolicy: undefined }],
  [
    { image: 'ghcr.io/o/r:2', pullPolicy: undefined },
    { image: 'redis:7', pullPolicy: 'IfNotPresent' },
  ],
  [
    { image: 'nginx:1.27', pullPolicy: 'Always' },
    { image: 'quay.io/x/y:1', pullPolicy: undefined },
  ],
];

const pod = fc.record({
  // Drawn from a few workloads, so that pods repeat (what the memo is for) and differ in one input at a time.
  containers: fc.oneof<fc.Arbitrary<Container[]>[]>(
    fc.constantFrom(...WORKLOADS),
    fc.array(
      fc.record({
        image: fc.constantFrom(...images),
        pullPolicy: fc.constantFrom(undefined, 'Always', 'IfNotPresent'),
      }),
      { minLength: 1, maxLength: 4 },
    ),
  ),
  init: fc.boolean(),
  names: fc.constantFrom('c', 'app'),
  tier: fc.constantFrom(undefined, 'front', 'back'),
  annotations: fc.constantFrom<(Record<string, string> | undefined)[]>(
    undefined,
    {},
    { 'pullmap.dev/ignore': 'true' },
    { 'pullmap.dev/original-images': '{"c0":"nginx:1.27"}' },
  ),
  namespace: fc.constantFrom('default', 'team-a'),
});
type Pod = typeof pod extends fc.Arbitrary<infer T> ? T : never;

const step = fc.oneof(
  { arbitrary: pod.map((p) => ({ kind: 'review' as const, pod: p })), weight: 6 },
  {
    arbitrary: fc.record({
      mirror: fc.constantFrom('a.mirror', 'b.mirror'),
      outcome: fc.constantFrom(...outcomes),
    }),
    weight: 2,
  },
  { arbitrary: fc.integer({ min: 1, max: 12_000 }).map((ms) => ({ kind: 'clock' as const, ms })), weight: 1 },
  { arbitrary: fc.constant({ kind: 'maps' as const }), weight: 1 },
);

function request(p: Pod, uid: number): AdmissionRequest {
  const containers = p.containers.map((c, i) => ({
    name: `${p.names}${i}`,
    image: c.image,
    ...(c.pullPolicy ? { imagePullPolicy: c.pullPolicy } : {}),
  }));
  const parsed = parseReview({
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: `u${uid}`,
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      namespace: p.namespace,
      operation: 'CREATE',
      object: {
        metadata: {
          name: `p${uid}`,
          ...(p.tier ? { labels: { tier: p.tier } } : {}),
          ...(p.annotations ? { annotations: p.annotations } : {}),
        },
        spec: p.init
          ? { initContainers: containers.slice(0, 1), containers: containers.slice(1) }
          : { containers },
      },
    },
  });
  assert.ok(parsed.ok);
  return parsed.request;
}

/** What the apiserver and the metrics see of a review: the response, and each container's outcome. */
function visible(result: PodReviewResult | Promise<PodReviewResult>) {
  assert.ok(!(result instanceof Promise), 'every answer is cached, so the review is synchronous');
  if (result.kind === 'ignored') return { response: result.response };
  return {
    response: result.response,
    decisions: result.plan.containers.map((c) => [c.name, c.skipped, c.decision?.outcome, c.decision?.image]),
  };
}

describe('the plan memo', () => {
  it('answers every review exactly as deciding afresh does', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 30 }), async (steps) => {
        const clock = { now: 1_000_000 };
        const upstream = new Map<string, ProbeOutcome>([
          ['a.mirror', 'Available'],
          ['b.mirror', 'Available'],
        ]);
        const oracle = new ExistenceOracle({
          now: () => clock.now,
          probe: async (ref: ImageReference) => ({ outcome: upstream.get(ref.registry) ?? 'NotFound' }),
        });
        let maps = state(1);
        const memo = new PlanMemo<EncodedPlan>(8);
        let uid = 0;
        for (const s of steps) {
          if ('mirror' in s) upstream.set(s.mirror, s.outcome);
          else if (s.kind === 'clock') clock.now += s.ms;
          else if (s.kind === 'maps') maps = state(maps.version + 1);
          else {
            const req = request(s.pod, uid++);
            // Answer every candidate first, under the map's TTLs, as a warm oracle would: both reviews
            // are then synchronous.
            for (const m of ['a.mirror', 'b.mirror'])
              for (const name of ['nginx:1.27', 'redis:7'])
                await oracle.exists(`${m}/hub/library/${name}`, TTLS);
            const deps = {
              state: maps,
              settings: DEFAULT_DECISION_SETTINGS,
              existence: oracle,
              namespaceLabels: () => ({}),
              signal: () => new AbortController().signal,
            };
            const fresh = visible(reviewPod(req, deps));
            const memoised = visible(reviewPod(req, { ...deps, memo }));
            assert.deepStrictEqual(memoised, fresh);
          }
        }
      }),
      { numRuns: 300 },
    );
  });

  it('pods that differ in labels, annotations, namespace or pull policy each get their own plan', async () => {
    const oracle = new ExistenceOracle({ probe: async () => ({ outcome: 'Available' }) });
    for (const m of ['a.mirror', 'b.mirror']) await oracle.exists(`${m}/hub/library/nginx:1.27`, TTLS);
    const memo = new PlanMemo<EncodedPlan>();
    const deps = {
      state: state(1),
      settings: DEFAULT_DECISION_SETTINGS,
      existence: oracle,
      namespaceLabels: () => ({}),
      signal: () => new AbortController().signal,
    };
    const base: Pod = {
      containers: [
        { image: 'ghcr.io/o/r:2', pullPolicy: undefined },
        { image: 'nginx:1.27', pullPolicy: undefined },
      ],
      init: false,
      names: 'c',
      tier: 'front',
      annotations: undefined,
      namespace: 'default',
    };
    const variants: Pod[] = [
      base,
      { ...base, tier: 'back' },
      { ...base, annotations: { 'pullmap.dev/ignore': 'true' } },
      { ...base, annotations: { 'pullmap.dev/original-images': '{"c1":"nginx:1.26"}' } },
      { ...base, namespace: 'team-a' },
      { ...base, containers: [base.containers[0]!, { image: 'nginx:1.27', pullPolicy: 'Always' }] },
      { ...base, init: true },
      { ...base, names: 'app' },
      base,
    ];
    let uid = 0;
    for (const v of variants) {
      const req = request(v, uid++);
      assert.deepStrictEqual(visible(reviewPod(req, { ...deps, memo })), visible(reviewPod(req, deps)));
    }
  });

  it('reuses a plan only while its answers hold, and starts over with new maps', async () => {
    let outcome: ProbeOutcome = 'Available';
    const clock = { now: 0 };
    const oracle = new ExistenceOracle({ now: () => clock.now, probe: async () => ({ outcome }) });
    const memo = new PlanMemo<EncodedPlan>();
    const maps = state(1);
    const deps = {
      state: maps,
      settings: DEFAULT_DECISION_SETTINGS,
      existence: oracle,
      namespaceLabels: () => ({}),
      signal: () => new AbortController().signal,
      memo,
    };
    await oracle.exists('a.mirror/hub/library/nginx:1.27', TTLS);
    const nginxPod: Pod = {
      containers: [{ image: 'nginx:1.27', pullPolicy: undefined }],
      init: false,
      names: 'c',
      tier: undefined,
      annotations: undefined,
      namespace: 'default',
    };
    const first = reviewPod(request(nginxPod, 1), deps);
    assert.ok(!(first instanceof Promise) && first.kind === 'planned' && first.response.patch);
    assert.equal(memo.size, 0, 'a pod seen once is not kept');
    reviewPod(request(nginxPod, 10), deps);
    assert.equal(memo.size, 1, 'the second pod like it is');
    // The answer expires and comes back NotFound: the remembered plan must not be used.
    clock.now += 11_000;
    outcome = 'NotFound';
    await oracle.exists('a.mirror/hub/library/nginx:1.27', TTLS);
    await oracle.exists('b.mirror/hub/library/nginx:1.27', TTLS);
    const second = reviewPod(request(nginxPod, 2), deps);
    assert.ok(!(second instanceof Promise) && second.kind === 'planned');
    assert.equal(second.response.patch, undefined, 'no mirror has it now: unchanged');
    // New maps: nothing remembered carries over.
    const newMaps = { ...deps, state: state(2) };
    reviewPod(request(nginxPod, 3), newMaps);
    const third = reviewPod(request(nginxPod, 30), newMaps);
    assert.ok(!(third instanceof Promise));
    assert.equal(memo.size, 1, 'the old snapshot’s plans were dropped; only this one is kept');
    // A pod whose inputs are too long to be worth a key is decided, not remembered.
    const huge = request(
      {
        ...nginxPod,
        annotations: { 'pullmap.dev/original-images': JSON.stringify({ x: 'y'.repeat(MAX_KEY_CHARS) }) },
      },
      4,
    );
    reviewPod(huge, deps);
    const fourth = reviewPod(huge, deps);
    assert.ok(!(fourth instanceof Promise) && fourth.kind === 'planned');
    assert.equal(memo.size, 0, 'maps changed back, and the long pod was not kept');
  });

  it('starts over under other settings: a namespace excluded since is left alone', async () => {
    const oracle = new ExistenceOracle({ probe: async () => ({ outcome: 'Available' }) });
    await oracle.exists('a.mirror/hub/library/nginx:1.27', TTLS);
    const memo = new PlanMemo<EncodedPlan>();
    const deps = {
      state: state(1),
      settings: DEFAULT_DECISION_SETTINGS,
      existence: oracle,
      namespaceLabels: () => ({}),
      signal: () => new AbortController().signal,
      memo,
    };
    const pod: Pod = {
      containers: [{ image: 'nginx:1.27', pullPolicy: undefined }],
      init: false,
      names: 'c',
      tier: undefined,
      annotations: undefined,
      namespace: 'default',
    };
    for (const uid of [1, 2, 3]) {
      const mapped = reviewPod(request(pod, uid), deps);
      assert.ok(!(mapped instanceof Promise) && mapped.kind === 'planned' && mapped.response.patch);
    }
    assert.equal(memo.size, 1);
    const excluding = { ...deps, settings: decisionSettings({ excludedNamespaces: ['default'] }) };
    const left = reviewPod(request(pod, 4), excluding);
    assert.ok(!(left instanceof Promise) && left.kind === 'planned');
    assert.equal(left.response.patch, undefined);
    assert.equal(left.plan.skipped, 'namespace default is excluded');
  });
});
