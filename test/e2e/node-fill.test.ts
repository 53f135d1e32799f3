// Story 000 with fill on a real node (kubelet + containerd): pod 1 runs from the origin, pullmap fills
// the Zarf-named mirror, pod 2 runs from the mirror, the origin is stopped, and pod 3 still runs.
// Run alone machine-wide: flock /tmp/pullmap-node.lock node --test test/e2e/node-fill.test.ts
import assert from 'node:assert/strict';
import { after, before, describe, it, type TestContext } from 'node:test';
import { stringify } from 'yaml';
import { zarfTag } from '../../src/core/mapping/zarf.ts';
import { pushImage } from '../harness/images.ts';
import { installCrds, type Kube, startKube } from '../harness/kube.ts';
import { markerImage, podEvents, startNode, type TestNode, waitForPodRunning } from '../harness/node.ts';
import { type TempDir, tempDir } from '../harness/process.ts';
import { type Pullmap, podWebhook, startPullmap } from '../harness/pullmap.ts';
import { startRegistry, type TestRegistry } from '../harness/registry.ts';
import { makePki, type TestPki } from '../harness/tls.ts';
import { rawDigest } from '../mirror/skopeo.ts';

const notRoot = process.getuid?.() !== 0 ? 'the real-node tests need root (kubelet, containerd)' : undefined;

let kube: Kube;
let node: TestNode;
let dir: TempDir;
let pki: TestPki;
let pullmap: Pullmap;
let origin: TestRegistry;
let mirror: TestRegistry;

const apply = (...objects: unknown[]): Promise<string> =>
  kube.kubectl(['apply', '-f', '-'], objects.map((o) => stringify(o)).join('---\n'));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

before(async () => {
  if (notRoot) return;
  dir = await tempDir('e2e-node-fill');
  pki = await makePki(dir.path);
  kube = await startKube();
  [origin, mirror] = await Promise.all([startRegistry(), startRegistry()]);
  node = await startNode(kube);
  for (const registry of [origin, mirror]) await node.plainHttp(registry.host);
  await installCrds(kube);
  pullmap = await startPullmap({
    tls: { certPath: pki.certPath, keyPath: pki.keyPath, caPem: pki.caPem },
    args: [
      ...['--maps-from', 'cluster', '--kubeconfig', kube.kubeconfigPath, '--lease-namespace', 'default'],
      ...['--plain-http', origin.host, '--plain-http', mirror.host],
    ],
  });
  await apply(podWebhook(pullmap, pki.caPem));
});

after(async () => {
  await pullmap?.stop();
  await node?.stop();
  await origin?.close();
  await mirror?.close();
  await kube?.stop();
  await dir?.remove();
});

const pod = (name: string, namespace: string, image: string) => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace },
  spec: {
    nodeName: node.name,
    terminationGracePeriodSeconds: 1,
    dnsPolicy: 'Default',
    containers: [{ name: 'app', image }],
  },
});

/** What the webhook makes of `image` now (a server-side dry run: nothing is stored or run). */
const admitted = (namespace: string, image: string): Promise<string> =>
  kube.kubectl(
    ['create', '--dry-run=server', '-o', 'jsonpath={.spec.containers[0].image}', '-f', '-'],
    stringify(pod('dry-run', namespace, image)),
  );

async function runPod(t: TestContext, namespace: string, name: string, image: string) {
  await apply(pod(name, namespace, image));
  const running = await waitForPodRunning(kube, namespace, name).catch((err: unknown) => {
    t.diagnostic(node.logs(4000));
    throw err;
  });
  let log = '';
  for (let i = 0; i < 40 && !log; i++) {
    log = await node.containerLog(namespace, name, 'app');
    if (!log) await sleep(100);
  }
  const events = await podEvents(kube, namespace, name);
  t.diagnostic(`pod ${name} (${running.pod['spec'].containers[0].image}): ${events.join(' | ')}`);
  return { image: running.pod['spec'].containers[0].image as string, log, events };
}

describe('story 000 with fill on a real node', { skip: notRoot }, () => {
  it('pod 1 from the origin, the mirror filled, pod 2 from the mirror, pod 3 after the origin is gone', async (t) => {
    const image = await markerImage('story 000: filled');
    await pushImage(origin, 'team/app', '1', image);
    const source = `${origin.host}/team/app:1`;
    const target = `${mirror.host}/zarf/team/app:${zarfTag(`${origin.host}/team/app`, '1')}`;
    await apply({
      apiVersion: 'pullmap.dev/v1alpha1',
      kind: 'ClusterImageMap',
      metadata: { name: 'story-000' },
      spec: {
        mappings: [
          {
            from: `${origin.host}/team/`,
            to: `${mirror.host}/zarf/`,
            naming: 'zarf',
            when: 'IfExists',
            fill: { enabled: true },
          },
        ],
      },
    });
    const ns = await kube.createNamespace({ prefix: 'story-000-fill' });

    const first = await runPod(t, ns, 'pod-1', source);
    assert.equal(first.image, source, 'the mirror lacked it: pod 1 pulled from the origin');
    assert.equal(first.log, 'marker: story 000: filled\n');

    let filled: string | undefined;
    for (let i = 0; i < 300 && filled === undefined; i++) {
      filled = await rawDigest(target).catch(() => undefined);
      if (filled === undefined) await sleep(200);
    }
    assert.equal(filled, image.manifest.digest, 'pullmap filled the mirror');

    assert.equal(await admitted(ns, source), target, 'the webhook maps the image to the mirror now');
    // containerd resolves the tag at the mirror (HEAD, or GET), and fetches only content it lacks.
    const mirrorPulls = await mirror.count({ uri: '/v2/zarf/team/app/manifests/' });
    const second = await runPod(t, ns, 'pod-2', source);
    assert.equal(second.image, target);
    assert.equal(second.log, 'marker: story 000: filled\n');
    assert.ok(
      (await mirror.count({ uri: '/v2/zarf/team/app/manifests/' })) > mirrorPulls,
      'pod 2 was pulled from the mirror',
    );

    // The link goes away: the origin stops and the node forgets the image, so pod 3 must pull again.
    await origin.stop();
    for (const ref of [source, target]) await node.removeImage(ref);
    const third = await runPod(t, ns, 'pod-3', source);
    assert.equal(third.image, target);
    assert.equal(third.log, 'marker: story 000: filled\n');
    assert.ok(
      third.events.some((e) => e.startsWith('Pulled:')),
      'pod 3 pulled the image (from the mirror)',
    );
  });
});
