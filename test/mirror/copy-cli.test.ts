// `pullmap copy` against real docker-registry instances: targets from the maps (prefix and zarf naming,
// the same ones explain computes), images from manifests, progress and summary, exit codes.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { run } from '../../src/cli/run.ts';
import { zarfTag } from '../../src/core/mapping/zarf.ts';
import { skopeoCopy, unpackOci } from '../harness/cache.ts';
import { buildImage, buildIndex, pushImage, pushIndex } from '../harness/images.ts';
import { type TempDir, tempDir } from '../harness/process.ts';
import { startRegistry, type TestRegistry } from '../harness/registry.ts';
import { rawDigest } from './skopeo.ts';

async function pullmap(
  args: string[],
  stdin = '',
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = new PassThrough();
  const err = new PassThrough();
  const chunks = { out: [] as Buffer[], err: [] as Buffer[] };
  out.on('data', (c: Buffer) => chunks.out.push(c));
  err.on('data', (c: Buffer) => chunks.err.push(c));
  const input = new PassThrough();
  input.end(stdin);
  const code = await run(args, { stdin: input, stdout: out, stderr: err, env: {} });
  return { code, stdout: Buffer.concat(chunks.out).toString(), stderr: Buffer.concat(chunks.err).toString() };
}

describe('pullmap copy', () => {
  let origin: TestRegistry;
  let mirror: TestRegistry;
  let locked: TestRegistry;
  let work: TempDir;
  let config: string;
  const app = buildImage({ files: { 'app.txt': 'app\n' } });
  const multi = buildIndex([
    { os: 'linux', architecture: 'amd64' },
    { os: 'linux', architecture: 'arm64' },
  ]);

  before(async () => {
    [origin, mirror, locked, work] = await Promise.all([
      startRegistry(),
      startRegistry(),
      startRegistry({ auth: { kind: 'htpasswd', users: { someone: 'else' } } }),
      tempDir('pullmap-copy-cli-'),
    ]);
    await pushImage(origin, 'team/app', '1', app);
    await pushIndex(origin, 'team/multi', '2', multi);
    await pushImage(origin, 'refused/app', '1', app);
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
`,
    );
  });
  after(async () => {
    await Promise.all([origin?.close(), mirror?.close(), locked?.close(), work?.remove()]);
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
});
