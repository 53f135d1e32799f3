import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { countYamlValues, loadYamlObjects } from '../../../src/core/config.ts';
import { scanManifests, spliceImages } from '../../../src/core/manifest/rewrite.ts';
import { analyzeMaps, buildSnapshot, DEFAULT_DECISION_SETTINGS } from '../../../src/core/mapping/index.ts';
import { loadMapsFromTexts, MAX_MAP_VALUES } from '../../../src/core/mapping/load.ts';
import { planPod, podImages } from '../../../src/core/pod/plan.ts';

const map = (
  kind: string,
  name: string,
  spec: Record<string, unknown>,
  metadata: Record<string, unknown> = {},
) => ({
  apiVersion: 'pullmap.dev/v1alpha1',
  kind,
  metadata: { name, ...metadata },
  spec,
});
const verdicts = (...objects: unknown[]) => analyzeMaps(objects.map((current) => ({ current }))).verdicts;

describe('consistency', () => {
  test('two tenants map one source differently: the later map is rejected, naming both', () => {
    const [a, b] = verdicts(
      map(
        'ImageMap',
        'first',
        { mappings: [{ from: 'gcr.io/google-samples/', to: 'reg.a/samples/' }] },
        { namespace: 't', creationTimestamp: '2026-01-01T00:00:00Z' },
      ),
      map(
        'ImageMap',
        'second',
        { mappings: [{ from: 'gcr.io/google-samples/', to: 'reg.b/samples/' }] },
        { namespace: 't', creationTimestamp: '2026-01-02T00:00:00Z' },
      ),
    );
    assert.equal(a?.verdict, 'Accepted');
    assert.equal(b?.verdict, 'Conflict');
    assert.equal(b?.findings[0]?.path, 'spec.mappings[0]');
    assert.match(b!.findings[0]!.message, /ImageMap\/t\/first spec\.mappings\[0\]/);
    assert.match(b!.findings[0]!.message, /reg\.a\/samples\//);
    assert.match(b!.findings[0]!.message, /reg\.b\/samples\//);
  });
  test('same creation time: the name breaks the tie', () => {
    const [b, a] = verdicts(
      map('ImageMap', 'b', { mappings: [{ from: 'nginx', to: 'x.io/nginx' }] }, { namespace: 't' }),
      map('ImageMap', 'a', { mappings: [{ from: 'nginx', to: 'y.io/nginx' }] }, { namespace: 't' }),
    );
    assert.equal(a?.verdict, 'Accepted');
    assert.equal(b?.verdict, 'Conflict');
  });
  test('different namespaces never conflict; agreeing maps do not either', () => {
    const v = verdicts(
      map('ImageMap', 'a', { mappings: [{ from: 'nginx', to: 'x.io/nginx' }] }, { namespace: 't1' }),
      map('ImageMap', 'a', { mappings: [{ from: 'nginx', to: 'y.io/nginx' }] }, { namespace: 't2' }),
      map('ImageMap', 'b', { mappings: [{ from: 'nginx', to: 'y.io/nginx' }] }, { namespace: 't2' }),
    );
    assert.deepEqual(
      v.map((x) => x.verdict),
      ['Accepted', 'Accepted', 'Accepted'],
    );
  });
  test('two registries onto one prefix are not injective', () => {
    const [v] = verdicts(
      map('ClusterImageMap', 'm', {
        mappings: [
          { from: 'docker.io/', to: 'mirror.local/' },
          { from: 'quay.io/', to: 'mirror.local/' },
        ],
      }),
    );
    assert.equal(v?.verdict, 'Invalid');
    assert.equal(v?.findings[0]?.path, 'spec.mappings[1].to');
    assert.match(v!.findings[0]!.message, /keep the source in the target path/);
  });
  test('keeping the registry in the path is injective, and nested consistent prefixes are fine', () => {
    const v = verdicts(
      map('ClusterImageMap', 'm', {
        mappings: [
          { from: 'docker.io/', to: 'mirror.local/docker.io/' },
          { from: 'quay.io/', to: 'mirror.local/quay.io/' },
          { from: 'docker.io/library/', to: 'mirror.local/docker.io/library/' },
        ],
      }),
    );
    assert.equal(v[0]?.verdict, 'Accepted', JSON.stringify(v[0]?.findings));
  });
  test('an exact image landing inside another prefix target collides', () => {
    const [c, n] = verdicts(
      map('ClusterImageMap', 'hub', { mappings: [{ from: 'docker.io/', to: 'mirror.local/' }] }),
      map(
        'ImageMap',
        'tenant',
        { mappings: [{ from: 'quay.io/x/y:1', to: 'mirror.local/x/y:1' }] },
        { namespace: 't' },
      ),
    );
    assert.equal(c?.verdict, 'Accepted');
    assert.equal(n?.verdict, 'Conflict');
    assert.match(n!.findings[0]!.message, /ClusterImageMap\/hub/);
  });
  test('invalid maps name the field and the fix', () => {
    const cases: [unknown, string, RegExp][] = [
      [
        map('ClusterImageMap', 'x', { mappings: [{ from: 'Docker.io/X', to: 'a.io/' }] }),
        'spec.mappings[0].from',
        /must be lowercase/,
      ],
      [
        map('ClusterImageMap', 'x', { mappings: [{ from: 'docker.io/', to: 'a.io/x' }] }),
        'spec.mappings[0].to',
        /must be a prefix ending in "\/"/,
      ],
      [
        map('ClusterImageMap', 'x', { mappings: [{ from: 'nginx', to: 'a.io/nginx:1' }] }),
        'spec.mappings[0].to',
        /must not name a tag/,
      ],
      [
        map('ClusterImageMap', 'x', { mappings: [{ from: 'quay.io/', to: ['a.io/', 'b.io/'] }] }),
        'spec.mappings[0].to',
        /when: IfExists/,
      ],
      [
        map('ClusterImageMap', 'x', { mappings: [{ from: 'quay.io/', to: 'a.io/', when: 'Sometimes' }] }),
        'spec.mappings[0].when',
        /must be one of "Always", "IfExists"/,
      ],
      [
        map('ClusterImageMap', 'x', { mappings: [{ form: 'quay.io/', to: 'a.io/' }] }),
        'spec.mappings[0].from',
        /is required/,
      ],
      [
        map('ClusterImageMap', 'x', { mappings: [{ from: 'quay.io/', to: 'a.io/' }], mutabelTags: [] }),
        'spec.mutabelTags',
        /is not a known field/,
      ],
      [
        map('ClusterImageMap', 'x', {
          mappings: [{ from: 'quay.io/', to: 'a.io/' }],
          mutableTags: ['latest', '(?<!rc)[0-9]+'],
        }),
        'spec.mutableTags[1]',
        /uses the lookaround \(\?<! \.\.\.\): patterns are matched by RE2/,
      ],
      [
        map('ClusterImageMap', 'x', {
          mappings: [{ from: 'quay.io/', to: 'a.io/' }],
          mutableTags: ['(v[0-9])-\\1'],
        }),
        'spec.mutableTags[0]',
        /uses the backreference \\1:/,
      ],
      [
        map('ClusterImageMap', 'x', {
          mappings: [{ from: 'quay.io/', to: 'a.io/' }],
          mutableTags: ['[0-9a-f]{999}'],
        }),
        'spec.mutableTags[0]',
        /compiles to about 999 steps|compiles to \d+ steps; at most 1000/,
      ],
      [
        map('ClusterImageMap', 'x', {
          mappings: [{ from: 'quay.io/', to: 'a.io/' }],
          mutableTags: Array.from({ length: 8 }, (_, i) => `t${i}[a-z]{600}`),
        }),
        'spec.mutableTags',
        /together compile to about \d+ steps; at most 4000/,
      ],
      [
        map('ClusterImageMap', 'UPPER_case', { mappings: [{ from: 'a.io/', to: 'b.io/' }] }),
        'metadata.name',
        /is not a valid Kubernetes name: use lowercase letters, digits, "-" and "\.".* \(such as "upper-case"\)/,
      ],
      [
        map('ImageMap', 'x', { mappings: [{ from: 'a.io/', to: 'b.io/' }] }, { namespace: 'team.a' }),
        'metadata.namespace',
        /is not a valid Kubernetes name: use lowercase letters, digits and "-".* \(such as "team-a"\)/,
      ],
      [
        map('ClusterImageMap', 'x', {
          mappings: [{ from: 'a.io/', to: 'b.io/' }],
          existence: { positiveTTL: '1000000h' },
        }),
        'spec.existence.positiveTTL',
        /is too large; the maximum is 8784h \(366 days\)/,
      ],
      [
        map('ClusterImageMap', 'x', {
          mappings: [{ from: 'a.io/', to: 'b.io/' }],
          existence: { negativeTTL: '1 minute' },
        }),
        'spec.existence.negativeTTL',
        /is not a duration; write it like "90s"/,
      ],
      [map('ClusterImageMap', 'x', { mappings: [] }), 'spec.mappings', /at least 1 item/],
      [
        map(
          'ImageMap',
          'x',
          { mappings: [{ from: 'a.io/', to: 'b.io/' }], namespaceSelector: {} },
          { namespace: 'n' },
        ),
        'spec.namespaceSelector',
        /only ClusterImageMap/,
      ],
      [
        map('ClusterImageMap', 'x', {
          mappings: [{ from: 'a.io/', to: 'b.io/' }],
          cache: { enabled: 'yes' },
        }),
        'spec.cache.enabled',
        /true or false/,
      ],
      [
        {
          kind: 'ClusterImageMap',
          metadata: { name: 'x' },
          spec: { mappings: [{ from: 'a.io/', to: 'b.io/' }] },
        },
        'apiVersion',
        /is required/,
      ],
    ];
    for (const [object, path, message] of cases) {
      const [v] = verdicts(object);
      assert.equal(v?.verdict, 'Invalid');
      const f = v!.findings.find((x) => x.path === path);
      assert.ok(f, `${path} not in ${JSON.stringify(v!.findings)}`);
      assert.match(f.message, message);
    }
  });
  test('an update that breaks a map keeps its last accepted generation serving', () => {
    const good = map(
      'ImageMap',
      'm',
      { mappings: [{ from: 'nginx', to: 'a.io/nginx' }] },
      { namespace: 't', generation: 1 },
    );
    const bad = map(
      'ImageMap',
      'm',
      { mappings: [{ from: 'nginx', to: 'A.io/Nginx' }] },
      { namespace: 't', generation: 2 },
    );
    const analysis = analyzeMaps([{ current: bad, lastAccepted: good as never }]);
    const v = analysis.verdicts[0]!;
    assert.equal(v.verdict, 'Invalid');
    assert.equal(v.serving, 'previous');
    assert.equal(v.servingGeneration, 1);
    assert.equal(analysis.accepted.length, 1);
  });
});

describe('pod planning', () => {
  const analysis = analyzeMaps([
    {
      current: map('ClusterImageMap', 'edge', {
        mappings: [{ from: 'docker.io/', to: 'mirror.local/hub/' }],
      }),
    },
  ]);
  const snapshot = buildSnapshot(analysis.accepted);
  const pod = (annotations?: Record<string, string>, labels?: Record<string, string>) => ({
    kind: 'Pod',
    metadata: { name: 'p', ...(annotations ? { annotations } : {}), ...(labels ? { labels } : {}) },
    spec: {
      initContainers: [{ name: 'init', image: 'busybox:1' }],
      containers: [
        { name: 'app', image: 'nginx:1.27' },
        { name: 'side', image: 'quay.io/x/y:1' },
      ],
      ephemeralContainers: [{ name: 'debug', image: 'alpine:3' }],
    },
  });
  const ns = { namespace: 'default', namespaceLabels: {} };
  test('every image field is patched and the originals recorded', () => {
    const plan = planPod(snapshot, DEFAULT_DECISION_SETTINGS, pod(), ns, () => undefined);
    assert.deepEqual(plan.patch.slice(0, 3), [
      { op: 'replace', path: '/spec/initContainers/0/image', value: 'mirror.local/hub/library/busybox:1' },
      { op: 'replace', path: '/spec/containers/0/image', value: 'mirror.local/hub/library/nginx:1.27' },
      {
        op: 'replace',
        path: '/spec/ephemeralContainers/0/image',
        value: 'mirror.local/hub/library/alpine:3',
      },
    ]);
    const annotations = plan.patch[3] as { path: string; value: Record<string, string> };
    assert.equal(annotations.path, '/metadata/annotations');
    assert.deepEqual(JSON.parse(annotations.value['pullmap.dev/original-images']!), {
      init: 'busybox:1',
      app: 'nginx:1.27',
      debug: 'alpine:3',
    });
    assert.match(annotations.value['pullmap.dev/mapped-by']!, /ClusterImageMap\/edge spec\.mappings\[0\]/);
  });
  test('re-admission of the patched pod maps nothing twice', () => {
    const first = planPod(snapshot, DEFAULT_DECISION_SETTINGS, pod(), ns, () => undefined);
    const annotations = (first.patch[3] as { value: Record<string, string> }).value;
    const patched = pod(annotations);
    patched.spec.containers[0]!.image = 'mirror.local/hub/library/nginx:1.27';
    patched.spec.initContainers[0]!.image = 'mirror.local/hub/library/busybox:1';
    patched.spec.ephemeralContainers[0]!.image = 'mirror.local/hub/library/alpine:3';
    const again = planPod(snapshot, DEFAULT_DECISION_SETTINGS, patched, ns, () => undefined);
    assert.deepEqual(again.patch, []);
  });
  test('a sidecar added after pullmap is mapped on reinvocation; existing annotations are kept', () => {
    const p = pod({ 'pullmap.dev/original-images': '{"app":"nginx:1.27"}', other: 'x' });
    p.spec.containers[0]!.image = 'mirror.local/hub/library/nginx:1.27';
    p.spec.containers.push({ name: 'injected', image: 'envoy:1' });
    const plan = planPod(snapshot, DEFAULT_DECISION_SETTINGS, p, ns, () => undefined);
    assert.ok(
      plan.patch.some(
        (op) => op.path === '/spec/containers/2/image' && op.value === 'mirror.local/hub/library/envoy:1',
      ),
    );
    const orig = plan.patch.find((op) => op.path === '/metadata/annotations/pullmap.dev~1original-images');
    assert.equal(JSON.parse(orig!.value as string).app, 'nginx:1.27');
    assert.equal(JSON.parse(orig!.value as string).injected, 'envoy:1');
  });
  test('an update that sets a new image is decided afresh; one that keeps it is not', () => {
    const first = planPod(snapshot, DEFAULT_DECISION_SETTINGS, pod(), ns, () => undefined);
    const annotations = (first.patch[3] as { value: Record<string, string> }).value;
    const stored = pod(annotations);
    stored.spec.containers[0]!.image = 'mirror.local/hub/library/nginx:1.27';
    stored.spec.initContainers[0]!.image = 'mirror.local/hub/library/busybox:1';
    stored.spec.ephemeralContainers[0]!.image = 'mirror.local/hub/library/alpine:3';
    const previousImages = podImages(stored);
    const unchanged = planPod(
      snapshot,
      DEFAULT_DECISION_SETTINGS,
      structuredClone(stored),
      { ...ns, previousImages },
      () => undefined,
    );
    assert.deepEqual(unchanged.patch, [], 'labels-only updates change nothing');
    const updated = structuredClone(stored);
    updated.spec.containers[0]!.image = 'nginx:1.28';
    const plan = planPod(
      snapshot,
      DEFAULT_DECISION_SETTINGS,
      updated,
      { ...ns, previousImages },
      () => undefined,
    );
    assert.deepEqual(plan.patch[0], {
      op: 'replace',
      path: '/spec/containers/0/image',
      value: 'mirror.local/hub/library/nginx:1.28',
    });
    const orig = plan.patch.find((op) => op.path === '/metadata/annotations/pullmap.dev~1original-images');
    assert.equal(JSON.parse(orig!.value as string).app, 'nginx:1.28');
    assert.equal(JSON.parse(orig!.value as string).init, 'busybox:1');
  });
  test('opt-out label and excluded namespaces', () => {
    assert.equal(
      planPod(
        snapshot,
        DEFAULT_DECISION_SETTINGS,
        pod(undefined, { 'pullmap.dev/ignore': 'true' }),
        ns,
        () => undefined,
      ).patch.length,
      0,
    );
    assert.equal(
      planPod(snapshot, DEFAULT_DECISION_SETTINGS, pod({ 'pullmap.dev/ignore': 'true' }), ns, () => undefined)
        .patch.length,
      0,
    );
    const plan = planPod(
      snapshot,
      DEFAULT_DECISION_SETTINGS,
      pod(),
      { namespace: 'kube-system', namespaceLabels: {} },
      () => undefined,
    );
    assert.equal(plan.patch.length, 0);
    assert.match(plan.skipped ?? '', /excluded/);
  });
  test('malformed pods are left alone with a warning', () => {
    for (const bad of [null, 42, { kind: 'Pod' }, { spec: 'x' }]) {
      const plan = planPod(snapshot, DEFAULT_DECISION_SETTINGS, bad, ns, () => undefined);
      assert.equal(plan.patch.length, 0);
    }
    const p = {
      metadata: {},
      spec: { containers: [{ name: 'a', image: 'NOT VALID' }, { name: 'b' }, 'junk'] },
    };
    const plan = planPod(snapshot, DEFAULT_DECISION_SETTINGS, p, ns, () => undefined);
    assert.equal(plan.patch.length, 0);
    assert.match(plan.warnings[0] ?? '', /container a/);
  });
});

describe('manifests: rewrite keeps every other byte', () => {
  const analysis = analyzeMaps([
    {
      current: map('ClusterImageMap', 'edge', {
        mappings: [{ from: 'docker.io/', to: 'mirror.local/hub/' }],
      }),
    },
  ]);
  const snapshot = buildSnapshot(analysis.accepted);
  const text = `# a comment
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web   # trailing comment
          image: "nginx:1.27"
        - {name: side, image: 'redis:7'}
      initContainers:
      - name: init
        image: busybox
---
apiVersion: batch/v1
kind: CronJob
metadata:
  name: job
spec:
  jobTemplate:
    spec:
      template:
        spec:
          containers:
          - name: c
            image: quay.io/x/y:1   # untouched
          - name: d
            image:   alpine:3
---
kind: ConfigMap
data: {image: "nginx:1.27"}
`;
  test('only image scalars change, in their own quoting style', async () => {
    const { decideImage } = await import('../../../src/core/mapping/index.ts');
    const scan = scanManifests(text, 'x.yaml');
    assert.deepEqual(scan.errors, []);
    assert.equal(scan.images.length, 5);
    const replacements = new Map<number, string>();
    scan.images.forEach((img, i) => {
      const d = decideImage(
        snapshot,
        DEFAULT_DECISION_SETTINGS,
        img.image,
        { namespace: img.namespace, namespaceLabels: {}, podLabels: img.podLabels },
        () => undefined,
      );
      if (d.outcome === 'Mapped') replacements.set(i, d.image);
    });
    const out = spliceImages(text, scan, replacements);
    const expected = text
      .replace('image: "nginx:1.27"', 'image: "mirror.local/hub/library/nginx:1.27"')
      .replace("image: 'redis:7'", "image: 'mirror.local/hub/library/redis:7'")
      .replace('image: busybox', 'image: mirror.local/hub/library/busybox')
      .replace('image:   alpine:3', 'image:   mirror.local/hub/library/alpine:3');
    assert.equal(out, expected);
  });
  test('malformed YAML names the line', () => {
    const scan = scanManifests('kind: Pod\nspec: {containers: [\n', 'bad.yaml');
    assert.match(scan.errors[0] ?? '', /^bad\.yaml:\d+:\d+: YAML document 1 is malformed/);
  });
});

describe('config files', () => {
  test('multi-document, List, empty documents; errors carry file and line', () => {
    const ok = loadYamlObjects(
      '---\n---\nkind: List\nitems: [{kind: ImageMap}, {kind: ClusterImageMap}]\n---\nkind: ImageMap\n',
      'c.yaml',
    );
    assert.equal(ok.objects.length, 3);
    const bad = loadYamlObjects('kind: ImageMap\n---\nkind: [\n', 'c.yaml');
    assert.equal(bad.objects.length, 1);
    assert.match(bad.errors[0] ?? '', /^c\.yaml:\d+:\d+: YAML document 2 is malformed/);
    const dup = loadYamlObjects('kind: a\nkind: b\n', 'c.yaml');
    assert.match(dup.errors[0] ?? '', /unique|duplicate/i);
  });
  test('values are counted without parsing, and a set holding too many is refused naming the input', () => {
    // a, 1, b, [, x, "y", {, c, *z, the list item, e, its block scalar: its header and text.
    assert.equal(countYamlValues('a: 1\nb: [x, "y", {c: *z}]\nl:\n  - e: |\n      text\n', 100), 14);
    assert.equal(countYamlValues('- 1\n'.repeat(1000), 10), 11, 'stops once over the limit');
    const map =
      'apiVersion: pullmap.dev/v1alpha1\nkind: ClusterImageMap\nmetadata: {name: a}\nspec: {mappings: [{from: a.io/, to: b.io/}]}\n';
    const half = `junk:\n${'- 1\n'.repeat(MAX_MAP_VALUES / 4)}`;
    const one = loadMapsFromTexts([{ text: `${map}---\n${half}`, source: 'one.yaml' }]);
    assert.deepEqual(one.errors, [
      'one.yaml:6: kind null is not a map object; a config holds ImageMap and ClusterImageMap objects',
    ]);
    const two = loadMapsFromTexts([
      { text: `${map}---\n${half}`, source: 'one.yaml' },
      { text: half.repeat(2), source: 'two.yaml' },
    ]);
    assert.equal(two.errors.length, 1);
    assert.match(
      two.errors[0]!,
      /^two\.yaml: holds over \d+ YAML values beside the inputs before it; map inputs may hold 100000 in all/,
    );
    assert.equal(two.analysis.verdicts.length, 0, 'nothing was parsed');
  });
});
