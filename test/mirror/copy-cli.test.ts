// `pullmap copy` against real docker-registry instances: targets from the maps (prefix and zarf naming,
// the same ones explain computes), images from manifests, progress and summary, exit codes.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { zarfTag } from '../../src/core/mapping/zarf.ts';
import { skopeoCopy, unpackOci } from '../harness/cache.ts';
import { runInProcess } from '../harness/cli.ts';
import { buildImage, buildIndex, pushImage, pushIndex } from '../harness/images.ts';
import { type TempDir, tempDir } from '../harness/process.ts';
import { startRegistry, type TestRegistry } from '../harness/registry.ts';
import { rawDigest } from './skopeo.ts';

const pullmap = (args: string[], stdin = '') => runInProcess(args, { stdin });

describe('pullmap copy', () => {
  let origin: TestRegistry;
  let mirror: TestRegistry;
  let locked: TestRegistry;
  /** HTTPS with a private CA and htpasswd: reachable only with --registry-ca and --docker-config. */
  let secure: TestRegistry;
  let work: TempDir;
  let config: string;
  const app = buildImage({ files: { 'app.txt': 'app\n' } });
  const multi = buildIndex([
    { os: 'linux', architecture: 'amd64' },
    { os: 'linux', architecture: 'arm64' },
  ]);

  before(async () => {
    [origin, mirror, locked, secure, work] = await Promise.all([
      startRegistry(),
      startRegistry(),
      startRegistry({ auth: { kind: 'htpasswd', users: { someone: 'else' } } }),
      startRegistry({ tls: true, auth: { kind: 'htpasswd', users: { pusher: 'push-secret' } } }),
      tempDir('pullmap-copy-cli-'),
    ]);
    await pushImage(origin, 'team/app', '1', app);
    await pushIndex(origin, 'team/multi', '2', multi);
    await pushImage(origin, 'refused/app', '1', app);
    await pushImage(origin, 'secure/app', '1', app);
    config = join(work.path, 'maps.yaml');
    await writeFile(
      config,
      `apiVersion: pullmap.dev/v1alpha1
kind: ClusterImageMap
metadata: {name: edge}
spec:
  mappings:
    - from: ${origin.host}/team/
      to: ${mirror.host}/zarf/
      naming: zarf
      when: IfExists
    - from: ${origin.host}/refused/
      to: ${locked.host}/refused/
    - from: ${origin.host}/secure/
      to: ${secure.host}/secure/
`,
    );
  });
  after(async () => {
    await Promise.all([origin?.close(), mirror?.close(), locked?.close(), secure?.close(), work?.remove()]);
  });

  const flags = () => [
    '--config',
    config,
    '--plain-http',
    origin.host,
    '--plain-http',
    mirror.host,
    '--plain-http',
    locked.host,
  ];

  it('copies to the zarf-named target explain maps to, and explain then maps the image there', async () => {
    const res = await pullmap(['copy', `${origin.host}/team/app:1`, ...flags()]);
    assert.equal(res.code, 0, res.stderr);
    const target = `${mirror.host}/zarf/team/app:${zarfTag(`${origin.host}/team/app`, '1')}`;
    assert.match(
      res.stderr,
      new RegExp(`copy ${origin.host}/team/app:1 -> ${target.replace(/[.]/g, '\\.')}`),
    );
    assert.match(res.stderr, /summary: 1 copied, 0 already present/);
    assert.equal(await rawDigest(target), app.manifest.digest);
    const files = await unpackOci(await skopeoCopy(target, work.path));
    assert.equal(files['app.txt'], 'app\n');
    // The webhook's own decision now finds the image at that target (when: IfExists).
    const explained = await pullmap(['explain', `${origin.host}/team/app:1`, '-o', 'json', ...flags()]);
    assert.equal(JSON.parse(explained.stdout).mapped, target);
    const again = await pullmap(['copy', `${origin.host}/team/app:1`, ...flags()]);
    assert.match(again.stderr, /summary: 0 copied, 1 already present/);
  });

  it('takes the images of manifests on stdin, with a platform filter', async () => {
    const manifests = `apiVersion: v1
kind: Pod
metadata: {name: p, namespace: default}
spec:
  containers:
    - {name: a, image: "${origin.host}/team/multi:2"}
    - {name: b, image: "${origin.host}/team/multi@${multi.index.digest}"}
`;
    const res = await pullmap(['copy', '-f', '-', '--platform', 'linux/arm64', ...flags()], manifests);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stderr, /summary: 0 copied, 0 already present, 2 partial/);
    const arm = multi.images.find((i) => i.platform.architecture === 'arm64')!;
    assert.equal(
      await rawDigest(`${mirror.host}/zarf/team/multi@${arm.manifest.digest}`),
      arm.manifest.digest,
    );
    await assert.rejects(rawDigest(`${mirror.host}/zarf/team/multi@${multi.index.digest}`));
    const whole = await pullmap(['copy', `${origin.host}/team/multi@${multi.index.digest}`, ...flags()]);
    assert.equal(whole.code, 0, whole.stderr);
    assert.equal(await rawDigest(`${mirror.host}/zarf/team/multi@${multi.index.digest}`), multi.index.digest);
  });

  it('exits 1 with the reason when the target refuses the push, 2 on bad input', async () => {
    const res = await pullmap(['copy', `${origin.host}/refused/app:1`, ...flags()]);
    assert.equal(res.code, 1);
    assert.match(res.stderr, /FAILED .*TARGET_REFUSED: target: .*requires credentials/);
    assert.match(res.stderr, /1 failed/);
    assert.equal((await pullmap(['copy', 'Not/Valid:x', ...flags()])).code, 2);
    assert.equal(
      (await pullmap(['copy', `${origin.host}/team/app:1`, '--platform', 'amd64', ...flags()])).code,
      2,
    );
    assert.equal((await pullmap(['copy', `${origin.host}/team/app:1`])).code, 2);
  });

  it('takes a manifests file, and writes over TLS with --registry-ca and --docker-config credentials', async () => {
    const manifests = join(work.path, 'deploy.yaml');
    await writeFile(
      manifests,
      `apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  template:
    spec:
      containers:
        - {name: web, image: "${origin.host}/secure/app:1"}
`,
    );
    const auth = Buffer.from('pusher:push-secret').toString('base64');
    const dockerConfig = join(work.path, 'docker-config.json');
    await writeFile(dockerConfig, JSON.stringify({ auths: { [secure.host]: { auth } } }));
    const ca = secure.pki!.caCertPath;
    const base = ['copy', '-f', manifests, ...flags()];
    // Each flag is needed: without the CA the TLS handshake fails, without the credentials the push.
    const untrusted = await pullmap([...base, '--docker-config', dockerConfig]);
    assert.equal(untrusted.code, 1, untrusted.stderr);
    assert.match(untrusted.stderr, /FAILED .*TLS failed/);
    const anonymous = await pullmap([...base, '--registry-ca', ca]);
    assert.equal(anonymous.code, 1, anonymous.stderr);
    assert.match(anonymous.stderr, /FAILED .*TARGET_REFUSED/);
    const res = await pullmap([...base, '--registry-ca', ca, '--docker-config', dockerConfig]);
    assert.equal(res.code, 0, res.stderr);
    const target = `${secure.host}/secure/app:1`;
    // Progress per image and per blob, then the summary.
    assert.match(res.stderr, new RegExp(`blob ${app.layer.digest.slice(0, 19)} uploaded`));
    assert.match(res.stderr, /done .* copied sha256:[0-9a-f]{64} \(2 blobs uploaded/);
    assert.match(res.stderr, /summary: 1 copied, 0 already present, 0 partial \(platform filter\), 0 failed/);
    assert.equal(await rawDigest(target, 'pusher:push-secret'), app.manifest.digest);
  });
});
