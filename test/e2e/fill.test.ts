// The fill loop in `pullmap serve --maps-from cluster` against a real kube-apiserver and docker-registry:
// a pod admitted with an image the mirror lacks gets the mirror filled by the leader, and the next pod is
// mapped there at once (the existence answer was refreshed); a routed image is filled with the map's
// push Secret; a refusing target shows up in status.fill and as an event; pods that ran before their map
// are filled too; and no map borrows credentials it may not use (no confused deputy).
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CoreV1Api } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { zarfTag } from '../../src/core/mapping/zarf.ts';
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
let pullmap: Pullmap;
let core: CoreV1Api;
let origin: TestRegistry;
let mirror: TestRegistry;
let locked: TestRegistry;
/** A registry pullmap's own --docker-config may push to. */
let guarded: TestRegistry;
const app = buildImage({ files: { 'app.txt': 'filled\n' } });

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: string, probe: () => Promise<T | undefined>, tries = 300): Promise<T> {
  for (let i = 0; i < tries; i++) {
    const got = await probe().catch(() => undefined);
    if (got !== undefined) return got;
    await sleep(200);
  }
  throw new Error(`${what} did not happen\n${pullmap.daemon.output().slice(-4000)}`);
}

before(async () => {
  dir = await tempDir('e2e-fill');
  pki = await makePki(dir.path);
  [kube, origin, mirror, locked, guarded] = await Promise.all([
    startKube(),
    startRegistry(),
    startRegistry(),
    startRegistry({ auth: { kind: 'htpasswd', users: { pusher: 'push-secret' } } }),
    startRegistry({ auth: { kind: 'htpasswd', users: { pullmap: 'own-secret' } } }),
  ]);
  core = kube.kubeConfig().makeApiClient(CoreV1Api);
  await installCrds(kube);
  await pushImage(origin, 'team/app', '1', app);
  await pushImage(origin, 'routed/app', '1', app);
  await pushImage(origin, 'refused/app', '1', app);
  await pushImage(locked, 'private/app', '1', app);
  await pushImage(locked, 'secret/app', '1', app);
  for (const repo of ['early', 'deputy', 'own', 'ownok']) await pushImage(origin, `${repo}/app`, '1', app);
  const dockerConfig = join(dir.path, 'docker-config.json');
  const own = Buffer.from('pullmap:own-secret').toString('base64');
  await writeFile(dockerConfig, JSON.stringify({ auths: { [guarded.host]: { auth: own } } }));
  pullmap = await startPullmap({
    tls: { certPath: pki.certPath, keyPath: pki.keyPath, caPem: pki.caPem },
    args: [
      ...['--maps-from', 'cluster', '--kubeconfig', kube.kubeconfigPath, '--lease-namespace', 'default'],
      ...[origin, mirror, locked, guarded].flatMap((r) => ['--plain-http', r.host]),
      ...['--docker-config', dockerConfig],
    ],
  });
  await kube.kubectl(['apply', '-f', '-'], stringify(podWebhook(pullmap, pki.caPem)));
});

after(async () => {
  await pullmap?.stop();
  await kube?.stop();
  await Promise.all([origin?.close(), mirror?.close(), locked?.close(), guarded?.close()]);
  await dir?.remove();
});

const createPod = async (namespace: string, image: string): Promise<string | undefined> => {
  const created = await core.createNamespacedPod({
    namespace,
    body: { metadata: { generateName: 'p-' }, spec: { containers: [{ name: 'c', image }] } },
  });
  return created.spec?.containers[0]?.image;
};

const fillStatus = async (name: string, namespace?: string): Promise<Record<string, unknown> | undefined> => {
  const kind = namespace === undefined ? ['clusterimagemap'] : ['imagemap', '-n', namespace];
  const text = await kube.kubectl(['get', ...kind, name, '-o', 'jsonpath={.status.fill}']);
  return text === '' ? undefined : (JSON.parse(text) as Record<string, unknown>);
};

/** The status.fill entry of `image` once it has left Pending. */
const settled = async (image: string, map: string, namespace?: string): Promise<Record<string, string>> =>
  until(`${image} settled in ${map}'s status`, async () => {
    const images = ((await fillStatus(map, namespace))?.images ?? []) as Record<string, string>[];
    const found = images.find((i) => i.image === image);
    return found && found.state !== 'Pending' ? found : undefined;
  });

describe('the fill loop', () => {
  it('fills the mirror from a pod that kept its original image; the next pod is mapped there', async () => {
    const ns = await kube.createNamespace({ prefix: 'edge' });
    const source = `${origin.host}/team/app:1`;
    const target = `${mirror.host}/zarf/team/app:${zarfTag(`${origin.host}/team/app`, '1')}`;
    await kube.kubectl(
      ['apply', '-f', '-'],
      stringify({
        apiVersion: 'pullmap.dev/v1alpha1',
        kind: 'ClusterImageMap',
        metadata: { name: 'edge' },
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
      }),
    );
    // Pod 1: the mirror lacks the image, so the webhook keeps the original (once its watch has the map).
    assert.equal(await createPod(ns, source), source);
    // The leader copies it: the mirror serves the same manifest bytes under the zarf tag.
    assert.equal(await until('the mirror filled', () => rawDigest(target)), app.manifest.digest);
    // Pod 2 is mapped to the mirror straight away: the cached "missing" was forgotten when the copy finished.
    assert.equal(
      await until(
        'pod 2 mapped',
        async () => ((await createPod(ns, source)) === target ? target : undefined),
        20,
      ),
      target,
    );
    const status = await until('status.fill written', async () => {
      const s = await fillStatus('edge');
      return s && s.filled === 1 ? s : undefined;
    });
    assert.equal(status.failed, 0);
    const images = status.images as Record<string, string>[];
    assert.equal(images[0]?.image, source);
    assert.equal(images[0]?.target, target);
    assert.equal(images[0]?.state, 'Filled');
    assert.equal(images[0]?.digest, app.manifest.digest);
    assert.equal(
      await pullmap.metric(`pullmap_fill_copies_total{registry="${mirror.host}",result="copied"}`),
      1,
    );
    assert.equal(
      await pullmap.metric(`pullmap_fill_bytes_total{registry="${mirror.host}"}`),
      app.layer.size + app.config.size,
    );
  });

  it("fills a routed image with the map's push Secret, and reports a refusing target in status and events", async () => {
    const ns = await kube.createNamespace({ prefix: 'routed' });
    const auth = Buffer.from('pusher:push-secret').toString('base64');
    await kube.kubectl(
      ['apply', '-f', '-'],
      [
        {
          apiVersion: 'v1',
          kind: 'Secret',
          metadata: { name: 'locked-push', namespace: 'default' },
          type: 'kubernetes.io/dockerconfigjson',
          data: {
            '.dockerconfigjson': Buffer.from(JSON.stringify({ auths: { [locked.host]: { auth } } })).toString(
              'base64',
            ),
          },
        },
        {
          apiVersion: 'pullmap.dev/v1alpha1',
          kind: 'ClusterImageMap',
          metadata: { name: 'routed' },
          spec: {
            mappings: [
              {
                from: `${origin.host}/routed/`,
                to: `${locked.host}/routed/`,
                fill: { enabled: true, secret: 'locked-push' },
              },
              // No Secret: pullmap's own (anonymous) access is refused by the registry.
              { from: `${origin.host}/refused/`, to: `${locked.host}/refused/`, fill: { enabled: true } },
              // A push Secret that does not exist: named in status, nothing sent to any registry.
              {
                from: `${origin.host}/nosecret/`,
                to: `${locked.host}/nosecret/`,
                fill: { enabled: true, secret: 'no-such-secret' },
              },
            ],
          },
        },
      ]
        .map((o) => stringify(o))
        .join('---\n'),
    );
    const routed = `${locked.host}/routed/app:1`;
    assert.equal(
      await until(
        'routed',
        async () => ((await createPod(ns, `${origin.host}/routed/app:1`)) === routed ? routed : undefined),
        50,
      ),
      routed,
    );
    await createPod(ns, `${origin.host}/refused/app:1`);
    await createPod(ns, `${origin.host}/nosecret/app:1`);
    assert.equal(
      await until('the locked registry filled', () => rawDigest(routed, 'pusher:push-secret')),
      app.manifest.digest,
    );
    const status = await until('status with the failure', async () => {
      const s = await fillStatus('routed');
      return s && s.failed === 2 && s.filled === 1 ? s : undefined;
    });
    const failed = (status.images as Record<string, string>[]).filter((i) => i.state === 'Failed');
    const refused = failed.find((i) => i.image === `${origin.host}/refused/app:1`);
    assert.match(refused?.lastError ?? '', /^TARGET_REFUSED: .*requires credentials/);
    const unreadable = failed.find((i) => i.image === `${origin.host}/nosecret/app:1`);
    assert.match(
      unreadable?.lastError ?? '',
      /^CREDENTIALS_UNREADABLE: fill\.secret default\/no-such-secret: cannot read it: .*not found/,
    );
    const events = await until('the FillFailed event', async () => {
      const text = await kube.kubectl([
        'get',
        'events',
        '-n',
        'default',
        '--field-selector',
        'reason=FillFailed',
        '-o',
        'name',
      ]);
      return text.trim() === '' ? undefined : text;
    });
    assert.ok(events.length > 0);
  });

  it("reads an ImageMap's source with its pods' pull secrets", async () => {
    const ns = await kube.createNamespace({ prefix: 'tenant' });
    const auth = Buffer.from('pusher:push-secret').toString('base64');
    const config = Buffer.from(JSON.stringify({ auths: { [locked.host]: { auth } } })).toString('base64');
    await kube.kubectl(
      ['apply', '-f', '-'],
      [
        {
          apiVersion: 'v1',
          kind: 'Secret',
          metadata: { name: 'origin-pull', namespace: ns },
          type: 'kubernetes.io/dockerconfigjson',
          data: { '.dockerconfigjson': config },
        },
        {
          apiVersion: 'pullmap.dev/v1alpha1',
          kind: 'ImageMap',
          metadata: { name: 'tenant', namespace: ns },
          spec: {
            mappings: [
              { from: `${locked.host}/private/`, to: `${mirror.host}/tenant/`, fill: { enabled: true } },
            ],
          },
        },
      ]
        .map((o) => stringify(o))
        .join('---\n'),
    );
    const target = `${mirror.host}/tenant/app:1`;
    await until('the pod mapped', async () => {
      const created = await core.createNamespacedPod({
        namespace: ns,
        body: {
          metadata: { generateName: 'p-' },
          spec: {
            imagePullSecrets: [{ name: 'origin-pull' }],
            containers: [{ name: 'c', image: `${locked.host}/private/app:1` }],
          },
        },
      });
      return created.spec?.containers[0]?.image === target ? true : undefined;
    });
    // pullmap itself has no credentials for the private origin: only the pod's secret can read it.
    assert.equal(
      await until('the mirror filled from the private origin', () => rawDigest(target)),
      app.manifest.digest,
    );
  });

  it('fills the images of pods that were running before their map asked for it (catch-up), once for all of them', async () => {
    const namespaces = [
      await kube.createNamespace({ prefix: 'early' }),
      await kube.createNamespace({ prefix: 'early' }),
    ];
    const source = `${origin.host}/early/app:1`;
    for (const ns of [...namespaces, namespaces[0]!])
      assert.equal(await createPod(ns, source), source, 'no map applies yet');
    await kube.kubectl(
      ['apply', '-f', '-'],
      stringify({
        apiVersion: 'pullmap.dev/v1alpha1',
        kind: 'ClusterImageMap',
        metadata: { name: 'late' },
        spec: {
          mappings: [
            {
              from: `${origin.host}/early/`,
              to: `${mirror.host}/late/`,
              when: 'IfExists',
              fill: { enabled: true },
            },
          ],
        },
      }),
    );
    assert.equal(
      await until('the running pod filled', () => rawDigest(`${mirror.host}/late/app:1`)),
      app.manifest.digest,
    );
    assert.equal((await settled(source, 'late')).state, 'Filled');
    // Three pods, one copy: the manifest by digest, then the tag, once.
    const puts = await mirror.requests({ method: 'PUT', uri: '/v2/late/app/manifests/' });
    assert.deepEqual(
      puts.map((p) => p.uri.split('/').pop()),
      [app.manifest.digest, '1'],
    );
  });

  it("no confused deputy: an ImageMap pushes only with its own namespace's Secret, never pullmap's credentials, and a ClusterImageMap never reads with a tenant's pull secrets", async () => {
    const ns = await kube.createNamespace({ prefix: 'deputy' });
    const pull = Buffer.from('pusher:push-secret').toString('base64');
    const dockerconfig = (host: string) => ({
      '.dockerconfigjson': Buffer.from(JSON.stringify({ auths: { [host]: { auth: pull } } })).toString(
        'base64',
      ),
    });
    await kube.kubectl(
      ['apply', '-f', '-'],
      [
        // Push credentials for `locked` in pullmap's namespace: a ClusterImageMap's to name, not a tenant's.
        {
          apiVersion: 'v1',
          kind: 'Secret',
          metadata: { name: 'pm-push', namespace: 'default' },
          type: 'kubernetes.io/dockerconfigjson',
          data: dockerconfig(locked.host),
        },
        // The tenant's own pull secret, which can read `locked`.
        {
          apiVersion: 'v1',
          kind: 'Secret',
          metadata: { name: 'tenant-pull', namespace: ns },
          type: 'kubernetes.io/dockerconfigjson',
          data: dockerconfig(locked.host),
        },
        {
          apiVersion: 'pullmap.dev/v1alpha1',
          kind: 'ImageMap',
          metadata: { name: 'deputy', namespace: ns },
          spec: {
            mappings: [
              {
                from: `${origin.host}/deputy/`,
                to: `${locked.host}/deputy/`,
                fill: { enabled: true, secret: 'pm-push' },
              },
              // pullmap's own --docker-config may push to `guarded`; a tenant's map must not use it.
              { from: `${origin.host}/own/`, to: `${guarded.host}/own/`, fill: { enabled: true } },
            ],
          },
        },
        {
          apiVersion: 'pullmap.dev/v1alpha1',
          kind: 'ClusterImageMap',
          metadata: { name: 'shared' },
          spec: {
            mappings: [
              { from: `${locked.host}/secret/`, to: `${mirror.host}/shared/`, fill: { enabled: true } },
              // The cluster's own map may push with pullmap's credentials: the control for the refusal.
              { from: `${origin.host}/ownok/`, to: `${guarded.host}/ownok/`, fill: { enabled: true } },
            ],
          },
        },
      ]
        .map((o) => stringify(o))
        .join('---\n'),
    );
    for (const image of [
      `${origin.host}/deputy/app:1`,
      `${origin.host}/own/app:1`,
      `${origin.host}/ownok/app:1`,
    ])
      await createPod(ns, image);
    await core.createNamespacedPod({
      namespace: ns,
      body: {
        metadata: { generateName: 'p-' },
        spec: {
          imagePullSecrets: [{ name: 'tenant-pull' }],
          containers: [{ name: 'c', image: `${locked.host}/secret/app:1` }],
        },
      },
    });

    assert.equal((await settled(`${origin.host}/ownok/app:1`, 'shared')).state, 'Filled');
    assert.equal(await rawDigest(`${guarded.host}/ownok/app:1`, 'pullmap:own-secret'), app.manifest.digest);

    const foreign = await settled(`${origin.host}/deputy/app:1`, 'deputy', ns);
    assert.equal(foreign.state, 'Failed');
    assert.match(
      foreign.lastError ?? '',
      new RegExp(`^CREDENTIALS_UNREADABLE: fill\\.secret ${ns}/pm-push: `),
    );
    const own = await settled(`${origin.host}/own/app:1`, 'deputy', ns);
    assert.equal(own.state, 'Failed');
    assert.match(own.lastError ?? '', /^TARGET_REFUSED: /);
    const tenants = await settled(`${locked.host}/secret/app:1`, 'shared');
    assert.equal(tenants.state, 'Failed');
    assert.match(tenants.lastError ?? '', /^SOURCE_FAILED: /);

    // Nothing reached the targets the tenant named.
    await assert.rejects(rawDigest(`${locked.host}/deputy/app:1`, 'pusher:push-secret'));
    await assert.rejects(rawDigest(`${guarded.host}/own/app:1`, 'pullmap:own-secret'));
    await assert.rejects(rawDigest(`${mirror.host}/shared/app:1`));
    const refusals = await pullmap.metric(
      `pullmap_fill_failures_total{registry="${guarded.host}",code="TARGET_REFUSED"}`,
    );
    assert.ok((refusals ?? 0) >= 1, 'the refusal is counted by target registry and code');
  });
});
