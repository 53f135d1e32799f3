// What decideImage says and why: the pull policy Kubernetes defaults to, the words of a probe's answer,
// which selector left a pod out, an image that is already a target or already on the cache. These are
// the reasons `explain` prints and the webhook logs, so their codes and the facts in their messages are
// behaviour.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ExistenceAnswer, ExistenceFacts } from '../../../src/core/facts.ts';
import {
  analyzeMaps,
  buildSnapshot,
  type DecisionContext,
  decideImage,
  decisionSettings,
  type MapSnapshot,
} from '../../../src/core/mapping/index.ts';

const snapshotOf = (...objects: unknown[]): MapSnapshot => {
  const analysis = analyzeMaps(objects.map((current) => ({ current })));
  for (const v of analysis.verdicts) assert.equal(v.verdict, 'Accepted', JSON.stringify(v.findings));
  return buildSnapshot(analysis.accepted);
};
const settings = decisionSettings({ cacheAddress: 'cache.local:7439' });
const clusterMap = (name: string, spec: Record<string, unknown>) => ({
  apiVersion: 'pullmap.dev/v1alpha1',
  kind: 'ClusterImageMap',
  metadata: { name },
  spec,
});
const ctx = (over: Partial<DecisionContext> = {}): DecisionContext => ({
  namespace: 'team-a',
  namespaceLabels: { 'kubernetes.io/metadata.name': 'team-a' },
  podLabels: {},
  pullPolicy: undefined,
  ...over,
});
const none: ExistenceFacts = () => undefined;
const codes = (d: { reasons: readonly { code: string }[] }) => d.reasons.map((r) => r.code);

describe('pullPolicyAlways: KeepOriginal and the pull policy Kubernetes defaults to', () => {
  const s = snapshotOf(
    clusterMap('m', {
      mappings: [{ from: 'docker.io/', to: 'mirror.local/hub/' }],
      pullPolicyAlways: 'KeepOriginal',
    }),
  );
  test('no tag, or :latest, defaults to Always: kept', () => {
    for (const image of ['nginx', 'nginx:latest']) {
      const d = decideImage(s, settings, image, ctx(), none);
      assert.equal(d.outcome, 'Unchanged', image);
      assert.deepEqual(codes(d), ['Matched', 'PullPolicyAlwaysKept'], image);
      assert.match(
        d.reasons[1]!.message,
        /imagePullPolicy is Always and ClusterImageMap\/m keeps such images/,
      );
    }
  });
  test('another tag, or a digest even with :latest, defaults to IfNotPresent: mapped', () => {
    const digest = `sha256:${'c'.repeat(64)}`;
    for (const image of ['nginx:1.27', `nginx@${digest}`, `nginx:latest@${digest}`])
      assert.equal(decideImage(s, settings, image, ctx(), none).outcome, 'Mapped', image);
  });
  test('a written policy wins over the default', () => {
    assert.equal(
      decideImage(s, settings, 'nginx', ctx({ pullPolicy: 'IfNotPresent' }), none).outcome,
      'Mapped',
    );
    assert.equal(
      decideImage(s, settings, 'nginx:1.27', ctx({ pullPolicy: 'Always' }), none).outcome,
      'Unchanged',
    );
  });
});

describe('when: IfExists: the probe answers in the reasons', () => {
  const s = snapshotOf(
    clusterMap('z', {
      mappings: [{ from: 'docker.io/', to: ['one.local/', 'two.local/'], when: 'IfExists' }],
    }),
  );
  const facts =
    (answers: Record<string, ExistenceAnswer>): ExistenceFacts =>
    (name) =>
      answers[name];
  test('a cached miss says its status, age and detail; a fresh hit says it was asked now', () => {
    const d = decideImage(
      s,
      settings,
      'nginx:1.27',
      ctx(),
      facts({
        'one.local/library/nginx:1.27': {
          outcome: 'NotFound',
          status: 404,
          cached: true,
          ageMs: 12_400,
          detail: 'manifest unknown',
        },
        'two.local/library/nginx:1.27': { outcome: 'Available', status: 200, cached: false, ageMs: 0 },
      }),
    );
    assert.equal(d.outcome, 'Mapped');
    assert.equal(d.image, 'two.local/library/nginx:1.27');
    assert.deepEqual(
      d.reasons.slice(1).map((r) => [r.code, r.message]),
      [
        [
          'CandidateMissing',
          'one.local/library/nginx:1.27: NotFound (HTTP 404), cached 12s ago: manifest unknown',
        ],
        ['CandidateAvailable', 'two.local/library/nginx:1.27: Available (HTTP 200), asked now'],
      ],
    );
  });
  test('no candidate has it: kept, and said so', () => {
    const missing: ExistenceAnswer = { outcome: 'NotFound', cached: false, ageMs: 0 };
    const d = decideImage(
      s,
      settings,
      'nginx:1.27',
      ctx(),
      facts({ 'one.local/library/nginx:1.27': missing, 'two.local/library/nginx:1.27': missing }),
    );
    assert.equal(d.outcome, 'Unchanged');
    assert.deepEqual(codes(d), ['Matched', 'CandidateMissing', 'CandidateMissing', 'NoCandidateHasImage']);
    assert.equal(d.reasons[1]!.message, 'one.local/library/nginx:1.27: NotFound, asked now');
  });
  test('an unanswered candidate is pending and asked for; nothing is chosen past it', () => {
    const d = decideImage(s, settings, 'nginx:1.27', ctx(), none);
    assert.equal(d.outcome, 'Pending');
    assert.equal(d.image, 'nginx:1.27');
    assert.deepEqual(
      d.pendingProbes.map((p) => p.candidate),
      ['one.local/library/nginx:1.27', 'two.local/library/nginx:1.27'],
    );
    assert.equal(d.reasons[1]!.message, 'one.local/library/nginx:1.27: not asked yet');
  });
  test('onProbeError: KeepOriginal stops at a registry that could not be asked', () => {
    const k = snapshotOf(
      clusterMap('k', {
        mappings: [
          {
            from: 'docker.io/',
            to: ['one.local/', 'two.local/'],
            when: 'IfExists',
            onProbeError: 'KeepOriginal',
          },
        ],
      }),
    );
    const d = decideImage(
      k,
      settings,
      'nginx:1.27',
      ctx(),
      facts({
        'one.local/library/nginx:1.27': { outcome: 'Timeout', cached: false, ageMs: 0 },
        'two.local/library/nginx:1.27': { outcome: 'Available', cached: false, ageMs: 0 },
      }),
    );
    assert.equal(d.outcome, 'Unchanged');
    assert.deepEqual(codes(d), ['Matched', 'CandidateProbeFailed', 'ProbeFailureKeptOriginal']);
  });
});

describe('selectors that leave a pod out say which', () => {
  const s = snapshotOf(
    clusterMap('ns', {
      namespaceSelector: { matchLabels: { tier: 'edge' } },
      mappings: [{ from: 'docker.io/', to: 'edge.local/' }],
    }),
    clusterMap('pods', {
      podSelector: { matchLabels: { app: 'web' } },
      mappings: [{ from: 'quay.io/', to: 'web.local/' }],
    }),
  );
  test('namespaceSelector: the namespace and its labels', () => {
    const d = decideImage(s, settings, 'nginx:1.27', ctx(), none);
    assert.equal(d.outcome, 'Unchanged');
    assert.deepEqual(d.reasons, [
      {
        code: 'NamespaceNotSelected',
        message:
          'ClusterImageMap/ns spec.mappings[0] matches the image, but its namespaceSelector does not select namespace team-a (labels: kubernetes.io/metadata.name=team-a)',
      },
    ]);
    const selected = ctx({ namespaceLabels: { 'kubernetes.io/metadata.name': 'team-a', tier: 'edge' } });
    assert.equal(decideImage(s, settings, 'nginx:1.27', selected, none).outcome, 'Mapped');
  });
  test('podSelector', () => {
    const d = decideImage(s, settings, 'quay.io/acme/app:1', ctx(), none);
    assert.deepEqual(codes(d), ['PodNotSelected']);
    assert.match(
      d.reasons[0]!.message,
      /^ClusterImageMap\/pods spec\.mappings\[0\] matches the image, but its podSelector/,
    );
    assert.equal(
      decideImage(s, settings, 'quay.io/acme/app:1', ctx({ podLabels: { app: 'web' } }), none).outcome,
      'Mapped',
    );
  });
});

describe('never twice', () => {
  const s = snapshotOf(
    clusterMap('hub', { mappings: [{ from: 'docker.io/', to: 'mirror.local/hub/' }] }),
    clusterMap('cached', { cache: { enabled: true }, mappings: [{ from: 'quay.io/', to: 'quay.io/' }] }),
  );
  test('an image that is already a mapping target names the mapping that produced it', () => {
    const d = decideImage(s, settings, 'mirror.local/hub/library/nginx:1.27', ctx(), none);
    assert.equal(d.outcome, 'Unchanged');
    assert.deepEqual(d.reasons, [
      {
        code: 'AlreadyMapped',
        message:
          'the image is already a target of ClusterImageMap/hub spec.mappings[0]; pullmap never maps an image twice',
      },
    ]);
  });
  test('an image routed through the cache once is not routed again', () => {
    const first = decideImage(s, settings, 'quay.io/acme/app:1', ctx(), none);
    assert.equal(first.outcome, 'Mapped');
    assert.deepEqual(codes(first), ['Matched', 'CacheRouted']);
    assert.equal(first.reasons[1]!.message, 'routed through the pullmap cache at cache.local:7439');
    const again = decideImage(s, settings, first.image, ctx(), none);
    assert.equal(again.outcome, 'Unchanged');
    assert.deepEqual(again.reasons, [
      {
        code: 'AlreadyMapped',
        message: 'cache.local:7439 is the pullmap cache: the image was routed already',
      },
    ]);
  });
});
