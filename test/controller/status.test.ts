// The status the controller writes for a verdict: a change only when something changed, a transition
// time that moves only with status or reason, and the last accepted spec kept for other replicas.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { desiredStatus, statusDiffers } from '../../src/controller/status.ts';
import { analyzeMaps } from '../../src/core/mapping/index.ts';
import type { KubeObject } from '../../src/kube/list-watch.ts';

const accepted: KubeObject = {
  apiVersion: 'pullmap.dev/v1alpha1',
  kind: 'ImageMap',
  metadata: {
    name: 'a',
    namespace: 'team',
    creationTimestamp: '2026-01-01T00:00:00Z',
    generation: 1,
    uid: 'u',
  },
  spec: { mappings: [{ from: 'nginx', to: 'a.example/nginx' }] },
};
const inputs = [{ current: accepted }];

test('status: written only when something changes; the transition time moves only with status or reason', () => {
  const verdict = analyzeMaps(inputs).verdicts[0]!;
  const first = desiredStatus(accepted, verdict, '2026-01-01T00:00:10Z');
  assert.equal(first.conditions[0]!.status, 'True');
  assert.equal(first.servingGeneration, 1);
  assert.equal(first.mappings, 1);
  assert.deepEqual(first.lastAccepted, { generation: 1, spec: accepted.spec });
  const stored = { ...accepted, status: JSON.parse(JSON.stringify(first)) };
  const again = desiredStatus(stored, verdict, '2026-01-01T00:05:00Z');
  assert.equal(again.conditions[0]!.lastTransitionTime, '2026-01-01T00:00:10Z');
  assert.equal(statusDiffers(stored, again), false);

  const broken = {
    ...stored,
    metadata: { ...stored.metadata, generation: 2 },
    spec: { mappings: [{ from: 'nginx', to: ['a/', 'b/'] }] },
  };
  const v2 = analyzeMaps([{ current: broken, lastAccepted: accepted as never }]).verdicts[0]!;
  const rejected = desiredStatus(broken, v2, '2026-01-01T00:06:00Z');
  assert.equal(rejected.conditions[0]!.reason, 'Invalid');
  assert.equal(rejected.conditions[0]!.lastTransitionTime, '2026-01-01T00:06:00Z');
  assert.equal(rejected.servingGeneration, 1);
  assert.equal(rejected.lastAccepted?.generation, 1, 'the accepted spec stays recorded');
  assert.match(rejected.conditions[0]!.message, /\(generation 1 keeps serving\)$/);
  assert.equal(statusDiffers(broken, rejected), true);
});

test('status: a mutableTags pattern RE2 cannot express makes the map Invalid, naming the field and the reason', () => {
  // The controller's own path (analyzeMaps, then the status it writes), beside check and the validating webhook.
  for (const [pattern, reason] of [
    [
      '(?!rc)[a-z]+',
      /^spec\.mutableTags\[1\]: uses the lookaround \(\?! \.\.\.\): patterns are matched by RE2/,
    ],
    ['(v)\\1', /^spec\.mutableTags\[1\]: uses the backreference \\1: patterns are matched by RE2/],
  ] as const) {
    const map = { ...accepted, spec: { ...(accepted.spec as object), mutableTags: ['latest', pattern] } };
    const verdict = analyzeMaps([{ current: map }]).verdicts[0]!;
    const status = desiredStatus(map, verdict, '2026-01-01T00:00:10Z');
    assert.equal(status.conditions[0]!.status, 'False', pattern);
    assert.equal(status.conditions[0]!.reason, 'Invalid', pattern);
    assert.match(status.conditions[0]!.message, reason);
    assert.equal(status.servingGeneration, undefined, 'nothing of it serves');
  }
});

test('status: with pull secret copying off, a ClusterImageMap naming a pullSecret says so beside Ready', () => {
  const cluster: KubeObject = {
    apiVersion: 'pullmap.dev/v1alpha1',
    kind: 'ClusterImageMap',
    metadata: { name: 'private', creationTimestamp: '2026-01-01T00:00:00Z', generation: 2, uid: 'c' },
    spec: {
      mappings: [
        { from: 'ghcr.io/acme/', to: 'mirror.example/acme/', pullSecret: 'mirror-pull' },
        { from: 'quay.io/acme/', to: 'mirror.example/quay/', pullSecret: 'mirror-pull' },
      ],
    },
  };
  const verdict = analyzeMaps([{ current: cluster }]).verdicts[0]!;
  const off = desiredStatus(cluster, verdict, '2026-01-01T00:00:10Z', { pullSecretCopy: false });
  assert.equal(off.conditions[0]!.type, 'Ready');
  assert.equal(off.conditions[0]!.status, 'True', 'the map itself is fine');
  const note = off.conditions.find((c) => c.type === 'PullSecretsCopied')!;
  assert.equal(note.status, 'False');
  assert.equal(note.reason, 'CopyDisabled');
  assert.equal(note.observedGeneration, 2);
  assert.match(
    note.message,
    /pullSecretCopy\.enabled=false.*--no-pull-secret-copy.*pullmap-mirror-pull,? which/,
  );
  // The transition time is kept while the note stays.
  const again = desiredStatus({ ...cluster, status: off }, verdict, '2026-01-01T00:09:00Z', {
    pullSecretCopy: false,
  });
  assert.equal(statusDiffers({ ...cluster, status: off }, again), false);
  // Copying on (the default), or a map without pullSecret, or an ImageMap (its Secret is its own): no note.
  assert.equal(desiredStatus(cluster, verdict, 'now').conditions.length, 1);
  assert.equal(desiredStatus(cluster, verdict, 'now', { pullSecretCopy: true }).conditions.length, 1);
  const own = {
    ...accepted,
    spec: { mappings: [{ from: 'nginx', to: 'a.example/nginx', pullSecret: 's' }] },
  };
  const ownVerdict = analyzeMaps([{ current: own }]).verdicts[0]!;
  assert.equal(desiredStatus(own, ownVerdict, 'now', { pullSecretCopy: false }).conditions.length, 1);
  // Turning copying back on removes the note (a status write).
  assert.equal(statusDiffers({ ...cluster, status: off }, desiredStatus(cluster, verdict, 'now')), true);
});

test('status: with the cache upstreams known, a cache.enabled map targeting another host gets a warning beside Ready', () => {
  const routed: KubeObject = {
    apiVersion: 'pullmap.dev/v1alpha1',
    kind: 'ClusterImageMap',
    metadata: { name: 'through-cache', creationTimestamp: '2026-01-01T00:00:00Z', generation: 3, uid: 'r' },
    spec: {
      mappings: [
        { from: 'docker.io/', to: 'docker.io/' },
        { from: 'quay.io/', to: ['quay.io/', 'mirror.internal:5000/quay/'], when: 'IfExists' },
      ],
      cache: { enabled: true },
    },
  };
  const verdict = analyzeMaps([{ current: routed }]).verdicts[0]!;
  const context = { cacheUpstreams: ['docker.io', 'quay.io'] };
  const warned = desiredStatus(routed, verdict, '2026-01-01T00:00:10Z', context);
  assert.equal(warned.conditions[0]!.status, 'True', 'a warning: the map still serves');
  const note = warned.conditions.find((c) => c.type === 'CacheTargetsProxied')!;
  assert.equal(note.status, 'False');
  assert.equal(note.reason, 'NotCacheUpstream');
  assert.equal(note.observedGeneration, 3);
  assert.match(
    note.message,
    /^spec\.mappings\[1\]\.to\[1\]: mirror\.internal:5000 is not an upstream of the cache \(its upstreams: docker\.io, quay\.io\).*add mirror\.internal:5000 to the cache's upstreams, or disable cache for this map.*--cache-upstreams/,
  );
  const stored = { ...routed, status: warned };
  assert.equal(statusDiffers(stored, desiredStatus(stored, verdict, 'later', context)), false);
  // Fixed by the list (the host added) or with no list at all: the note goes, a status write.
  const fixed = desiredStatus(stored, verdict, 'later', {
    cacheUpstreams: ['docker.io', 'quay.io', 'mirror.internal:5000'],
  });
  assert.equal(fixed.conditions.length, 1);
  assert.equal(statusDiffers(stored, fixed), true);
  assert.equal(desiredStatus(routed, verdict, 'now').conditions.length, 1, 'no list: not checked');
  // A map that does not use the cache is not checked.
  const direct = { ...routed, spec: { ...(routed.spec as object), cache: { enabled: false } } };
  const directVerdict = analyzeMaps([{ current: direct }]).verdicts[0]!;
  assert.equal(desiredStatus(direct, directVerdict, 'now', context).conditions.length, 1);
});
