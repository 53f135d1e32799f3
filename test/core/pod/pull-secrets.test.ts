// pullSecret: the pod names the mapping's Secret (pullmap's copy for a ClusterImageMap) once, keeps
// every secret it had, and the controller keeps copies exactly where ClusterImageMaps select.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { loadYamlObjects } from '../../../src/core/config.ts';
import { analyzeMaps, buildSnapshot, DEFAULT_DECISION_SETTINGS } from '../../../src/core/mapping/index.ts';
import { planPod, podImages } from '../../../src/core/pod/plan.ts';
import {
  COPY_LABEL,
  desiredCopies,
  planCopies,
  type SecretState,
} from '../../../src/core/pod/pull-secrets.ts';

const MAPS = `apiVersion: pullmap.dev/v1alpha1
kind: ClusterImageMap
metadata: { name: hub }
spec:
  namespaceSelector: { matchLabels: { mirror: "yes" } }
  mappings:
    - { from: docker.io/, to: mirror.local/hub/, pullSecret: mirror-creds }
    - { from: quay.io/, to: mirror.local/quay/ }
---
apiVersion: pullmap.dev/v1alpha1
kind: ImageMap
metadata: { name: team, namespace: team }
spec:
  mappings:
    - { from: ghcr.io/acme/, to: team.registry/acme/, pullSecret: team-creds }
`;
const analysis = analyzeMaps(loadYamlObjects(MAPS, 'maps.yaml').objects.map((d) => ({ current: d.value })));
const snapshot = buildSnapshot(analysis.accepted);
const ctx = (namespace: string) => ({ namespace, namespaceLabels: { mirror: 'yes' } });
const pod = (containers: Record<string, string>, imagePullSecrets?: { name: string }[]) => ({
  kind: 'Pod',
  metadata: { name: 'p' },
  spec: {
    containers: Object.entries(containers).map(([name, image]) => ({ name, image })),
    ...(imagePullSecrets ? { imagePullSecrets } : {}),
  },
});
const secretOps = (patch: readonly { path: string }[]) =>
  patch.filter((op) => op.path.startsWith('/spec/imagePullSecrets'));

describe('pullSecret', () => {
  test('is accepted in the schema and checked as a Secret name', () => {
    assert.equal(
      analysis.verdicts.every((v) => v.verdict === 'Accepted'),
      true,
    );
    const bad = analyzeMaps(
      loadYamlObjects(MAPS.replace('pullSecret: mirror-creds', 'pullSecret: Mirror_Creds'), 'x').objects.map(
        (d) => ({
          current: d.value,
        }),
      ),
    );
    assert.equal(bad.verdicts[0]?.verdict, 'Invalid');
    assert.match(
      JSON.stringify(bad.verdicts[0]?.findings),
      /spec\.mappings\[0\]\.pullSecret.*not a Secret name/,
    );
  });

  test("a ClusterImageMap mapping adds pullmap's copy once, however many images it rewrote", () => {
    const plan = planPod(
      snapshot,
      DEFAULT_DECISION_SETTINGS,
      pod({ a: 'nginx:1.27', b: 'redis:7', c: 'quay.io/x/y:1' }),
      ctx('web'),
      () => undefined,
    );
    assert.deepEqual(secretOps(plan.patch), [
      { op: 'add', path: '/spec/imagePullSecrets', value: [{ name: 'pullmap-mirror-creds' }] },
    ]);
  });

  test('existing pull secrets are kept and never duplicated', () => {
    const own = planPod(
      snapshot,
      DEFAULT_DECISION_SETTINGS,
      pod({ a: 'nginx:1.27' }, [{ name: 'mine' }]),
      ctx('web'),
      () => undefined,
    );
    assert.deepEqual(secretOps(own.patch), [
      { op: 'add', path: '/spec/imagePullSecrets/-', value: { name: 'pullmap-mirror-creds' } },
    ]);
    const already = planPod(
      snapshot,
      DEFAULT_DECISION_SETTINGS,
      pod({ a: 'nginx:1.27' }, [{ name: 'pullmap-mirror-creds' }]),
      ctx('web'),
      () => undefined,
    );
    assert.deepEqual(secretOps(already.patch), []);
  });

  test("an ImageMap names its own namespace's Secret; unmapped images add nothing", () => {
    const team = planPod(
      snapshot,
      DEFAULT_DECISION_SETTINGS,
      pod({ a: 'ghcr.io/acme/app:1', b: 'nginx:1.27' }),
      ctx('team'),
      () => undefined,
    );
    assert.deepEqual(secretOps(team.patch), [
      {
        op: 'add',
        path: '/spec/imagePullSecrets',
        value: [{ name: 'team-creds' }, { name: 'pullmap-mirror-creds' }],
      },
    ]);
    const none = planPod(
      snapshot,
      DEFAULT_DECISION_SETTINGS,
      pod({ a: 'quay.io/x/y:1', b: 'registry.k8s.io/pause:3.10' }),
      ctx('web'),
      () => undefined,
    );
    assert.deepEqual(secretOps(none.patch), []);
  });

  test('updates never touch imagePullSecrets (immutable after creation)', () => {
    const stored = pod({ a: 'nginx:1.27' });
    const updated = pod({ a: 'nginx:1.28' });
    const plan = planPod(
      snapshot,
      DEFAULT_DECISION_SETTINGS,
      updated,
      { ...ctx('web'), previousImages: podImages(stored) },
      () => undefined,
    );
    assert.equal(plan.containers[0]?.decision?.outcome, 'Mapped');
    assert.deepEqual(secretOps(plan.patch), []);
  });

  test('copies exist in every namespace a ClusterImageMap selects, never in excluded or own ones', () => {
    const copies = desiredCopies({
      maps: analysis.accepted.map((m) => ({ kind: m.ref.kind, spec: m.spec })),
      namespaces: new Map([
        ['web', { mirror: 'yes' }],
        ['other', {}],
        ['team', { mirror: 'yes' }],
        ['kube-system', { mirror: 'yes' }],
        ['pullmap-system', { mirror: 'yes' }],
      ]),
      excludedNamespaces: ['kube-system', 'pullmap-system'],
      ownNamespace: 'pullmap-system',
    });
    assert.deepEqual(copies, [
      { namespace: 'team', name: 'pullmap-mirror-creds', source: 'mirror-creds' },
      { namespace: 'web', name: 'pullmap-mirror-creds', source: 'mirror-creds' },
    ]);
  });
});

describe('planCopies: what the controller writes and deletes, from the stores it watches', () => {
  const DCJ = 'kubernetes.io/dockerconfigjson';
  const secret = (
    namespace: string,
    name: string,
    data: Record<string, string>,
    type = DCJ,
  ): SecretState => ({
    metadata: { namespace, name, resourceVersion: '7' },
    type,
    data,
  });
  const plan = (sources: Record<string, SecretState>, copies: SecretState[]) =>
    planCopies({
      maps: analysis.accepted.map((m) => ({ kind: m.ref.kind, spec: m.spec })),
      namespaces: new Map([
        ['web', { mirror: 'yes' }],
        ['team', { mirror: 'yes' }],
        ['other', {}],
      ]),
      excludedNamespaces: [],
      ownNamespace: 'pullmap-system',
      sources: (name) => sources[name],
      copies: new Map(copies.map((c) => [`${c.metadata.namespace}/${c.metadata.name}`, c])),
    });
  const creds = secret('pullmap-system', 'mirror-creds', { '.dockerconfigjson': 'b25l' });

  test('creates the missing copies with the source data, the copy label and no resourceVersion', () => {
    const p = plan({ 'mirror-creds': creds }, []);
    assert.deepEqual(
      p.writes.map((w) => [w.op, w.copy.namespace, w.copy.name]),
      [
        ['create', 'team', 'pullmap-mirror-creds'],
        ['create', 'web', 'pullmap-mirror-creds'],
      ],
    );
    const body = p.writes[0]?.body as { metadata: Record<string, unknown>; type: string; data: unknown };
    assert.deepEqual(body.metadata['labels'], {
      [COPY_LABEL]: 'mirror-creds',
      'app.kubernetes.io/managed-by': 'pullmap',
    });
    assert.equal(body.metadata['resourceVersion'], undefined);
    assert.equal(body.type, DCJ);
    assert.deepEqual(body.data, creds.data);
    assert.deepEqual(p.deletes, []);
    assert.deepEqual(p.unusable, []);
  });

  test('leaves an equal copy alone and updates a stale or retyped one at its resourceVersion', () => {
    const p = plan({ 'mirror-creds': creds }, [
      secret('team', 'pullmap-mirror-creds', { '.dockerconfigjson': 'b25l' }),
      secret('web', 'pullmap-mirror-creds', { '.dockerconfigjson': 'b2xk' }),
    ]);
    assert.deepEqual(
      p.writes.map((w) => [w.op, w.copy.namespace]),
      [['update', 'web']],
    );
    const meta = (p.writes[0]?.body as { metadata: Record<string, unknown> } | undefined)?.metadata;
    assert.equal(meta?.['resourceVersion'], '7');
    const retyped = plan({ 'mirror-creds': creds }, [
      secret('team', 'pullmap-mirror-creds', { '.dockerconfigjson': 'b25l' }, 'Opaque'),
      secret('web', 'pullmap-mirror-creds', { '.dockerconfigjson': 'b25l' }),
    ]);
    assert.deepEqual(
      retyped.writes.map((w) => [w.op, w.copy.namespace]),
      [['update', 'team']],
    );
  });

  test('deletes copies no map needs, and keeps none for a source that is missing or of another type', () => {
    const stale = secret('other', 'pullmap-mirror-creds', {});
    const kept = secret('web', 'pullmap-mirror-creds', { '.dockerconfigjson': 'b25l' });
    assert.deepEqual(plan({ 'mirror-creds': creds }, [stale, kept]).deletes, [
      { namespace: 'other', name: 'pullmap-mirror-creds' },
    ]);
    const missing = plan({}, [kept]);
    assert.deepEqual(missing.writes, []);
    assert.deepEqual(missing.deletes, [{ namespace: 'web', name: 'pullmap-mirror-creds' }]);
    assert.deepEqual(missing.unusable, [{ source: 'mirror-creds', missing: true, type: undefined }]);
    const opaque = plan({ 'mirror-creds': secret('pullmap-system', 'mirror-creds', {}, 'Opaque') }, []);
    assert.deepEqual(opaque.writes, []);
    assert.deepEqual(opaque.unusable, [{ source: 'mirror-creds', missing: false, type: 'Opaque' }]);
  });
});
