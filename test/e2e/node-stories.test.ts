// The user stories on a real node: a kubelet and containerd (test/harness/node.ts) pull and run the pods
// the apiserver admitted through `pullmap serve`, from loopback registries and through `pullmap cache`,
// both running as processes the way users run them. One node for the whole file; scenarios run in turn.
// Test images hold a static program that prints the marker its image carries, so a pod's log says which
// image really ran.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { stringify } from 'yaml';
import { embedRegistry } from '../../src/core/reference/index.ts';
import { type CacheProcess, spawnCache } from '../harness/cache.ts';
import { ociArchive, pushImage } from '../harness/images.ts';
import { installCrds, type Kube, startKube } from '../harness/kube.ts';
import { markerImage, podEvents, startNode, type TestNode, waitForPodRunning } from '../harness/node.ts';
import { type TempDir, tempDir } from '../harness/process.ts';
import { type Pullmap, podWebhook, startPullmap } from '../harness/pullmap.ts';
import { startRegistry, type TestRegistry } from '../harness/registry.ts';
import { makePki, type TestPki } from '../harness/tls.ts';

// A registry name that only exists in the pods' specs: the webhook maps it away, and the node sends a
// pull that names it to a closed loopback port, so nothing could ever leave the machine.
const EDGE_SOURCE = 'registry.edge.example';

// kubelet and containerd need root (cgroups, mounts, network namespaces).
const notRoot = process.getuid?.() !== 0 ? 'the real-node tests need root (kubelet, containerd)' : undefined;

let kube: Kube;
let node: TestNode;
let dir: TempDir;
let pki: TestPki;
let pullmap: Pullmap;
let cache: CacheProcess;
/** Story 001's mirror, story 000's Zarf-like registry. */
let mirror: TestRegistry;
/** Story 003's upstream (behind the cache, mutable tags). */
let upstream: TestRegistry;
/** Story 000's original registry (images not in the mirror are pulled from here). */
let origin: TestRegistry;
/** kernel.panic before the node started (kubelet sets it to 10 while it runs). */
let panicBefore: string;

before(async () => {
  if (notRoot) return;
  dir = await tempDir('e2e-node');
  pki = await makePki(dir.path);
  kube = await startKube();
  panicBefore = await readFile('/proc/sys/kernel/panic', 'utf8');
  [mirror, upstream, origin] = await Promise.all([startRegistry(), startRegistry(), startRegistry()]);
  node = await startNode(kube);
  for (const registry of [mirror, upstream, origin]) await node.plainHttp(registry.host);
  await node.unreachable(EDGE_SOURCE);
  cache = await spawnCache(
    {
      upstreams: [
        { host: mirror.host, plainHttp: true },
        { host: upstream.host, plainHttp: true },
      ],
      refresh: { default: 'Interval(1h)', rules: [{ tags: ['latest'], refresh: 'Always' }], timeout: '2s' },
    },
    dir.path,
    { bundle: true },
  );
  await node.plainHttp(cache.host);

  await installCrds(kube);
  pullmap = await startPullmap({
    tls: { certPath: pki.certPath, keyPath: pki.keyPath, caPem: pki.caPem },
    args: [
      '--maps-from',
      'cluster',
      '--kubeconfig',
      kube.kubeconfigPath,
      '--lease-namespace',
      'default',
      '--cache-address',
      cache.host,
      '--plain-http',
      mirror.host,
    ],
  });
  await apply(podWebhook(pullmap, pki.caPem, { updates: true, reinvoke: true }));
});

after(async () => {
  await pullmap?.stop();
  await cache?.daemon.stop();
  await node?.stop();
  for (const registry of [mirror, upstream, origin]) await registry?.close();
  await kube?.stop();
  await dir?.remove();
});

const apply = (...objects: unknown[]): Promise<string> =>
  kube.kubectl(['apply', '-f', '-'], objects.map((o) => stringify(o)).join('---\n'));

function pod(
  name: string,
  namespace: string,
  images: Record<string, string>,
  extra: Record<string, unknown> = {},
) {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace },
    spec: {
      nodeName: node.name,
      terminationGracePeriodSeconds: 1,
      // No cluster DNS runs: the node's resolv.conf, without kubelet's warning event on every pod.
      dnsPolicy: 'Default',
      containers: Object.entries(images).map(([container, image]) => ({ name: container, image })),
      ...extra,
    },
  };
}

/** What the webhook makes of `image` now, asked with a server-side dry run (nothing is stored or run). */
async function admittedImage(namespace: string, image: string): Promise<string> {
  const out = await kube.kubectl(
    ['create', '--dry-run=server', '-o', 'jsonpath={.spec.containers[0].image}', '-f', '-'],
    stringify(pod('dry-run', namespace, { c: image })),
  );
  return out.trim();
}

/** Waits until the webhook's watch has the maps that turn `image` into `want`. */
async function untilAdmittedAs(namespace: string, image: string, want: string): Promise<void> {
  let got = '';
  for (let i = 0; i < 150; i++) {
    got = await admittedImage(namespace, image);
    if (got === want) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(got, want, 'the webhook never mapped the image as expected');
}

/** Creates the pod, waits until it runs, and records its events and start time in the test output. */
async function runPod(
  t: TestContext,
  manifest: ReturnType<typeof pod>,
): Promise<{ pod: Record<string, any>; logs: Record<string, string>; startMs: number; events: string[] }> {
  const { name, namespace } = manifest.metadata;
  const t0 = performance.now();
  await apply(manifest);
  let running: Awaited<ReturnType<typeof waitForPodRunning>>;
  try {
    running = await waitForPodRunning(kube, namespace, name);
  } catch (err) {
    t.diagnostic(node.logs(4000));
    throw err;
  }
  const startMs = performance.now() - t0;
  const logs: Record<string, string> = {};
  for (const c of manifest.spec.containers) {
    // The program prints its marker right away, but the log file may trail the "running" state briefly.
    for (let i = 0; i < 40; i++) {
      logs[c.name] = await node.containerLog(namespace, name, c.name);
      if (logs[c.name]) break;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const events = await podEvents(kube, namespace, name);
  t.diagnostic(
    `pod ${name}: running ${startMs.toFixed(0)} ms after create; events:\n  ${events.join('\n  ')}`,
  );
  return { pod: running.pod, logs, startMs, events };
}

async function deletePod(namespace: string, name: string): Promise<void> {
  await kube.kubectl([
    'delete',
    'pod',
    '-n',
    namespace,
    name,
    '--grace-period=1',
    '--wait=true',
    '--timeout=60s',
  ]);
}

/** One series of the cache's /metrics (labels as written), 0 when absent. */
async function cacheMetric(series: string): Promise<number> {
  const text = await (
    await fetch(`http://${cache.host}/metrics`, { signal: AbortSignal.timeout(5000) })
  ).text();
  for (const line of text.split('\n')) {
    if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1));
  }
  return 0;
}

const servedBytes = async (): Promise<number> =>
  (await cacheMetric('pullmap_cache_served_bytes_total{source="upstream"}')) +
  (await cacheMetric('pullmap_cache_served_bytes_total{source="cache"}'));

const digestOf = (p: Record<string, any>, container = 0): string =>
  String(p['status']?.containerStatuses?.[container]?.imageID ?? '').replace(/^.*@/, '');

describe('the real node', { skip: notRoot }, () => {
  it('is registered and Ready, and runs an image loaded from an archive, with and without host network', async (t) => {
    t.diagnostic(
      `node ${node.name} up in ${node.timings.totalMs.toFixed(0)} ms (containerd ${node.timings.containerdMs.toFixed(0)} ms, kubelet to Ready ${node.timings.kubeletMs.toFixed(0)} ms, waited ${node.timings.lockWaitMs.toFixed(0)} ms for the node lock)`,
    );
    const ready = await kube.kubectl([
      'get',
      'node',
      node.name,
      '-o',
      'jsonpath={.status.conditions[?(@.type=="Ready")].status} {.status.addresses[?(@.type=="InternalIP")].address} {.status.nodeInfo.containerRuntimeVersion}',
    ]);
    const [status, address, runtime] = ready.split(' ');
    assert.equal(status, 'True');
    assert.equal(address, node.ip);
    assert.match(String(runtime), /^containerd:\/\//);
    // The way an image built locally (pullmap's own, later) reaches the node: an OCI archive, no registry.
    const ref = 'localhost/pullmap-test/loaded:1';
    await node.loadImage(ociArchive(await markerImage('loaded from an archive'), ref));
    const ns = await kube.createNamespace({ prefix: 'node' });
    for (const hostNetwork of [true, false]) {
      const name = hostNetwork ? 'host-network' : 'pod-network';
      const { pod: p, logs } = await runPod(
        t,
        pod(
          name,
          ns,
          { c: ref },
          { hostNetwork, containers: [{ name: 'c', image: ref, imagePullPolicy: 'Never' }] },
        ),
      );
      assert.equal(logs['c'], 'marker: loaded from an archive\n');
      if (hostNetwork) assert.equal(p['status'].podIP, node.ip, 'a host-network pod has the node IP');
      else
        assert.match(
          String(p['status'].podIP),
          /^10\.251\.0\./,
          'the bridge CNI gave the pod an address of its own',
        );
    }
  });
});

describe('story 001 on the node: a registry redirected to a mirror, pulled through pullmap cache', {
  skip: notRoot,
}, () => {
  it('runs the pod from the mirror through the cache, with the rewritten image and the original recorded', async (t) => {
    const image = await markerImage('story 001: from the mirror, through the cache');
    await pushImage(mirror, 'edge/team/app', '1.4', image);
    await apply({
      apiVersion: 'pullmap.dev/v1alpha1',
      kind: 'ClusterImageMap',
      metadata: { name: 'edge' },
      spec: { mappings: [{ from: `${EDGE_SOURCE}/`, to: `${mirror.host}/edge/` }], cache: { enabled: true } },
    });
    const ns = await kube.createNamespace({ prefix: 'story-001' });
    const original = `${EDGE_SOURCE}/team/app:1.4`;
    const expected = `${cache.host}/${embedRegistry(mirror.host)}/edge/team/app:1.4`;
    await untilAdmittedAs(ns, original, expected);

    const bytesBefore = await servedBytes();
    const blobGetsBefore = await mirror.count({ method: 'GET', uri: '/blobs/' });
    const { pod: p, logs, events } = await runPod(t, pod('app', ns, { app: original }));
    assert.equal(logs['app'], 'marker: story 001: from the mirror, through the cache\n');
    assert.equal(p['spec'].containers[0].image, expected);
    assert.deepEqual(JSON.parse(p['metadata'].annotations['pullmap.dev/original-images']), { app: original });
    assert.equal(digestOf(p), image.manifest.digest, 'the node runs exactly the image pushed to the mirror');
    assert.ok(
      events.some((e) => e.startsWith('Pulled:') && e.includes(expected)),
      events.join('\n'),
    );
    // The cache served the layer and config (and the manifest) to containerd, fetched once from the mirror.
    const served = (await servedBytes()) - bytesBefore;
    assert.ok(served >= image.layer.size + image.config.size, `cache served ${served} bytes`);
    assert.ok(
      (await mirror.count({ method: 'GET', uri: '/blobs/' })) > blobGetsBefore,
      'the cache fetched from the mirror',
    );
    t.diagnostic(`cache served ${served} bytes (layer ${image.layer.size}, config ${image.config.size})`);
  });
});

describe('story 003 on the node: mutable tags through the cache, and the cache when upstream is down', {
  skip: notRoot,
}, () => {
  let ns: string;
  let cachedRef: string;
  const source = (): string => `${upstream.host}/team/tool:latest`;

  before(async () => {
    if (notRoot) return;
    await apply({
      apiVersion: 'pullmap.dev/v1alpha1',
      kind: 'ClusterImageMap',
      metadata: { name: 'through-cache' },
      spec: {
        mappings: [{ from: `${upstream.host}/`, to: `${upstream.host}/` }],
        mutableTags: ['latest'],
        mutableTagPolicy: 'Map',
        pullPolicyAlways: 'Map',
        cache: { enabled: true },
      },
    });
    ns = await kube.createNamespace({ prefix: 'story-003' });
    cachedRef = `${cache.host}/${embedRegistry(upstream.host)}/team/tool:latest`;
  });

  it('with refresh: Always, a new :latest pushed upstream is what the next pod runs', async (t) => {
    const v1 = await markerImage('story 003: latest v1');
    const v2 = await markerImage('story 003: latest v2');
    await pushImage(upstream, 'team/tool', 'latest', v1);
    await untilAdmittedAs(ns, source(), cachedRef);
    const first = await runPod(t, pod('tool-1', ns, { tool: source() }));
    assert.equal(first.logs['tool'], 'marker: story 003: latest v1\n');
    assert.equal(first.pod['spec'].containers[0].image, cachedRef);
    assert.equal(first.pod['spec'].containers[0].imagePullPolicy, 'Always', ':latest pulls every time');
    assert.equal(digestOf(first.pod), v1.manifest.digest);

    await pushImage(upstream, 'team/tool', 'latest', v2);
    const second = await runPod(t, pod('tool-2', ns, { tool: source() }));
    assert.equal(second.logs['tool'], 'marker: story 003: latest v2\n');
    assert.equal(digestOf(second.pod), v2.manifest.digest, 'the cache asked upstream again and found v2');
    await deletePod(ns, 'tool-1');
    await deletePod(ns, 'tool-2');
  });

  it('with upstream stopped and the image gone from the node, the pod starts from the cache (stale-if-error)', async (t) => {
    await upstream.stop();
    const removed = await node.removeImage(cachedRef);
    assert.ok(removed.includes(cachedRef), `removed ${removed.join(', ')}`);
    assert.equal(await node.hasImage(cachedRef), false);
    const staleBefore = await cacheMetric(
      `pullmap_cache_stale_responses_total{upstream="${upstream.host}",reason="unreachable"}`,
    );
    const bytesBefore = await servedBytes();

    const third = await runPod(t, pod('tool-3', ns, { tool: source() }));
    assert.equal(third.logs['tool'], 'marker: story 003: latest v2\n', 'the last copy the cache had');
    assert.ok(
      third.events.some((e) => e.startsWith('Pulled:')),
      'kubelet pulled it again',
    );
    assert.ok(
      (await cacheMetric(
        `pullmap_cache_stale_responses_total{upstream="${upstream.host}",reason="unreachable"}`,
      )) > staleBefore,
      'the cache answered with its stale copy because upstream was unreachable',
    );
    assert.equal(await node.hasImage(cachedRef), true);
    t.diagnostic(
      `with upstream down the cache served ${(await servedBytes()) - bytesBefore} bytes from its store`,
    );
  });
});

describe('story 000 on the node: when: IfExists with one image at the mirror and one not', {
  skip: notRoot,
}, () => {
  it('both pods run; only the image the mirror has is rewritten', async (t) => {
    const atMirror = await markerImage('story 000: the mirror copy');
    const atOrigin = await markerImage('story 000: the original app');
    const onlyOrigin = await markerImage('story 000: only at the origin');
    await pushImage(origin, 'team/app', '2.0', atOrigin);
    await pushImage(mirror, 'zarf/team/app', '2.0', atMirror);
    await pushImage(origin, 'team/only-here', '1.0', onlyOrigin);
    await apply({
      apiVersion: 'pullmap.dev/v1alpha1',
      kind: 'ClusterImageMap',
      metadata: { name: 'zarf-if-exists' },
      spec: {
        mappings: [
          {
            from: `${origin.host}/`,
            to: `${mirror.host}/zarf/`,
            when: 'IfExists',
            onProbeError: 'KeepOriginal',
          },
        ],
        mutableTags: ['latest'],
      },
    });
    const ns = await kube.createNamespace({ prefix: 'story-000' });
    const present = `${origin.host}/team/app:2.0`;
    const absent = `${origin.host}/team/only-here:1.0`;
    await untilAdmittedAs(ns, present, `${mirror.host}/zarf/team/app:2.0`);

    const mapped = await runPod(t, pod('present', ns, { app: present }));
    assert.equal(mapped.pod['spec'].containers[0].image, `${mirror.host}/zarf/team/app:2.0`);
    assert.equal(mapped.logs['app'], 'marker: story 000: the mirror copy\n');
    assert.deepEqual(JSON.parse(mapped.pod['metadata'].annotations['pullmap.dev/original-images']), {
      app: present,
    });

    const kept = await runPod(t, pod('absent', ns, { app: absent }));
    assert.equal(kept.pod['spec'].containers[0].image, absent, 'not at the mirror: left alone');
    assert.equal(kept.logs['app'], 'marker: story 000: only at the origin\n');
    assert.equal(kept.pod['metadata'].annotations?.['pullmap.dev/original-images'], undefined);
    assert.equal(digestOf(kept.pod), onlyOrigin.manifest.digest);
  });
});

describe('the network rule of the node tests', { skip: notRoot }, () => {
  it('nothing in this network namespace connected to the node address or a Service ClusterIP', async () => {
    assert.deepEqual(await node.offLimitsConnections(), [], 'every connection went to 127.0.0.0/8');
  });
});

describe('stopping the node', { skip: notRoot }, () => {
  it('leaves no process, mount, cgroup, bridge or changed kernel setting behind', async () => {
    const nodeDir = node.dir;
    const pidsOf = async (needle: string): Promise<number[]> => {
      const pids: number[] = [];
      for (const entry of await readdir('/proc')) {
        if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
        const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
        if (cmdline.includes(needle)) pids.push(Number(entry));
      }
      return pids;
    };
    assert.ok((await pidsOf(nodeDir)).length >= 2, 'kubelet and containerd (and shims) were running');
    await node.stop();
    assert.deepEqual(await pidsOf(nodeDir), [], 'no kubelet, containerd, shim or pod process');
    const mountinfo = await readFile('/proc/self/mountinfo', 'utf8');
    assert.equal(mountinfo.includes(nodeDir), false, 'no mount under the node directory');
    assert.equal(existsSync(nodeDir), false);
    assert.equal(existsSync(`/sys/fs/cgroup/memory/${node.name}`), false, 'no cgroup');
    assert.equal(
      existsSync(join('/sys/class/net', `pmbr-${node.name.split('-').pop()}`)),
      false,
      'no bridge',
    );
    assert.equal(existsSync(join(tmpdir(), 'pullmap-node.host-state.json')), false);
    // kubelet sets kernel.panic to 10 while it runs; the value before it started is back.
    assert.equal(await readFile('/proc/sys/kernel/panic', 'utf8'), panicBefore);
  });
});
