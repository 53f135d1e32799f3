// Image volumes (spec.volumes[].image.reference) are pulled by the kubelet like container images, so
// they get the same decision, patch and annotations, under keys that cannot collide with containers.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ExistenceAnswer } from '../../../src/core/facts.ts';
import { scanManifests, spliceImages } from '../../../src/core/manifest/rewrite.ts';
import { DEFAULT_DECISION_SETTINGS } from '../../../src/core/mapping/index.ts';
import { containerImages } from '../../../src/core/pod/locate.ts';
import { planInputsKey, planPod, podImages } from '../../../src/core/pod/plan.ts';
import { clusterSnapshot } from '../maps.ts';

const snapshot = clusterSnapshot({
  mappings: [{ from: 'docker.io/', to: 'mirror.local/hub/' }],
  mutableTags: ['latest'],
});
const ns = { namespace: 'default', namespaceLabels: {} };
const pod = (annotations?: Record<string, string>) => ({
  kind: 'Pod',
  metadata: { name: 'p', ...(annotations ? { annotations } : {}) },
  spec: {
    containers: [{ name: 'data', image: 'nginx:1.27' }],
    volumes: [
      { name: 'cfg', configMap: { name: 'x' } },
      { name: 'data', image: { reference: 'acme/models:v3', pullPolicy: 'IfNotPresent' } },
      { name: 'tools', image: { reference: 'busybox:latest' } },
    ],
  },
});
type Op = { op: string; path: string; value: unknown };
const annotationsOf = (patch: readonly Op[]) =>
  (patch.find((op) => op.path === '/metadata/annotations') as { value: Record<string, string> }).value;

describe('image volumes', () => {
  test('are found with their pull policy, after the containers, keyed volume:NAME', () => {
    const found = containerImages(pod().spec);
    assert.deepEqual(
      found.map((c) => [c.name, c.image, c.pullPolicy, c.path.join('/')]),
      [
        ['data', 'nginx:1.27', undefined, 'containers/0/image'],
        ['volume:data', 'acme/models:v3', 'IfNotPresent', 'volumes/1/image/reference'],
        ['volume:tools', 'busybox:latest', undefined, 'volumes/2/image/reference'],
      ],
    );
  });

  test('are patched and recorded beside a container of the same name; mutable tags are kept', () => {
    const plan = planPod(snapshot, DEFAULT_DECISION_SETTINGS, pod(), ns, () => undefined);
    assert.deepEqual(
      plan.patch.filter((op) => op.op === 'replace'),
      [
        { op: 'replace', path: '/spec/containers/0/image', value: 'mirror.local/hub/library/nginx:1.27' },
        { op: 'replace', path: '/spec/volumes/1/image/reference', value: 'mirror.local/hub/acme/models:v3' },
      ],
    );
    const tools = plan.containers.find((c) => c.name === 'volume:tools');
    assert.equal(tools?.decision?.outcome, 'Unchanged');
    assert.equal(tools?.decision?.reasons.at(-1)?.code, 'MutableTagKept');
    const values = annotationsOf(plan.patch);
    assert.deepEqual(JSON.parse(values['pullmap.dev/original-images']!), {
      data: 'nginx:1.27',
      'volume:data': 'acme/models:v3',
    });
    assert.deepEqual(Object.keys(JSON.parse(values['pullmap.dev/mapped-by']!)), ['data', 'volume:data']);
  });

  test('are never mapped twice, and an update that changes one is decided afresh', () => {
    const first = planPod(snapshot, DEFAULT_DECISION_SETTINGS, pod(), ns, () => undefined);
    const stored = pod(annotationsOf(first.patch));
    stored.spec.containers[0]!.image = 'mirror.local/hub/library/nginx:1.27';
    stored.spec.volumes[1]!.image!.reference = 'mirror.local/hub/acme/models:v3';
    assert.deepEqual(
      planPod(snapshot, DEFAULT_DECISION_SETTINGS, structuredClone(stored), ns, () => undefined).patch,
      [],
    );

    const previousImages = podImages(stored);
    const updated = structuredClone(stored);
    updated.spec.volumes[1]!.image!.reference = 'acme/models:v4';
    const plan = planPod(
      snapshot,
      DEFAULT_DECISION_SETTINGS,
      updated,
      { ...ns, previousImages },
      () => undefined,
    );
    assert.deepEqual(plan.patch[0], {
      op: 'replace',
      path: '/spec/volumes/1/image/reference',
      value: 'mirror.local/hub/acme/models:v4',
    });
    const orig = plan.patch.find((op) => op.path === '/metadata/annotations/pullmap.dev~1original-images');
    assert.deepEqual(JSON.parse(orig!.value as string), {
      data: 'nginx:1.27',
      'volume:data': 'acme/models:v4',
    });
  });

  test('pullPolicy Always on the volume is honoured like a container imagePullPolicy', () => {
    const keep = clusterSnapshot({
      mappings: [{ from: 'docker.io/', to: 'mirror.local/hub/' }],
      pullPolicyAlways: 'KeepOriginal',
    });
    const p = pod();
    p.spec.volumes[1]!.image!.pullPolicy = 'Always';
    const plan = planPod(keep, DEFAULT_DECISION_SETTINGS, p, ns, () => undefined);
    assert.equal(plan.containers.find((c) => c.name === 'volume:data')?.decision?.outcome, 'Unchanged');
  });

  test('IfExists asks about the volume image, and stage 2 routes it through the cache', () => {
    const routed = clusterSnapshot({
      mappings: [{ from: 'docker.io/', to: 'mirror.local/hub/', when: 'IfExists' }],
      cache: { enabled: true },
    });
    const p = {
      kind: 'Pod',
      metadata: {},
      spec: { volumes: [{ name: 'm', image: { reference: 'acme/models:v3' } }] },
    };
    const pending = planPod(routed, DEFAULT_DECISION_SETTINGS, p, ns, () => undefined);
    assert.deepEqual(
      pending.pendingProbes.map((r) => r.candidate),
      ['mirror.local/hub/acme/models:v3'],
    );
    assert.deepEqual(pending.patch, []);
    const plan = planPod(
      routed,
      DEFAULT_DECISION_SETTINGS,
      p,
      ns,
      (): ExistenceAnswer => ({ outcome: 'Available', cached: true, ageMs: 0, detail: 'test' }),
    );
    assert.deepEqual(plan.patch[0], {
      op: 'replace',
      path: '/spec/volumes/0/image/reference',
      value: 'localhost:7439/mirror.local/hub/acme/models:v3',
    });
  });

  test('the plan memo key changes with a volume image', () => {
    const a = pod();
    const b = pod();
    b.spec.volumes[1]!.image!.reference = 'acme/models:v4';
    assert.notEqual(planInputsKey(a, ns), planInputsKey(b, ns));
  });

  test('an invalid volume image is left alone with a warning naming the volume', () => {
    const p = pod();
    p.spec.volumes[1]!.image!.reference = 'NOT VALID';
    const plan = planPod(snapshot, DEFAULT_DECISION_SETTINGS, p, ns, () => undefined);
    assert.match(plan.warnings[0] ?? '', /^pullmap: image volume data: /);
  });

  test('rewrite finds them in pod templates and splices only the reference', () => {
    const text = `apiVersion: apps/v1
kind: Deployment
metadata: { name: web }
spec:
  template:
    spec:
      containers:
        - name: app
          image: nginx:1.27
      volumes:
        - name: models   # weights
          image:
            reference: "acme/models:v3"
            pullPolicy: IfNotPresent
`;
    const scan = scanManifests(text, 'x.yaml');
    assert.deepEqual(
      scan.images.map((i) => [i.image, i.pullPolicy, i.where]),
      [
        ['nginx:1.27', undefined, 'Deployment/web spec.template.spec.containers[0]'],
        ['acme/models:v3', 'IfNotPresent', 'Deployment/web spec.template.spec.volumes[0]'],
      ],
    );
    const out = spliceImages(text, scan, new Map([[1, 'mirror.local/hub/acme/models:v3']]));
    assert.equal(out, text.replace('"acme/models:v3"', '"mirror.local/hub/acme/models:v3"'));
  });
});
