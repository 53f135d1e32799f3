// Per-map existence TTLs: from spec.existence into the decision's probe requests, merged per
// candidate (the shorter TTL wins), and handed by decideWithProbes to the existence source.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type ExistenceAnswer, mergeProbeRequests } from '../../../src/core/facts.ts';
import {
  analyzeMaps,
  buildSnapshot,
  DEFAULT_DECISION_SETTINGS,
  decideImage,
  type MapSnapshot,
} from '../../../src/core/mapping/index.ts';
import { planPod } from '../../../src/core/pod/plan.ts';
import { decideWithProbes, type ExistenceSource, type ProbeOptions } from '../../../src/sources/resolve.ts';

const cluster = (name: string, spec: Record<string, unknown>) => ({
  apiVersion: 'pullmap.dev/v1alpha1',
  kind: 'ClusterImageMap',
  metadata: { name },
  spec,
});

function snapshotOf(...objects: unknown[]): MapSnapshot {
  const analysis = analyzeMaps(objects.map((current) => ({ current })));
  for (const v of analysis.verdicts)
    assert.equal(v.verdict, 'Accepted', `${v.name}: ${v.findings.map((f) => f.message).join('; ')}`);
  return buildSnapshot(analysis.accepted);
}

// The consistency rules keep two maps from producing one target from different images, but an
// ImageMap per namespace may map the same source to the same target with its own TTLs: a
// `pullmap rewrite` over both namespaces asks about one candidate for two maps.
const inNamespace = (namespace: string, spec: Record<string, unknown>) => ({
  apiVersion: 'pullmap.dev/v1alpha1',
  kind: 'ImageMap',
  metadata: { name: 'mirror', namespace },
  spec: { mappings: [{ from: 'quay.io/', to: 'mirror.local/', when: 'IfExists' }], ...spec },
});
const quick = inNamespace('quick', { existence: { positiveTTL: '10m', negativeTTL: '5s' } });
const slow = inNamespace('slow', { existence: { positiveTTL: '1m', negativeTTL: '2m' } });
const plain = inNamespace('plain', {});
const inNs = (namespace: string) => ({
  namespace,
  namespaceLabels: { 'kubernetes.io/metadata.name': namespace },
  podLabels: {},
});

describe('probe requests carry the map TTLs', () => {
  test('a map with spec.existence asks with its TTLs in milliseconds', () => {
    const d = decideImage(
      snapshotOf(quick),
      DEFAULT_DECISION_SETTINGS,
      'quay.io/knative/queue:1.0',
      inNs('quick'),
      () => undefined,
    );
    assert.equal(d.outcome, 'Pending');
    assert.deepEqual(d.pendingProbes, [
      { candidate: 'mirror.local/knative/queue:1.0', positiveTtlMs: 600_000, negativeTtlMs: 5_000 },
    ]);
  });

  test('a map without spec.existence leaves the TTLs to the oracle', () => {
    const d = decideImage(
      snapshotOf(plain),
      DEFAULT_DECISION_SETTINGS,
      'quay.io/knative/queue:1.0',
      inNs('plain'),
      () => undefined,
    );
    assert.deepEqual(d.pendingProbes, [{ candidate: 'mirror.local/knative/queue:1.0' }]);
  });

  test('one TTL set, the other left to the default', () => {
    const half = cluster('half', {
      mappings: [{ from: 'quay.io/', to: 'mirror.local/', when: 'IfExists' }],
      existence: { negativeTTL: '1s' },
    });
    const d = decideImage(
      snapshotOf(half),
      DEFAULT_DECISION_SETTINGS,
      'quay.io/a/b:1',
      inNs('default'),
      () => undefined,
    );
    assert.deepEqual(d.pendingProbes, [{ candidate: 'mirror.local/a/b:1', negativeTtlMs: 1000 }]);
  });

  test('planPod asks once per candidate, in container order', () => {
    const pod = {
      metadata: { name: 'p' },
      spec: {
        containers: [
          { name: 'a', image: 'quay.io/knative/queue:1.0' },
          { name: 'b', image: 'quay.io/other/app:2' },
          { name: 'c', image: 'quay.io/knative/queue:1.0', imagePullPolicy: 'Always' },
        ],
      },
    };
    const plan = planPod(
      snapshotOf(quick),
      DEFAULT_DECISION_SETTINGS,
      pod,
      { namespace: 'quick', namespaceLabels: {} },
      () => undefined,
    );
    const ttls = { positiveTtlMs: 600_000, negativeTtlMs: 5_000 };
    assert.deepEqual(plan.pendingProbes, [
      { candidate: 'mirror.local/knative/queue:1.0', ...ttls },
      { candidate: 'mirror.local/other/app:2', ...ttls },
    ]);
  });
});

describe('mergeProbeRequests', () => {
  test('keeps first-seen order and one entry per candidate', () => {
    assert.deepEqual(
      mergeProbeRequests([{ candidate: 'b' }, { candidate: 'a' }, { candidate: 'b' }]).map(
        (r) => r.candidate,
      ),
      ['b', 'a'],
    );
  });
  test('the shorter TTL wins for each kind separately', () => {
    assert.deepEqual(
      mergeProbeRequests([
        { candidate: 'x', positiveTtlMs: 100, negativeTtlMs: 5 },
        { candidate: 'x', positiveTtlMs: 50, negativeTtlMs: 9 },
      ]),
      [{ candidate: 'x', positiveTtlMs: 50, negativeTtlMs: 5 }],
    );
  });
  test('a TTL left to the default defers to one that is set', () => {
    assert.deepEqual(
      mergeProbeRequests([{ candidate: 'x' }, { candidate: 'x', negativeTtlMs: 7 }, { candidate: 'x' }]),
      [{ candidate: 'x', negativeTtlMs: 7 }],
    );
  });
  test('zero is a TTL, not an absent one', () => {
    assert.deepEqual(
      mergeProbeRequests([
        { candidate: 'x', positiveTtlMs: 0 },
        { candidate: 'x', positiveTtlMs: 10 },
      ]),
      [{ candidate: 'x', positiveTtlMs: 0 }],
    );
  });
});

describe('decideWithProbes hands the TTLs to the existence source', () => {
  const missing: ExistenceAnswer = { outcome: 'NotFound', status: 404, cached: false, ageMs: 0 };

  function recordingSource(): { source: ExistenceSource; calls: [string, ProbeOptions | undefined][] } {
    const calls: [string, ProbeOptions | undefined][] = [];
    return {
      calls,
      source: {
        exists: async (candidate, options) => {
          calls.push([candidate, options]);
          return missing;
        },
      },
    };
  }

  test('one candidate asked for maps in three namespaces: once, with the shorter TTLs', async () => {
    const snapshot = snapshotOf(quick, slow, plain);
    const { source, calls } = recordingSource();
    const signal = new AbortController().signal;
    // What `pullmap rewrite` does for manifests in several namespaces.
    const result = await decideWithProbes(
      (facts) => {
        const all = [
          decideImage(snapshot, DEFAULT_DECISION_SETTINGS, 'quay.io/knative/queue:1.0', inNs('slow'), facts),
          decideImage(snapshot, DEFAULT_DECISION_SETTINGS, 'quay.io/knative/queue:1.0', inNs('quick'), facts),
          decideImage(snapshot, DEFAULT_DECISION_SETTINGS, 'quay.io/knative/queue:1.0', inNs('plain'), facts),
          decideImage(snapshot, DEFAULT_DECISION_SETTINGS, 'quay.io/x/y:3', inNs('plain'), facts),
        ];
        return { all, pendingProbes: mergeProbeRequests(all.flatMap((d) => d.pendingProbes)) };
      },
      source,
      signal,
    );
    assert.deepEqual(
      result.all.map((d) => [d.outcome, d.reasons.at(-1)?.code]),
      Array(4).fill(['Unchanged', 'NoCandidateHasImage']),
    );
    assert.deepEqual(calls, [
      ['mirror.local/knative/queue:1.0', { signal, positiveTtlMs: 60_000, negativeTtlMs: 5_000 }],
      ['mirror.local/x/y:3', { signal }],
    ]);
  });

  test('duplicates in a hand-built result are asked once, with the shorter TTL', async () => {
    const { source, calls } = recordingSource();
    let round = 0;
    await decideWithProbes(
      () => ({
        pendingProbes:
          round++ === 0
            ? [
                { candidate: 'r.local/a:1', negativeTtlMs: 30_000 },
                { candidate: 'r.local/a:1', negativeTtlMs: 1_000 },
              ]
            : [],
      }),
      source,
    );
    assert.deepEqual(calls, [['r.local/a:1', { negativeTtlMs: 1_000 }]]);
  });
});
