// pullmap installed the way users install it, running as pods on a real node: the image of
// scripts/build-image.sh loaded into the node's containerd, the chart of deploy/helm/pullmap installed
// with helm (webhook Deployment + cache DaemonSet), kube-controller-manager and kube-scheduler turning
// them into pods on the kubelet of test/harness/node.ts. Then story 001 through those pods: a
// ClusterImageMap sends a registry to a mirror through the cache; the pod runs the mirror's image.
//
// Network: everything a process of this machine's network namespace connects to is on 127.0.0.0/8.
// Control plane and node share the machine, so the chart's pods use the host network and listen on
// 127.0.0.1: the apiserver calls the webhook by URL (https://127.0.0.1:PORT, a certificate for that IP),
// the pods reach the apiserver at 127.0.0.1 (KUBERNETES_SERVICE_HOST/PORT; no kube-proxy serves the
// kubernetes Service), the maps send pulls to the cache at 127.0.0.1:PORT, and probes name 127.0.0.1.
// The apiserver never calls the kubelet (its API listens on 127.0.0.1 for nobody); logs are read from
// the node's pod log files.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { stringify } from 'yaml';
import { embedRegistry } from '../../src/core/reference/index.ts';
import { type ControlPlane, startControlPlane } from '../harness/control-plane.ts';
import { CHART, type Helm, startHelm } from '../harness/helm.ts';
import { imageRepository, type PullmapImage, pullmapImage } from '../harness/image.ts';
import { pushImage } from '../harness/images.ts';
import { type Kube, startKube } from '../harness/kube.ts';
import { markerImage, podEvents, startNode, type TestNode, waitForPodRunning } from '../harness/node.ts';
import { execFileAsync, freePort, type TempDir, tempDir } from '../harness/process.ts';
import { startRegistry, type TestRegistry } from '../harness/registry.ts';

const NAMESPACE = 'pullmap-system';
// A registry name that only exists in the pods' specs: the webhook maps it away, and the node sends a
// pull that names it to a closed loopback port.
const EDGE_SOURCE = 'registry.edge.example';
const PRIVATE_SOURCE = 'registry.private.example';

const notRoot =
  process.getuid?.() !== 0
    ? 'the real-node tests need root (kubelet, containerd, build-image.sh)'
    : undefined;

type Obj = Record<string, any>;

let image: PullmapImage & { configDigest: string };
let kube: Kube;
let node: TestNode;
let controlPlane: ControlPlane;
let helm: Helm;
let mirror: TestRegistry;
/** Issue 17 §2: a mirror that wants credentials (htpasswd). */
let privateMirror: TestRegistry;
const PULLER = { user: 'puller', password: 'pull-secret-password' };
let dir: TempDir;
let webhookPort: number;
let healthPort: number;
let cachePort: number;
/** From `helm install` until the webhook and cache pods were Ready. */
let installToReadyMs = 0;
let installMs = 0;
const apply = (...objects: unknown[]): Promise<string> =>
  kube.kubectl(['apply', '-f', '-'], objects.map((o) => stringify(o)).join('---\n'));

const getJson = async (args: string[]): Promise<Obj> =>
  JSON.parse(await kube.kubectl(['get', ...args, '-o', 'json'])) as Obj;

const isReady = (pod: Obj): boolean =>
  (pod['status']?.conditions ?? []).some((c: Obj) => c['type'] === 'Ready' && c['status'] === 'True');

/** The chart's pods of one component once one of them is Ready (fails early with events on a failed pull). */
async function readyPods(component: string, timeoutMs = 180_000): Promise<Obj[]> {
  const started = performance.now();
  let last: Obj[] = [];
  while (performance.now() - started < timeoutMs) {
    last = (await getJson(['pods', '-n', NAMESPACE, '-l', `app.kubernetes.io/component=${component}`]))[
      'items'
    ] as Obj[];
    if (last.length > 0 && last.every(isReady)) return last;
    for (const pod of last) {
      const statuses = [
        ...(pod['status']?.initContainerStatuses ?? []),
        ...(pod['status']?.containerStatuses ?? []),
      ] as Obj[];
      const stuck = statuses.find((s) =>
        /^(ErrImageNeverPull|ErrImagePull|ImagePullBackOff|CreateContainerConfigError|CrashLoopBackOff)$/.test(
          String(s['state']?.waiting?.reason ?? ''),
        ),
      );
      if (stuck) {
        const events = await podEvents(kube, NAMESPACE, pod['metadata'].name);
        throw new Error(
          `${component} pod ${pod['metadata'].name} cannot run (${stuck['state'].waiting.reason}):\n${events.join('\n')}\n${await podLogs(pod)}`,
        );
      }
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  const events = await Promise.all(last.map((p) => podEvents(kube, NAMESPACE, p['metadata'].name)));
  throw new Error(
    `${component} pods not Ready after ${timeoutMs} ms: ${JSON.stringify(last.map((p) => p['status']))}\n${events.flat().join('\n')}\n${(await Promise.all(last.map(podLogs))).join('\n')}\n${controlPlane.logs(3000)}`,
  );
}

/** Every container's output of a pod, from the node's log files. */
async function podLogs(pod: Obj): Promise<string> {
  const containers = [...(pod['spec']?.initContainers ?? []), ...(pod['spec']?.containers ?? [])] as Obj[];
  const parts: string[] = [];
  for (const c of containers) {
    const text = await node.containerLog(NAMESPACE, pod['metadata'].name, c['name']);
    parts.push(`--- ${pod['metadata'].name}/${c['name']} ---\n${text.slice(-3000)}`);
  }
  return parts.join('\n');
}

before(async () => {
  if (notRoot) return;
  // The image first, before the node lock: building needs no node (~20 s, or nothing when cached).
  const built = await pullmapImage();
  const { stdout: manifest } = await execFileAsync('tar', [
    '-xOf',
    built.archive,
    `blobs/${built.digest.replace(':', '/')}`,
  ]);
  image = { ...built, configDigest: (JSON.parse(manifest) as { config: { digest: string } }).config.digest };
  dir = await tempDir('e2e-node-helm');
  kube = await startKube({ serviceAccounts: true });
  [mirror, privateMirror] = await Promise.all([
    startRegistry(),
    startRegistry({ auth: { kind: 'htpasswd', users: { [PULLER.user]: PULLER.password } } }),
  ]);
  [webhookPort, cachePort, healthPort] = await Promise.all([freePort(), freePort(), freePort()]);
  node = await startNode(kube);
  await node.plainHttp(mirror.host);
  await node.plainHttp(privateMirror.host);
  await node.unreachable(PRIVATE_SOURCE);
  await node.plainHttp(`127.0.0.1:${cachePort}`);
  await node.unreachable(EDGE_SOURCE);
  await node.loadImage(image.archive, { baseName: imageRepository });
  controlPlane = await startControlPlane(kube);
  helm = await startHelm();

  const apiserverPort = new URL(kube.apiserverUrl).port;
  const values = {
    image: { repository: imageRepository, tag: image.tag, pullPolicy: 'Never' },
    webhook: {
      replicas: 1,
      hostNetwork: true,
      listenHost: '127.0.0.1',
      port: webhookPort,
      // The probes' listener, on the node's loopback too: a free port, not the default 8081.
      healthPort,
      url: `https://127.0.0.1:${webhookPort}`,
      pdb: { enabled: false },
      extraEnv: [
        { name: 'KUBERNETES_SERVICE_HOST', value: '127.0.0.1' },
        { name: 'KUBERNETES_SERVICE_PORT', value: apiserverPort },
      ],
    },
    tls: { ipAddresses: ['127.0.0.1'] },
    cache: {
      enabled: true,
      port: cachePort,
      // The store below the node's directory, removed with it.
      daemonset: { hostNetwork: true, hostPath: join(node.dir, 'pullmap-cache') },
      config: { upstreams: [{ host: mirror.host, plainHttp: true }] },
    },
  };
  const valuesPath = join(dir.path, 'values.yaml');
  await writeFile(valuesPath, stringify(values));
  const t0 = performance.now();
  await helm.ok(['install', 'pullmap', CHART, '-n', NAMESPACE, '--create-namespace', '-f', valuesPath], {
    kubeconfig: kube.kubeconfigPath,
  });
  installMs = performance.now() - t0;
  await Promise.all([readyPods('webhook'), readyPods('cache')]);
  installToReadyMs = performance.now() - t0;
});

after(async () => {
  await controlPlane?.stop();
  await node?.stop();
  await mirror?.close();
  await privateMirror?.close();
  await helm?.stop();
  await kube?.stop();
  await dir?.remove();
});

/** Waits until the webhook pod's watch has the maps that turn the pod's first image into `want` (dry runs). */
async function untilAdmitted(pod: Obj, want: string): Promise<void> {
  let admitted = '';
  for (let i = 0; i < 150 && admitted !== want; i++) {
    admitted = (
      await kube.kubectl(
        ['create', '--dry-run=server', '-o', 'jsonpath={.spec.containers[0].image}', '-f', '-'],
        stringify(pod),
      )
    ).trim();
    if (admitted !== want) await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(admitted, want, 'the webhook pod never mapped the image');
}

/** A namespace whose `default` ServiceAccount exists (the ServiceAccount admission plugin requires it). */
async function namespaceWithAccount(prefix: string, labels?: Record<string, string>): Promise<string> {
  const ns = await kube.createNamespace({ prefix, ...(labels ? { labels } : {}) });
  for (let i = 0; i < 200; i++) {
    const found = await kube
      .kubectl(['get', 'serviceaccount', '-n', ns, 'default', '-o', 'name'])
      .catch(() => '');
    if (found.trim()) return ns;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no default ServiceAccount in ${ns}: is the serviceaccount controller running?`);
}

async function diagnosePods(t: TestContext, component: string): Promise<Obj[]> {
  const pods = (await getJson(['pods', '-n', NAMESPACE, '-l', `app.kubernetes.io/component=${component}`]))[
    'items'
  ] as Obj[];
  for (const p of pods) {
    const events = await podEvents(kube, NAMESPACE, p['metadata'].name);
    t.diagnostic(`${component} pod ${p['metadata'].name} events:\n  ${events.join('\n  ')}`);
  }
  return pods;
}

describe('pullmap installed by its chart, running as pods on the node', { skip: notRoot }, () => {
  it('runs the webhook and the cache from the image loaded into the node, on the node loopback', async (t) => {
    t.diagnostic(
      `helm install ${installMs.toFixed(0)} ms; install to webhook and cache Ready ${installToReadyMs.toFixed(0)} ms; node up in ${node.timings.totalMs.toFixed(0)} ms; controller-manager and scheduler ready in ${controlPlane.timings.readyMs.toFixed(0)} ms`,
    );
    const webhookPods = await diagnosePods(t, 'webhook');
    const cachePods = await diagnosePods(t, 'cache');
    assert.equal(webhookPods.length, 1);
    assert.equal(cachePods.length, 1, 'the DaemonSet has one pod on the one node');
    for (const p of [...webhookPods, ...cachePods]) {
      assert.equal(p['spec'].nodeName, node.name, 'the scheduler bound it to the harness node');
      assert.equal(p['spec'].hostNetwork, true);
      const status = p['status'].containerStatuses[0] as Obj;
      assert.equal(status.image, `${imageRepository}:${image.tag}`);
      // containerd reports the image ID: the config digest of the image in the archive.
      assert.equal(status.imageID, image.configDigest, `${p['metadata'].name} runs the image built here`);
      assert.ok(status.ready, `${p['metadata'].name} is Ready`);
    }
    // The webhook pod has a ServiceAccount token and reads the maps with it (Ready means maps loaded),
    // and as the Lease holder it writes status: the in-cluster client reached the apiserver.
    const webhook = webhookPods[0]!;
    assert.equal(webhook['spec'].serviceAccountName, 'pullmap');
    assert.ok(
      (webhook['spec'].volumes as Obj[]).some((v) => String(v['name']).startsWith('kube-api-access-')),
      'the ServiceAccount admission plugin added the token volume',
    );
    let holder = '';
    for (let i = 0; i < 150 && holder !== webhook['metadata'].name; i++) {
      holder = await kube
        .kubectl([
          'get',
          'lease',
          '-n',
          NAMESPACE,
          'pullmap-controller',
          '-o',
          'jsonpath={.spec.holderIdentity}',
        ])
        .catch(() => '');
      if (holder !== webhook['metadata'].name) await new Promise((r) => setTimeout(r, 200));
    }
    assert.equal(holder, webhook['metadata'].name, 'the webhook pod holds the controller Lease');
    // The cache answers on the node's loopback, as containerd will reach it.
    const res = await fetch(`http://127.0.0.1:${cachePort}/readyz`, { signal: AbortSignal.timeout(5000) });
    assert.equal(res.status, 200);
  });

  it('story 001 through the pods: the pod runs the mirror image through the cache pod, rewritten by the webhook pod', async (t) => {
    const app = await markerImage('story 001 through the chart: from the mirror, through the cache pod');
    await pushImage(mirror, 'edge/team/app', '1.4', app);
    const cacheHost = `127.0.0.1:${cachePort}`;
    // Goes through the validating webhook (by URL): a refused or unreachable webhook would show here
    // only as a warning, so the map's status below is what proves the pod's controller saw it.
    await apply({
      apiVersion: 'pullmap.dev/v1alpha1',
      kind: 'ClusterImageMap',
      metadata: { name: 'edge' },
      spec: {
        mappings: [{ from: `${EDGE_SOURCE}/`, to: `${mirror.host}/edge/` }],
        cache: { enabled: true, address: cacheHost },
      },
    });
    const ns = await namespaceWithAccount('helm-story-001');
    const original = `${EDGE_SOURCE}/team/app:1.4`;
    const expected = `${cacheHost}/${embedRegistry(mirror.host)}/edge/team/app:1.4`;
    const manifest = (name: string): Obj => ({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, namespace: ns },
      spec: {
        terminationGracePeriodSeconds: 1,
        dnsPolicy: 'Default',
        automountServiceAccountToken: false,
        containers: [{ name: 'app', image: original }],
      },
    });
    await untilAdmitted(manifest('dry-run'), expected);
    const ready = (await getJson(['clusterimagemap', 'edge']))['status']?.conditions?.find(
      (c: Obj) => c['type'] === 'Ready',
    );
    assert.equal(ready?.status, 'True', 'the webhook pod (Lease holder) wrote the map status');

    const servedBefore = await servedBytes(cacheHost);
    const blobGetsBefore = await mirror.count({ method: 'GET', uri: '/blobs/' });
    const t0 = performance.now();
    await apply(manifest('app'));
    let running: Awaited<ReturnType<typeof waitForPodRunning>>;
    try {
      running = await waitForPodRunning(kube, ns, 'app');
    } catch (err) {
      t.diagnostic(node.logs(3000));
      throw err;
    }
    const startMs = performance.now() - t0;
    const p = running.pod;
    const events = await podEvents(kube, ns, 'app');
    t.diagnostic(`pod app: running ${startMs.toFixed(0)} ms after create; events:\n  ${events.join('\n  ')}`);
    assert.equal(p['spec'].nodeName, node.name, 'scheduled onto the node');
    assert.equal(p['spec'].containers[0].image, expected);
    assert.deepEqual(JSON.parse(p['metadata'].annotations['pullmap.dev/original-images']), { app: original });
    assert.equal(
      String(p['status'].containerStatuses[0].imageID).replace(/^.*@/, ''),
      app.manifest.digest,
      'the node runs exactly the image pushed to the mirror',
    );
    let log = '';
    for (let i = 0; i < 40 && !log; i++) {
      log = await node.containerLog(ns, 'app', 'app');
      if (!log) await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(log, 'marker: story 001 through the chart: from the mirror, through the cache pod\n');
    assert.ok(
      events.some((e) => e.startsWith('Pulled:') && e.includes(expected)),
      events.join('\n'),
    );
    // The cache pod served the layer and config to containerd, fetched from the mirror.
    const served = (await servedBytes(cacheHost)) - servedBefore;
    assert.ok(served >= app.layer.size + app.config.size, `the cache pod served ${served} bytes`);
    assert.ok(
      (await mirror.count({ method: 'GET', uri: '/blobs/' })) > blobGetsBefore,
      'the cache pod fetched from the mirror',
    );
    t.diagnostic(`cache pod served ${served} bytes (layer ${app.layer.size}, config ${app.config.size})`);
  });
});

describe('issue 17 §2 on the node: a mirror that needs credentials, with the pull secret pullmap copies', {
  skip: notRoot,
}, () => {
  it('without the copy the pull is refused (401); with the Secret in pullmap-system copied, the same pod spec runs', async (t) => {
    const app = await markerImage('issue 17: from the private mirror, with the copied pull secret');
    await pushImage(privateMirror, 'private/team/app', '2.0', app);
    await apply({
      apiVersion: 'pullmap.dev/v1alpha1',
      kind: 'ClusterImageMap',
      metadata: { name: 'private' },
      spec: {
        mappings: [
          { from: `${PRIVATE_SOURCE}/`, to: `${privateMirror.host}/private/`, pullSecret: 'mirror-pull' },
        ],
        namespaceSelector: { matchLabels: { 'pullmap.dev/test-tenant': 'private' } },
      },
    });
    const ns = await namespaceWithAccount('helm-creds', { 'pullmap.dev/test-tenant': 'private' });
    const original = `${PRIVATE_SOURCE}/team/app:2.0`;
    const expected = `${privateMirror.host}/private/team/app:2.0`;
    const manifest = (name: string): Obj => ({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, namespace: ns },
      spec: {
        terminationGracePeriodSeconds: 1,
        dnsPolicy: 'Default',
        automountServiceAccountToken: false,
        containers: [{ name: 'app', image: original }],
      },
    });
    await untilAdmitted(manifest('dry-run'), expected);

    // The map names a Secret that does not exist yet: the pod refers to the copy, which is not there.
    await apply(manifest('before-copy'));
    const refused = await waitForPodRunning(kube, ns, 'before-copy', 60_000).then(
      () => undefined,
      (err: Error) => err,
    );
    assert.ok(refused, 'the pull without credentials must fail');
    assert.ok(
      (await privateMirror.count({ uri: '/manifests/', status: 401 })) > 0,
      'the private mirror refused the node (401)',
    );
    assert.match(refused.message, /ErrImagePull|ImagePullBackOff/);
    assert.match(refused.message, /401 Unauthorized|unauthorized/i, refused.message);
    const before = await getJson(['pod', '-n', ns, 'before-copy']);
    assert.deepEqual(before['spec'].imagePullSecrets, [{ name: 'pullmap-mirror-pull' }]);
    assert.equal(before['spec'].containers[0].image, expected);
    t.diagnostic(
      `pod before-copy: ${refused.message
        .split('\n')
        .filter((l) => /Failed/.test(l))
        .join('\n  ')}`,
    );
    await kube.kubectl([
      'delete',
      'pod',
      '-n',
      ns,
      'before-copy',
      '--grace-period=0',
      '--force',
      '--wait=false',
    ]);

    // The cluster administrator's Secret in pullmap's namespace; the webhook pod (Lease holder) copies it.
    const auth = Buffer.from(`${PULLER.user}:${PULLER.password}`).toString('base64');
    await apply({
      apiVersion: 'v1',
      kind: 'Secret',
      type: 'kubernetes.io/dockerconfigjson',
      metadata: { name: 'mirror-pull', namespace: NAMESPACE },
      data: {
        '.dockerconfigjson': Buffer.from(
          JSON.stringify({ auths: { [privateMirror.host]: { auth } } }),
        ).toString('base64'),
      },
    });
    let copy: Obj | undefined;
    for (let i = 0; i < 300 && !copy; i++) {
      copy = await getJson(['secret', '-n', ns, 'pullmap-mirror-pull']).catch(() => undefined);
      if (!copy) await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(copy, 'the webhook pod copied the Secret into the namespace');
    assert.equal(copy['type'], 'kubernetes.io/dockerconfigjson');
    assert.equal(copy['metadata'].labels?.['pullmap.dev/copy-of'] !== undefined, true, 'labelled as a copy');

    const pullsBefore = await privateMirror.count({ method: 'GET', uri: '/manifests/', status: 200 });
    const t0 = performance.now();
    await apply(manifest('with-copy'));
    const running = await waitForPodRunning(kube, ns, 'with-copy');
    const events = await podEvents(kube, ns, 'with-copy');
    t.diagnostic(
      `pod with-copy: running ${(performance.now() - t0).toFixed(0)} ms after create; events:\n  ${events.join('\n  ')}`,
    );
    assert.deepEqual(running.pod['spec'].imagePullSecrets, [{ name: 'pullmap-mirror-pull' }]);
    assert.equal(
      String(running.pod['status'].containerStatuses[0].imageID).replace(/^.*@/, ''),
      app.manifest.digest,
    );
    assert.equal(
      await node.containerLog(ns, 'with-copy', 'app'),
      'marker: issue 17: from the private mirror, with the copied pull secret\n',
    );
    // docker-registry's htpasswd auth answers 200 only to a request with valid credentials: the node
    // sent the copied Secret's (its access log does not name the user).
    const pulls = await privateMirror.count({ method: 'GET', uri: '/manifests/', status: 200 });
    assert.ok(pulls > pullsBefore, 'the node fetched the manifest from the private mirror, authenticated');
  });
});

describe('the network rule of the node tests', { skip: notRoot }, () => {
  it('nothing in this network namespace connected to the node address or a Service ClusterIP', async () => {
    assert.deepEqual(await node.offLimitsConnections(), [], 'every connection went to 127.0.0.0/8');
  });
});

/** The cache's pullmap_cache_served_bytes_total, both sources. */
async function servedBytes(cacheHost: string): Promise<number> {
  const text = await (
    await fetch(`http://${cacheHost}/metrics`, { signal: AbortSignal.timeout(5000) })
  ).text();
  let total = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('pullmap_cache_served_bytes_total{')) total += Number(line.split(' ').pop());
  }
  return total;
}
