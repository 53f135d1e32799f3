// `pullmap serve --maps-from cluster` against a real kube-apiserver: maps are CRD objects, the webhook
// follows them through its watch, ClusterImageMap namespaceSelectors see namespace labels, and the
// validating webhook refuses a conflicting map at apply time with the controller's words.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { CoreV1Api } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { installCrds, type Kube, startKube } from '../harness/kube.ts';
import { type TempDir, tempDir } from '../harness/process.ts';
import { type Pullmap, startPullmap } from '../harness/pullmap.ts';
import { makePki, type TestPki } from '../harness/tls.ts';

let kube: Kube;
let dir: TempDir;
let pki: TestPki;
let pullmap: Pullmap;
let core: CoreV1Api;

const clientConfig = (path: string) => ({
  url: `${pullmap.url}${path}`,
  caBundle: Buffer.from(pki.caPem).toString('base64'),
});

before(async () => {
  dir = await tempDir('e2e-cluster');
  pki = await makePki(dir.path);
  kube = await startKube();
  core = kube.kubeConfig().makeApiClient(CoreV1Api);
  await installCrds(kube);
  pullmap = await startPullmap({
    tls: { certPath: pki.certPath, keyPath: pki.keyPath, caPem: pki.caPem },
    args: ['--maps-from', 'cluster', '--kubeconfig', kube.kubeconfigPath, '--lease-namespace', 'default'],
  });
  const rule = (resources: string[], group: string, version: string) => ({
    apiGroups: [group],
    apiVersions: [version],
    operations: ['CREATE', 'UPDATE'],
    resources,
  });
  const common = { admissionReviewVersions: ['v1'], sideEffects: 'None', timeoutSeconds: 5 };
  await kube.kubectl(
    ['apply', '-f', '-'],
    [
      {
        apiVersion: 'admissionregistration.k8s.io/v1',
        kind: 'MutatingWebhookConfiguration',
        metadata: { name: 'pullmap' },
        webhooks: [
          {
            name: 'pods.pullmap.dev',
            ...common,
            failurePolicy: 'Ignore',
            reinvocationPolicy: 'IfNeeded',
            clientConfig: clientConfig('/mutate-pods'),
            rules: [rule(['pods'], '', 'v1')],
          },
        ],
      },
      {
        apiVersion: 'admissionregistration.k8s.io/v1',
        kind: 'ValidatingWebhookConfiguration',
        metadata: { name: 'pullmap-maps' },
        webhooks: [
          {
            name: 'maps.pullmap.dev',
            ...common,
            failurePolicy: 'Ignore',
            clientConfig: clientConfig('/validate-maps'),
            rules: [rule(['imagemaps', 'clusterimagemaps'], 'pullmap.dev', 'v1alpha1')],
          },
        ],
      },
    ]
      .map((o) => stringify(o))
      .join('---\n'),
  );
});

after(async () => {
  await pullmap?.stop();
  await kube?.stop();
  await dir?.remove();
});

const podImage = async (namespace: string, image: string): Promise<string | undefined> => {
  const created = await core.createNamespacedPod({
    namespace,
    body: { metadata: { generateName: 'p-' }, spec: { containers: [{ name: 'c', image }] } },
  });
  return created.spec?.containers[0]?.image;
};

/** Creates pods until the image comes back as `want` (webhook registration and watches are asynchronous). */
async function eventually(namespace: string, image: string, want: string): Promise<string | undefined> {
  let got: string | undefined;
  for (let i = 0; i < 100; i++) {
    got = await podImage(namespace, image);
    if (got === want) return got;
    await new Promise((r) => setTimeout(r, 100));
  }
  return got;
}

const apply = (objects: unknown[]) =>
  kube.kubectl(['apply', '-f', '-'], objects.map((o) => stringify(o)).join('---\n'));

describe('maps from the cluster', () => {
  it('maps pods by a ClusterImageMap selected by namespace labels, and by a tenant ImageMap', async () => {
    const edge = await kube.createNamespace({ prefix: 'edge', labels: { site: 'edge' } });
    const core2 = await kube.createNamespace({ prefix: 'core' });
    await apply([
      {
        apiVersion: 'pullmap.dev/v1alpha1',
        kind: 'ClusterImageMap',
        metadata: { name: 'edge-sites' },
        spec: {
          mappings: [{ from: 'docker.io/', to: 'edge-mirror.example/hub/' }],
          namespaceSelector: { matchLabels: { site: 'edge' } },
        },
      },
    ]);
    assert.equal(
      await eventually(edge, 'nginx:1.27', 'edge-mirror.example/hub/library/nginx:1.27'),
      'edge-mirror.example/hub/library/nginx:1.27',
    );
    assert.equal(
      await podImage(core2, 'nginx:1.27'),
      'nginx:1.27',
      'the selector leaves other namespaces alone',
    );

    await apply([
      {
        apiVersion: 'pullmap.dev/v1alpha1',
        kind: 'ImageMap',
        metadata: { name: 'team-a', namespace: edge },
        spec: { mappings: [{ from: 'docker.io/library/nginx', to: 'team-a.example/nginx' }] },
      },
    ]);
    assert.equal(
      await eventually(edge, 'nginx:1.27', 'team-a.example/nginx:1.27'),
      'team-a.example/nginx:1.27',
      'a namespaced map beats the cluster map for its source',
    );
    // The Lease holder (this one replica) writes the status.
    const reason = () =>
      kube.kubectl([
        'get',
        'imagemap',
        'team-a',
        '-n',
        edge,
        '-o',
        'jsonpath={.status.conditions[?(@.type=="Ready")].reason}',
      ]);
    let seen = await reason();
    for (let i = 0; i < 50 && seen !== 'Accepted'; i++) {
      await new Promise((r) => setTimeout(r, 100));
      seen = await reason();
    }
    assert.equal(seen, 'Accepted');
  });

  it('refuses a conflicting map at apply time with the message the controller would write', async () => {
    const ns = await kube.createNamespace({ prefix: 'tenants' });
    const map = (name: string, to: string) => ({
      apiVersion: 'pullmap.dev/v1alpha1',
      kind: 'ImageMap',
      metadata: { name, namespace: ns },
      spec: { mappings: [{ from: 'quay.io/', to }] },
    });
    await apply([map('alpha', 'alpha.example/quay/')]);
    // The webhook's view of alpha arrives through its watch: retry until the refusal names it.
    let message = '';
    for (let i = 0; i < 50; i++) {
      try {
        await apply([map('beta', 'beta.example/quay/')]);
        await kube.kubectl(['delete', 'imagemap', 'beta', '-n', ns]);
      } catch (err) {
        message = (err as Error).message;
        break;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.match(message, /admission webhook "maps\.pullmap\.dev" denied the request/);
    assert.match(message, new RegExp(`ImageMap/${ns}/beta is rejected \\(Conflict\\)`));
    assert.match(message, new RegExp(`ImageMap/${ns}/alpha`));
    assert.equal(await podImage(ns, 'quay.io/acme/app:1'), 'alpha.example/quay/acme/app:1');
  });

  it('is ready, and says where its maps come from', async () => {
    assert.equal((await pullmap.call('/readyz')).status, 200);
    assert.ok(pullmap.logs().some((l) => l.msg === 'serving' && l.maps === 'cluster'));
    assert.equal(await pullmap.metric('pullmap_controller_leader'), 1);
    assert.ok(
      (await pullmap.metric('pullmap_controller_status_writes_total'))! > 0,
      'the leader wrote status',
    );
    assert.ok((await pullmap.metric('pullmap_controller_events_total'))! > 0, 'and recorded events');
  });
});

/** Polls `read` until `done` holds for its value (watches and the copier are asynchronous). */
async function until<T>(read: () => Promise<T>, done: (value: T) => boolean, what: string): Promise<T> {
  let value = await read();
  for (let i = 0; i < 100 && !done(value); i++) {
    await new Promise((r) => setTimeout(r, 100));
    value = await read();
  }
  assert.ok(
    done(value),
    `${what}: last seen ${JSON.stringify(value)}\n${pullmap.daemon.output().slice(-2000)}`,
  );
  return value;
}

describe('pull secrets for mirrors', () => {
  const dockerConfig = (password: string) => ({
    '.dockerconfigjson': Buffer.from(
      JSON.stringify({ auths: { 'creds-mirror.example': { username: 'u', password } } }),
    ).toString('base64'),
  });
  const copyIn = (namespace: string) => () =>
    core
      .readNamespacedSecret({ name: 'pullmap-mirror-creds', namespace })
      .then((s) => s.data?.['.dockerconfigjson'])
      .catch(() => undefined);

  it('copies a ClusterImageMap secret where the map applies, keeps it in sync, and pods name it once', async () => {
    await core.createNamespacedSecret({
      namespace: 'default',
      body: {
        metadata: { name: 'mirror-creds' },
        type: 'kubernetes.io/dockerconfigjson',
        data: dockerConfig('one'),
      },
    });
    const selected = await kube.createNamespace({ prefix: 'creds', labels: { creds: 'copy' } });
    const other = await kube.createNamespace({ prefix: 'nocreds' });
    const map = (pullSecret: string | undefined) => ({
      apiVersion: 'pullmap.dev/v1alpha1',
      kind: 'ClusterImageMap',
      metadata: { name: 'creds' },
      spec: {
        mappings: [
          {
            from: 'ghcr.io/creds-e2e/',
            to: 'creds-mirror.example/ghcr/',
            ...(pullSecret ? { pullSecret } : {}),
          },
        ],
        namespaceSelector: { matchLabels: { creds: 'copy' } },
      },
    });
    await apply([map('mirror-creds')]);
    await until(copyIn(selected), (d) => d === dockerConfig('one')['.dockerconfigjson'], 'the copy is made');
    const copy = await core.readNamespacedSecret({ name: 'pullmap-mirror-creds', namespace: selected });
    assert.equal(copy.type, 'kubernetes.io/dockerconfigjson');
    assert.equal(copy.metadata?.labels?.['pullmap.dev/copy-of'], 'mirror-creds');
    assert.equal(await copyIn(other)(), undefined, 'no copy where the map does not apply');
    // A namespace labelled later gets its copy without any pod asking for it.
    const later = await kube.createNamespace({ prefix: 'later', labels: { creds: 'copy' } });
    await until(copyIn(later), (d) => d !== undefined, 'a new namespace gets a copy');

    const body = {
      metadata: { generateName: 'p-' },
      spec: {
        imagePullSecrets: [{ name: 'own' }],
        containers: [
          { name: 'a', image: 'ghcr.io/creds-e2e/app:1' },
          { name: 'b', image: 'ghcr.io/creds-e2e/side:1' },
        ],
      },
    };
    const pod = await until(
      () => core.createNamespacedPod({ namespace: selected, body }),
      (p) => p.spec?.containers[0]?.image === 'creds-mirror.example/ghcr/app:1',
      'the pod is mapped',
    );
    assert.deepEqual(
      pod.spec?.imagePullSecrets?.map((s) => s.name),
      ['own', 'pullmap-mirror-creds'],
    );

    await core.replaceNamespacedSecret({
      name: 'mirror-creds',
      namespace: 'default',
      body: {
        metadata: { name: 'mirror-creds' },
        type: 'kubernetes.io/dockerconfigjson',
        data: dockerConfig('two'),
      },
    });
    await until(
      copyIn(selected),
      (d) => d === dockerConfig('two')['.dockerconfigjson'],
      'the copy follows its source',
    );

    await apply([map(undefined)]);
    await until(copyIn(selected), (d) => d === undefined, 'an unused copy is removed');
    await until(copyIn(later), (d) => d === undefined, 'from every namespace');
  });

  it('deploy/webhook RBAC lets the controller manage copies, and no more than that on Secrets', async () => {
    const root = fileURLToPath(new URL('../../deploy/webhook/', import.meta.url));
    await kube.kubectl(['apply', '-f', `${root}namespace.yaml`, '-f', `${root}rbac.yaml`]);
    const can = (verb: string, where: string[]) =>
      kube
        .kubectl([
          'auth',
          'can-i',
          verb,
          'secrets',
          '--as=system:serviceaccount:pullmap-system:pullmap',
          ...where,
        ])
        .then(
          (out) => out.trim(),
          () => 'no',
        );
    for (const verb of ['get', 'list', 'watch', 'create', 'update', 'delete'])
      assert.equal(await can(verb, ['-n', 'some-tenant']), 'yes', verb);
    assert.equal(await can('list', ['--all-namespaces']), 'yes');
    for (const verb of ['patch', 'deletecollection'])
      assert.equal(await can(verb, ['-n', 'some-tenant']), 'no', verb);
  });

  it('an ImageMap names a Secret of its own namespace; nothing is copied for it', async () => {
    const ns = await kube.createNamespace({ prefix: 'tenantcreds', labels: { creds: 'witness' } });
    const secret = (namespace: string, name: string) =>
      core.createNamespacedSecret({
        namespace,
        body: { metadata: { name }, type: 'kubernetes.io/dockerconfigjson', data: dockerConfig(namespace) },
      });
    // The tenant's own Secret, and a Secret of the same name in pullmap's namespace that a tenant must
    // never get a copy of by naming it.
    await secret(ns, 'tenant-creds');
    await secret('default', 'tenant-creds');
    await secret('default', 'witness-creds');
    await apply([
      {
        apiVersion: 'pullmap.dev/v1alpha1',
        kind: 'ImageMap',
        metadata: { name: 'own', namespace: ns },
        spec: {
          mappings: [
            { from: 'ghcr.io/tenant-e2e/', to: 'tenant-mirror.example/', pullSecret: 'tenant-creds' },
          ],
        },
      },
    ]);
    const pod = await until(
      () =>
        core.createNamespacedPod({
          namespace: ns,
          body: {
            metadata: { generateName: 'p-' },
            spec: { containers: [{ name: 'a', image: 'ghcr.io/tenant-e2e/x:1' }] },
          },
        }),
      (p) => p.spec?.containers[0]?.image === 'tenant-mirror.example/x:1',
      'the pod is mapped',
    );
    assert.deepEqual(
      pod.spec?.imagePullSecrets?.map((s) => s.name),
      ['tenant-creds'],
    );
    // A ClusterImageMap's copy into the same namespace, made by a reconcile that saw the ImageMap: once
    // it is there, a copy for the ImageMap would be too.
    await apply([
      {
        apiVersion: 'pullmap.dev/v1alpha1',
        kind: 'ClusterImageMap',
        metadata: { name: 'witness' },
        spec: {
          mappings: [{ from: 'ghcr.io/witness-e2e/', to: 'witness.example/', pullSecret: 'witness-creds' }],
          namespaceSelector: { matchLabels: { creds: 'witness' } },
        },
      },
    ]);
    const copies = () =>
      core
        .listNamespacedSecret({ namespace: ns, labelSelector: 'pullmap.dev/copy-of' })
        .then((list) => list.items.map((s) => s.metadata?.name));
    await until(copies, (names) => names.length > 0, 'the ClusterImageMap copy is made');
    assert.deepEqual(await copies(), ['pullmap-witness-creds']);
    await kube.kubectl(['delete', 'clusterimagemap', 'witness']);
  });
});

describe('pullmap explain --pod', () => {
  const explainPod = (pod: string) => {
    const bin = fileURLToPath(new URL('../../dist/pullmap.js', import.meta.url));
    const r = spawnSync(
      process.execPath,
      [bin, 'explain', '--pod', pod, '--kubeconfig', kube.kubeconfigPath, '-o', 'json'],
      { encoding: 'utf8', timeout: 20_000 },
    );
    assert.equal(r.status, 0, r.stderr);
    return r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  };
  const map = (to: string) => ({
    apiVersion: 'pullmap.dev/v1alpha1',
    kind: 'ClusterImageMap',
    metadata: { name: 'explain-e2e' },
    spec: { mappings: [{ from: 'ghcr.io/explain-e2e/', to }] },
  });

  it("shows each image's original, what it was mapped to and by which entry, and the decision now", async () => {
    const ns = await kube.createNamespace({ prefix: 'explain' });
    await apply([map('first.example/')]);
    const body = {
      metadata: { name: 'web' },
      spec: {
        containers: [
          { name: 'app', image: 'ghcr.io/explain-e2e/app:1' },
          { name: 'other', image: 'registry.k8s.io/pause:3.10' },
        ],
        volumes: [{ name: 'models', image: { reference: 'ghcr.io/explain-e2e/models:v3' } }],
      },
    };
    // The webhook sees the new map through its watch: recreate the pod until it is mapped.
    await until(
      async () => {
        await core
          .deleteNamespacedPod({ name: 'web', namespace: ns, gracePeriodSeconds: 0 })
          .catch(() => undefined);
        await until(
          () =>
            core.readNamespacedPod({ name: 'web', namespace: ns }).then(
              () => true,
              () => false,
            ),
          (exists) => !exists,
          'the old pod is gone',
        );
        return (await core.createNamespacedPod({ namespace: ns, body })).spec?.containers[0]?.image;
      },
      (image) => image === 'first.example/app:1',
      'the pod is mapped',
    );
    await apply([map('second.example/')]);
    const [app, other, models] = explainPod(`${ns}/web`);
    assert.equal(app?.pod, `${ns}/web`);
    assert.equal(app?.container, 'app');
    assert.equal(app?.input, 'ghcr.io/explain-e2e/app:1', 'the original, from the annotation');
    assert.equal(app?.image, 'first.example/app:1', 'what it was mapped to');
    assert.equal(app?.mappedBy, 'ClusterImageMap/explain-e2e spec.mappings[0]');
    assert.equal(app?.outcome, 'Mapped');
    assert.equal(app?.mapped, 'second.example/app:1', 'what the maps decide now');
    assert.equal((app?.rule as { map?: string } | undefined)?.map, 'ClusterImageMap/explain-e2e');
    assert.equal(other?.input, 'registry.k8s.io/pause:3.10');
    assert.equal(other?.mappedBy, null);
    assert.equal(other?.outcome, 'Unchanged');
    assert.equal(models?.volume, 'models');
    assert.equal(models?.input, 'ghcr.io/explain-e2e/models:v3');
    assert.equal(models?.image, 'first.example/models:v3');
    assert.equal(models?.mapped, 'second.example/models:v3');
  });

  it('a pod that does not exist is exit 2 with its name', async () => {
    const bin = fileURLToPath(new URL('../../dist/pullmap.js', import.meta.url));
    const r = spawnSync(
      process.execPath,
      [bin, 'explain', '--pod', 'default/nope', '--kubeconfig', kube.kubeconfigPath],
      { encoding: 'utf8', timeout: 20_000 },
    );
    assert.equal(r.status, 2);
    assert.equal(r.stderr, 'pullmap: pod default/nope does not exist\n');
  });
});
