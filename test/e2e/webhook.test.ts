// The webhook end to end: a real kube-apiserver calls `pullmap serve` over HTTPS for every pod, and the
// stored objects show what pullmap decided. Also: a sidecar injector after pullmap (reinvocation),
// opt-outs, failure policies with pullmap stopped, and the deploy/ manifests accepted by the apiserver.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { AppsV1Api, CoreV1Api, type V1Pod } from '@kubernetes/client-node';
import { parseAllDocuments, stringify } from 'yaml';
import { type Kube, startKube } from '../harness/kube.ts';
import { execFileAsync, type TempDir, tempDir } from '../harness/process.ts';
import { type Pullmap, startPullmap } from '../harness/pullmap.ts';
import { makePki, type TestPki } from '../harness/tls.ts';

const MIRROR = 'mirror.e2e.example/hub/';
const MAPS = `apiVersion: pullmap.dev/v1alpha1
kind: ClusterImageMap
metadata: { name: hub }
spec:
  mappings:
    - { from: docker.io/, to: ${MIRROR} }
  mutableTags: ["latest"]
`;

/** Excluded by pullmap's --exclude-namespaces alone: the webhook configurations still send its pods. */
const EXCLUDED = 'excluded-by-pullmap';

let kube: Kube;
let dir: TempDir;
let pki: TestPki;
let pullmap: Pullmap;
let injector: Server;
let core: CoreV1Api;

/** A second mutating webhook, ordered after pullmap, that adds a sidecar the way mesh injectors do. */
async function startInjector(): Promise<Server> {
  const server = createServer({ cert: pki.certPem, key: pki.keyPem }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const review = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      const pod = review.request.object;
      const has = (pod.spec.containers as Array<{ name: string }>).some((c) => c.name === 'injected');
      const response: Record<string, unknown> = { uid: review.request.uid, allowed: true };
      if (!has) {
        const patch = [
          {
            op: 'add',
            path: '/spec/containers/-',
            value: { name: 'injected', image: 'envoyproxy/envoy:v1.31.0' },
          },
        ];
        response.patchType = 'JSONPatch';
        response.patch = Buffer.from(JSON.stringify(patch)).toString('base64');
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

function webhookConfig(
  name: string,
  url: string,
  options: {
    failurePolicy: 'Ignore' | 'Fail';
    namespaceLabels?: Record<string, string>;
    excludeLabel?: string;
  },
) {
  return {
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'MutatingWebhookConfiguration',
    metadata: { name },
    webhooks: [
      {
        name: `${name}.pullmap.dev`,
        admissionReviewVersions: ['v1'],
        sideEffects: 'None',
        failurePolicy: options.failurePolicy,
        reinvocationPolicy: 'IfNeeded',
        timeoutSeconds: 5,
        clientConfig: { url, caBundle: Buffer.from(pki.caPem).toString('base64') },
        rules: [
          {
            apiGroups: [''],
            apiVersions: ['v1'],
            operations: ['CREATE', 'UPDATE'],
            resources: ['pods', 'pods/ephemeralcontainers'],
            scope: 'Namespaced',
          },
        ],
        namespaceSelector: {
          ...(options.namespaceLabels ? { matchLabels: options.namespaceLabels } : {}),
          matchExpressions: [
            {
              key: 'kubernetes.io/metadata.name',
              operator: 'NotIn',
              values: ['kube-system', 'pullmap-system'],
            },
            ...(options.excludeLabel ? [{ key: options.excludeLabel, operator: 'DoesNotExist' }] : []),
          ],
        },
        objectSelector: {
          matchExpressions: [{ key: 'pullmap.dev/ignore', operator: 'NotIn', values: ['true'] }],
        },
      },
    ],
  };
}

const pod = (
  name: string,
  containers: Record<string, string>,
  extra: Partial<V1Pod['spec']> = {},
): V1Pod => ({
  metadata: { name },
  spec: { containers: Object.entries(containers).map(([n, image]) => ({ name: n, image })), ...extra },
});

const images = (p: V1Pod) =>
  Object.fromEntries(
    [
      ...(p.spec?.initContainers ?? []),
      ...(p.spec?.containers ?? []),
      ...(p.spec?.ephemeralContainers ?? []),
    ].map((c) => [c.name, c.image]),
  );

/** The apiserver picks up webhook configurations asynchronously: create pods until one is mapped. */
async function waitForWebhook(namespace: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const created = await core.createNamespacedPod({
      namespace,
      body: pod(`warmup-${i}`, { a: 'busybox:1.36' }),
    });
    if (created.spec?.containers[0]?.image !== 'busybox:1.36') return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(
    `the webhook never took effect\n${pullmap.daemon.output().slice(-2000)}\n${kube.logs(4000)}`,
  );
}

before(async () => {
  dir = await tempDir('e2e-webhook');
  pki = await makePki(dir.path);
  const config = join(dir.path, 'maps.yaml');
  await writeFile(config, MAPS);
  [kube, pullmap, injector] = await Promise.all([
    startKube(),
    startPullmap({
      tls: { certPath: pki.certPath, keyPath: pki.keyPath, caPem: pki.caPem },
      args: ['--config', config, '--exclude-namespaces', `kube-system,pullmap-system,${EXCLUDED}`],
    }),
    startInjector(),
  ]);
  core = kube.kubeConfig().makeApiClient(CoreV1Api);
  const injectorPort = (injector.address() as AddressInfo).port;
  // Mutating webhooks run in order of configuration name: pullmap first, the injector after it.
  const configs = [
    webhookConfig('a-pullmap', `${pullmap.url}/mutate-pods`, {
      failurePolicy: 'Ignore',
      excludeLabel: 'strict',
    }),
    webhookConfig('a-pullmap-strict', `${pullmap.url}/mutate-pods`, {
      failurePolicy: 'Fail',
      namespaceLabels: { strict: 'true' },
    }),
    webhookConfig('z-injector', `https://127.0.0.1:${injectorPort}/inject`, {
      failurePolicy: 'Fail',
      namespaceLabels: { inject: 'true' },
    }),
  ];
  await kube.kubectl(['apply', '-f', '-'], configs.map((c) => stringify(c)).join('---\n'));
  await waitForWebhook(await kube.createNamespace({ prefix: 'warmup' }));
});

after(async () => {
  await pullmap?.stop();
  await new Promise<void>((resolve) => (injector ? injector.close(() => resolve()) : resolve()));
  await kube?.stop();
  await dir?.remove();
});

describe('pods through the real apiserver', () => {
  it('rewrites containers and init containers and records the originals', async () => {
    const namespace = await kube.createNamespace({ prefix: 'web' });
    const created = await core.createNamespacedPod({
      namespace,
      body: pod(
        'web',
        { app: 'nginx:1.27', cache: 'quay.io/acme/cache:2', tip: 'nginx:latest' },
        {
          initContainers: [{ name: 'init', image: 'library/alpine:3.20' }],
        },
      ),
    });
    const stored = await core.readNamespacedPod({ name: 'web', namespace });
    assert.deepEqual(images(stored), {
      init: `${MIRROR}library/alpine:3.20`,
      app: `${MIRROR}library/nginx:1.27`,
      cache: 'quay.io/acme/cache:2',
      tip: 'nginx:latest',
    });
    assert.deepEqual(images(created), images(stored));
    assert.deepEqual(JSON.parse(stored.metadata?.annotations?.['pullmap.dev/original-images'] ?? '{}'), {
      init: 'library/alpine:3.20',
      app: 'nginx:1.27',
    });
    assert.equal(
      JSON.parse(stored.metadata?.annotations?.['pullmap.dev/mapped-by'] ?? '{}').app,
      'ClusterImageMap/hub spec.mappings[0]',
    );
  });

  it('rewrites image volumes, recorded under volume:NAME beside a container of the same name', async () => {
    // ImageVolume is beta and on by default in 1.35: the apiserver keeps spec.volumes[].image without a gate.
    const namespace = await kube.createNamespace({ prefix: 'imgvol' });
    await core.createNamespacedPod({
      namespace,
      body: pod(
        'models',
        { models: 'nginx:1.27' },
        {
          volumes: [
            { name: 'models', image: { reference: 'acme/models:v3', pullPolicy: 'IfNotPresent' } },
            { name: 'tip', image: { reference: 'acme/models:latest' } },
          ],
        },
      ),
    });
    const stored = await core.readNamespacedPod({ name: 'models', namespace });
    assert.deepEqual(
      stored.spec?.volumes?.map((v) => v.image?.reference),
      [`${MIRROR}acme/models:v3`, 'acme/models:latest'],
    );
    assert.equal(stored.spec?.containers[0]?.image, `${MIRROR}library/nginx:1.27`);
    assert.deepEqual(JSON.parse(stored.metadata?.annotations?.['pullmap.dev/original-images'] ?? '{}'), {
      models: 'nginx:1.27',
      'volume:models': 'acme/models:v3',
    });
    assert.equal(
      JSON.parse(stored.metadata?.annotations?.['pullmap.dev/mapped-by'] ?? '{}')['volume:models'],
      'ClusterImageMap/hub spec.mappings[0]',
    );
    // A labels-only update re-admits the pod: nothing is mapped twice.
    stored.metadata!.labels = { touched: 'yes' };
    const updated = await core.replaceNamespacedPod({ name: 'models', namespace, body: stored });
    assert.equal(updated.spec?.volumes?.[0]?.image?.reference, `${MIRROR}acme/models:v3`);
  });

  it('rewrites a pod made from a Deployment template the way the ReplicaSet controller makes it', async () => {
    const namespace = await kube.createNamespace({ prefix: 'deploy' });
    const apps = kube.kubeConfig().makeApiClient(AppsV1Api);
    const deployment = await apps.createNamespacedDeployment({
      namespace,
      body: {
        metadata: { name: 'api' },
        spec: {
          selector: { matchLabels: { app: 'api' } },
          template: {
            metadata: { labels: { app: 'api' } },
            spec: { containers: [{ name: 'api', image: 'redis:7.4' }] },
          },
        },
      },
    });
    const template = deployment.spec!.template;
    const created = await core.createNamespacedPod({
      namespace,
      body: { metadata: { ...template.metadata, generateName: 'api-' }, spec: template.spec! },
    });
    assert.equal(created.spec?.containers[0]?.image, `${MIRROR}library/redis:7.4`);
  });

  it('maps a container added through the ephemeralcontainers subresource (kubectl debug)', async () => {
    const namespace = await kube.createNamespace({ prefix: 'debug' });
    await core.createNamespacedPod({ namespace, body: pod('target', { app: 'nginx:1.27' }) });
    const current = await core.readNamespacedPod({ name: 'target', namespace });
    current.spec!.ephemeralContainers = [{ name: 'debugger', image: 'busybox:1.36', stdin: true, tty: true }];
    await core.replaceNamespacedPodEphemeralcontainers({ name: 'target', namespace, body: current });
    const stored = await core.readNamespacedPod({ name: 'target', namespace });
    assert.equal(images(stored).debugger, `${MIRROR}library/busybox:1.36`);
    assert.equal(images(stored).app, `${MIRROR}library/nginx:1.27`, 'not mapped twice');
    // The subresource only stores ephemeralContainers: the annotation keeps what the pod was created
    // with, and the never-twice guard (the image lies in the mapping's target) protects re-admissions.
    const originals = JSON.parse(stored.metadata?.annotations?.['pullmap.dev/original-images'] ?? '{}');
    assert.deepEqual(originals, { app: 'nginx:1.27' });
  });

  it('leaves pods alone in excluded namespaces and with the opt-out label', async () => {
    const system = await core.createNamespacedPod({
      namespace: 'kube-system',
      body: pod(`sys-${Date.now()}`, { app: 'nginx:1.27' }),
    });
    assert.equal(system.spec?.containers[0]?.image, 'nginx:1.27');
    // The webhook configurations send this namespace's pods: only pullmap's own flag leaves them alone.
    await core.createNamespace({ body: { metadata: { name: EXCLUDED } } });
    const excluded = await core.createNamespacedPod({
      namespace: EXCLUDED,
      body: pod('excluded', { app: 'nginx:1.27' }),
    });
    assert.equal(excluded.spec?.containers[0]?.image, 'nginx:1.27');
    const namespace = await kube.createNamespace({ prefix: 'optout' });
    const optOut = await core.createNamespacedPod({
      namespace,
      body: {
        ...pod('quiet', { app: 'nginx:1.27' }),
        metadata: { name: 'quiet', labels: { 'pullmap.dev/ignore': 'true' } },
      },
    });
    assert.equal(optOut.spec?.containers[0]?.image, 'nginx:1.27');
    assert.equal(optOut.metadata?.annotations?.['pullmap.dev/original-images'], undefined);
    // The annotation is not in the webhooks' objectSelector: pullmap itself honours it.
    const annotated = await core.createNamespacedPod({
      namespace,
      body: {
        ...pod('annotated', { app: 'nginx:1.27' }),
        metadata: { name: 'annotated', annotations: { 'pullmap.dev/ignore': 'true' } },
      },
    });
    assert.equal(annotated.spec?.containers[0]?.image, 'nginx:1.27');
    // The same pod without the opt-out is mapped in that namespace: the webhook did see the others.
    const mapped = await core.createNamespacedPod({ namespace, body: pod('mapped', { app: 'nginx:1.27' }) });
    assert.equal(mapped.spec?.containers[0]?.image, `${MIRROR}library/nginx:1.27`);
  });

  it('maps a sidecar injected by a later webhook (reinvocation) without mapping the app twice', async () => {
    const namespace = await kube.createNamespace({ prefix: 'mesh', labels: { inject: 'true' } });
    const created = await core.createNamespacedPod({ namespace, body: pod('meshed', { app: 'nginx:1.27' }) });
    assert.deepEqual(images(created), {
      app: `${MIRROR}library/nginx:1.27`,
      injected: `${MIRROR}envoyproxy/envoy:v1.31.0`,
    });
    assert.deepEqual(JSON.parse(created.metadata?.annotations?.['pullmap.dev/original-images'] ?? '{}'), {
      app: 'nginx:1.27',
      injected: 'envoyproxy/envoy:v1.31.0',
    });
  });

  it('does not map twice when a pod is updated, and maps an image the update sets', async () => {
    const namespace = await kube.createNamespace({ prefix: 'update' });
    await core.createNamespacedPod({ namespace, body: pod('web', { app: 'nginx:1.27' }) });
    const current = await core.readNamespacedPod({ name: 'web', namespace });
    current.metadata!.labels = { ...current.metadata?.labels, touched: 'yes' };
    const updated = await core.replaceNamespacedPod({ name: 'web', namespace, body: current });
    assert.equal(updated.metadata?.labels?.touched, 'yes');
    assert.equal(images(updated).app, `${MIRROR}library/nginx:1.27`);
    // A new image set by the update is mapped, and the recorded original follows it.
    updated.spec!.containers[0]!.image = 'nginx:1.28';
    const bumped = await core.replaceNamespacedPod({ name: 'web', namespace, body: updated });
    assert.equal(images(bumped).app, `${MIRROR}library/nginx:1.28`);
    assert.equal(
      JSON.parse(bumped.metadata?.annotations?.['pullmap.dev/original-images'] ?? '{}').app,
      'nginx:1.28',
    );
  });

  it('accepts the deploy/ manifests (server-side dry run)', async () => {
    const root = fileURLToPath(new URL('../../deploy/', import.meta.url));
    await kube.kubectl(['apply', '-f', join(root, 'webhook/namespace.yaml')]);
    const built = await kube.kubectl(['kustomize', join(root, 'webhook-cert-manager')]);
    // cert-manager's kinds are not installed in this apiserver; everything else must be accepted.
    const docs = parseAllDocuments(built)
      .map((d) => d.toJS())
      .filter((o) => !String(o.apiVersion).startsWith('cert-manager.io/'));
    assert.ok(docs.length >= 9, `expected the webhook's objects, got ${docs.length}`);
    const out = await kube.kubectl(
      ['apply', '--dry-run=server', '-f', '-'],
      docs.map((d) => stringify(d)).join('---\n'),
    );
    assert.match(
      out,
      /mutatingwebhookconfiguration.admissionregistration.k8s.io\/pullmap created \(server dry run\)/,
    );
    assert.match(out, /deployment.apps\/pullmap-webhook created \(server dry run\)/);
    assert.match(out, /validatingwebhookconfiguration.admissionregistration.k8s.io\/pullmap-maps created/);
    assert.doesNotMatch(out, /would violate PodSecurity/);
  });

  it('provisions the serving certificate and injects the caBundle with deploy/webhook/certs.sh', async () => {
    const root = fileURLToPath(new URL('../../deploy/webhook/', import.meta.url));
    // The real configurations, made harmless for the other tests: they select no namespace.
    const none = { matchLabels: { 'pullmap.test/never': 'true' } };
    const configs = parseAllDocuments(
      (await readFile(join(root, 'mutating-webhook.yaml'), 'utf8')) +
        '\n---\n' +
        (await readFile(join(root, 'validating-webhook.yaml'), 'utf8')),
    ).map((d) => {
      const o = d.toJS();
      for (const w of o.webhooks) w.namespaceSelector = none;
      return o;
    });
    await kube.kubectl(['apply', '-f', '-'], configs.map((c) => stringify(c)).join('---\n'));
    try {
      const { stdout } = await execFileAsync('bash', [join(root, 'certs.sh'), '--days', '2'], {
        env: { ...process.env, KUBECONFIG: kube.kubeconfigPath },
      });
      assert.match(stdout, /caBundle injected/);
      const secret = JSON.parse(
        await kube.kubectl(['get', 'secret', 'pullmap-webhook-tls', '-n', 'pullmap-system', '-o', 'json']),
      );
      const cert = new X509Certificate(Buffer.from(secret.data['tls.crt'], 'base64'));
      assert.match(cert.subjectAltName ?? '', /DNS:pullmap-webhook\.pullmap-system\.svc/);
      for (const kind of [
        'mutatingwebhookconfiguration/pullmap',
        'validatingwebhookconfiguration/pullmap-maps',
      ]) {
        const bundle = await kube.kubectl([
          'get',
          kind,
          '-o',
          'jsonpath={.webhooks[0].clientConfig.caBundle}',
        ]);
        const ca = new X509Certificate(Buffer.from(bundle, 'base64'));
        assert.ok(cert.verify(ca.publicKey), `${kind}: the caBundle is the CA that signed the certificate`);
      }
    } finally {
      await kube.kubectl([
        'delete',
        'mutatingwebhookconfiguration/pullmap',
        'validatingwebhookconfiguration/pullmap-maps',
      ]);
    }
  });

  // Last: stops pullmap.
  it('with pullmap stopped, Ignore admits pods unchanged and Fail refuses them', async () => {
    const open = await kube.createNamespace({ prefix: 'open' });
    const strict = await kube.createNamespace({ prefix: 'strict', labels: { strict: 'true' } });
    // Both policies map while pullmap is up.
    const mapped = await core.createNamespacedPod({
      namespace: strict,
      body: pod('up', { app: 'nginx:1.27' }),
    });
    assert.equal(mapped.spec?.containers[0]?.image, `${MIRROR}library/nginx:1.27`);
    await pullmap.stop();
    const admitted = await core.createNamespacedPod({
      namespace: open,
      body: pod('down', { app: 'nginx:1.27' }),
    });
    assert.equal(admitted.spec?.containers[0]?.image, 'nginx:1.27');
    await assert.rejects(
      core.createNamespacedPod({ namespace: strict, body: pod('down', { app: 'nginx:1.27' }) }),
      (err: { code?: number; body?: string }) => {
        assert.equal(err.code, 500);
        assert.match(
          JSON.parse(String(err.body)).message,
          /failed calling webhook "a-pullmap-strict.pullmap.dev"/,
        );
        return true;
      },
    );
  });
});
