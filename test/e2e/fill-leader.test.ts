// The fill loop across a leader change: two `pullmap serve --maps-from cluster` replicas, the leader is
// killed (SIGKILL) while its copy is uploading blobs; nothing is tagged or pushed by digest at the
// target until the next leader, which takes the same work from the pods, finishes the copy.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { CoreV1Api } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { type Blob, buildImage, pushBlob, pushManifest, sha256 } from '../harness/images.ts';
import { installCrds, type Kube, startKube } from '../harness/kube.ts';
import { type Pullmap, startPullmap } from '../harness/pullmap.ts';
import { startRegistry, type TestRegistry } from '../harness/registry.ts';
import { rawDigest } from '../mirror/skopeo.ts';

let kube: Kube;
let origin: TestRegistry;
let mirror: TestRegistry;
const replicas: Pullmap[] = [];
let digest: string;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** An image whose layers take a while to upload: the small one lands first, the big ones are in flight. */
async function pushSlowImage(registry: TestRegistry): Promise<string> {
  const base = buildImage();
  const layers: Blob[] = [1, 48, 48].map((mb) => {
    const bytes = randomBytes(mb * 1024 * 1024);
    return {
      mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
      digest: sha256(bytes),
      size: bytes.length,
      bytes,
    };
  });
  for (const b of [...layers, base.config]) await pushBlob(registry, 'team/big', b);
  const d = (b: Blob) => ({ mediaType: b.mediaType, digest: b.digest, size: b.size });
  const bytes = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: base.manifest.mediaType,
      config: d(base.config),
      layers: layers.map(d),
    }),
  );
  return pushManifest(registry, 'team/big', '1', {
    mediaType: base.manifest.mediaType,
    bytes,
    digest: sha256(bytes),
    size: bytes.length,
  });
}

const serve = (identity: string) =>
  startPullmap({
    args: [
      ...['--maps-from', 'cluster', '--kubeconfig', kube.kubeconfigPath, '--lease-namespace', 'default'],
      ...['--identity', identity, '--plain-http', origin.host, '--plain-http', mirror.host],
    ],
  });

const leads = (p: Pullmap) => p.logs().some((l) => l.msg === 'became leader');

before(async () => {
  [kube, origin, mirror] = await Promise.all([startKube(), startRegistry(), startRegistry()]);
  await installCrds(kube);
  digest = await pushSlowImage(origin);
  replicas.push(await serve('first'));
  for (let i = 0; i < 100 && !leads(replicas[0]!); i++) await sleep(100);
  replicas.push(await serve('second'));
});

after(async () => {
  await Promise.all(replicas.map((r) => r.stop()));
  await kube?.stop();
  await Promise.all([origin?.close(), mirror?.close()]);
});

describe('the fill loop across a leader change', () => {
  it('the next leader finishes a copy the killed one started; nothing is tagged in between', async () => {
    const [first, second] = replicas as [Pullmap, Pullmap];
    assert.ok(leads(first), 'the first replica leads');
    assert.ok(!leads(second));
    const ns = await kube.createNamespace({ prefix: 'edge' });
    await kube.kubectl(
      ['apply', '-f', '-'],
      stringify({
        apiVersion: 'pullmap.dev/v1alpha1',
        kind: 'ClusterImageMap',
        metadata: { name: 'edge' },
        spec: {
          mappings: [{ from: `${origin.host}/team/`, to: `${mirror.host}/edge/`, fill: { enabled: true } }],
        },
      }),
    );
    const core = kube.kubeConfig().makeApiClient(CoreV1Api);
    await core.createNamespacedPod({
      namespace: ns,
      body: {
        metadata: { name: 'app' },
        spec: { containers: [{ name: 'c', image: `${origin.host}/team/big:1` }] },
      },
    });
    // The leader's first finished blob upload: the copy is under way. Kill it there.
    const uploaded = { method: 'PUT', uri: '/v2/edge/big/blobs/uploads/', status: 201 };
    for (let i = 0; i < 600 && (await mirror.count(uploaded)) === 0; i++) await sleep(50);
    assert.ok((await mirror.count(uploaded)) > 0, 'the first leader started uploading');
    process.kill(first.daemon.pid, 'SIGKILL');
    const target = `${mirror.host}/edge/big:1`;
    await assert.rejects(rawDigest(target), 'no tag for a copy cut short');
    await assert.rejects(rawDigest(`${mirror.host}/edge/big@${digest}`), 'no manifest either');
    assert.equal(await mirror.count({ method: 'PUT', uri: '/v2/edge/big/manifests/' }), 0);
    // The second replica takes the Lease once it expires and derives the same copy from the pod.
    let copied: string | undefined;
    for (let i = 0; i < 300 && copied === undefined; i++) {
      copied = await rawDigest(target).catch(() => undefined);
      if (copied === undefined) await sleep(200);
    }
    assert.equal(
      copied,
      digest,
      `the second leader finished the copy\n${second.daemon.output().slice(-3000)}`,
    );
    assert.ok(leads(second));
    const puts = await mirror.requests({ method: 'PUT', uri: '/v2/edge/big/manifests/' });
    assert.deepEqual(
      puts.map((p) => p.uri.split('/').pop()),
      [digest, '1'],
      'one manifest by digest, then the tag',
    );
  });
});
