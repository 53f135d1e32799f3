// A fill seen by every replica: with two `pullmap serve --maps-from cluster` replicas and the webhook
// pointed at the one that does not lead, a pod kept on the origin (the follower cached "missing"), the
// leader's copy, and the next pod mapped to the mirror at once: the follower learns of the copy from
// the map's status.fill, not from its negative TTL (ten minutes here).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { CoreV1Api } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { buildImage, pushImage } from '../harness/images.ts';
import { installCrds, type Kube, startKube } from '../harness/kube.ts';
import { type TempDir, tempDir } from '../harness/process.ts';
import { type Pullmap, podWebhook, startPullmap } from '../harness/pullmap.ts';
import { startRegistry, type TestRegistry } from '../harness/registry.ts';
import { makePki, type TestPki } from '../harness/tls.ts';
import { rawDigest } from '../mirror/skopeo.ts';

let kube: Kube;
let dir: TempDir;
let pki: TestPki;
let origin: TestRegistry;
let mirror: TestRegistry;
const replicas: Pullmap[] = [];
const app = buildImage({ files: { 'app.txt': 'follower\n' } });

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const leads = (p: Pullmap) => p.logs().some((l) => l.msg === 'became leader');

async function until<T>(what: string, probe: () => Promise<T | undefined>, tries: number): Promise<T> {
  for (let i = 0; i < tries; i++) {
    const got = await probe().catch(() => undefined);
    if (got !== undefined) return got;
    await sleep(200);
  }
  throw new Error(`${what} did not happen\n${replicas[1]?.daemon.output().slice(-2000)}`);
}

const serve = (identity: string) =>
  startPullmap({
    tls: { certPath: pki.certPath, keyPath: pki.keyPath, caPem: pki.caPem },
    args: [
      ...['--maps-from', 'cluster', '--kubeconfig', kube.kubeconfigPath, '--lease-namespace', 'default'],
      ...['--identity', identity, '--plain-http', origin.host, '--plain-http', mirror.host],
    ],
  });

before(async () => {
  dir = await tempDir('e2e-fill-follower');
  pki = await makePki(dir.path);
  [kube, origin, mirror] = await Promise.all([startKube(), startRegistry(), startRegistry()]);
  await installCrds(kube);
  await pushImage(origin, 'team/app', '1', app);
  replicas.push(await serve('leader'));
  for (let i = 0; i < 100 && !leads(replicas[0]!); i++) await sleep(100);
  replicas.push(await serve('follower'));
  await kube.kubectl(['apply', '-f', '-'], stringify(podWebhook(replicas[1]!, pki.caPem)));
});

after(async () => {
  await Promise.all(replicas.map((r) => r.stop()));
  await kube?.stop();
  await Promise.all([origin?.close(), mirror?.close()]);
  await dir?.remove();
});

describe('a fill across replicas', () => {
  it("the replica that does not lead maps the next pod to the mirror as soon as the leader's copy is in status", async () => {
    const [leader, follower] = replicas as [Pullmap, Pullmap];
    assert.ok(leads(leader), 'the first replica leads');
    assert.ok(!leads(follower));
    await kube.kubectl(
      ['apply', '-f', '-'],
      stringify({
        apiVersion: 'pullmap.dev/v1alpha1',
        kind: 'ClusterImageMap',
        metadata: { name: 'edge' },
        spec: {
          existence: { negativeTTL: '10m' },
          mappings: [
            {
              from: `${origin.host}/team/`,
              to: `${mirror.host}/edge/`,
              when: 'IfExists',
              fill: { enabled: true },
            },
          ],
        },
      }),
    );
    const core = kube.kubeConfig().makeApiClient(CoreV1Api);
    const ns = await kube.createNamespace({ prefix: 'edge' });
    const createPod = async (image: string) =>
      (
        await core.createNamespacedPod({
          namespace: ns,
          body: { metadata: { generateName: 'p-' }, spec: { containers: [{ name: 'c', image }] } },
        })
      ).spec?.containers[0]?.image;
    const source = `${origin.host}/team/app:1`;
    const target = `${mirror.host}/edge/app:1`;
    // Pod 1 through the follower (once its watch has the map): the mirror lacks the image, kept.
    await until(
      'the follower asked the mirror',
      async () => {
        assert.equal(await createPod(source), source);
        return follower.metric(
          `pullmap_existence_probes_total{registry="${mirror.host}",outcome="NotFound"}`,
        );
      },
      100,
    );
    const filled = await until('the leader filled the mirror', () => rawDigest(target), 300);
    assert.equal(filled, app.manifest.digest);
    // Pod 2 through the follower: mapped within seconds, far inside the ten-minute negative TTL.
    await until(
      'the follower maps to the mirror',
      async () => ((await createPod(source)) === target ? true : undefined),
      50,
    );
  });
});
