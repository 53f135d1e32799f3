// The container image of scripts/build-image.sh: its config agrees with the Dockerfile, it holds only
// what it should, a second build of the same commit is byte-identical, and it runs under containerd
// (runc, its own containerd with the CRI plugin off) as the non-root user.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Containerd, closeAll, startContainerd } from '../harness/cache.ts';
import {
  imageRepository,
  type PullmapImage,
  pullmapImage,
  runBuildImage,
  type UnpackedImage,
  unpackImage,
} from '../harness/image.ts';
import { execFileAsync, type TempDir, tempDir } from '../harness/process.ts';
import { startRegistry, type TestRegistry } from '../harness/registry.ts';

const repo = new URL('../../', import.meta.url);
const { version } = JSON.parse(await readFile(new URL('package.json', repo), 'utf8')) as { version: string };

/** The Dockerfile's final-stage instruction `name` (the last one), JSON arrays parsed. */
async function dockerfile(name: string): Promise<string | string[]> {
  const lines = (await readFile(new URL('Dockerfile', repo), 'utf8')).split('\n');
  const line = lines.findLast((l) => l.startsWith(`${name} `));
  assert.ok(line, `the Dockerfile has a ${name} instruction`);
  const value = line.slice(name.length + 1).trim();
  return value.startsWith('[') ? (JSON.parse(value) as string[]) : value;
}

const sha256 = async (path: string): Promise<string> =>
  createHash('sha256')
    .update(await readFile(path))
    .digest('hex');

// Everything the image may hold; any other entry (a shell, apt, dpkg, docs, man pages) fails the test.
const allowed: readonly RegExp[] = [
  /^app\/(dist\/((chunks\/)?[\w-]+\.js(\.map)?|chunks\/)?)?$/,
  /^etc\/(debian_version|group|nsswitch\.conf|os-release|passwd|ssl\/(certs\/(ca-certificates\.crt)?)?)?$/,
  /^home\/(nonroot\/)?$/,
  /^lib\/([\w-]+-linux-gnu\/([\w.+-]+\.so[\d.]*)?)?$/,
  /^lib64\/(ld-linux[\w.-]*\.so\.\d)?$/,
  /^nodejs\/(LICENSE|bin\/(node)?)?$/,
  /^(root|tmp)\/$/,
  /^usr\/(lib\/(os-release|[\w-]+-linux-gnu\/(libstdc\+\+\.so\.6[\d.]*)?)?|share\/)?$/,
  /^usr\/share\/doc\/([\w.+-]+\/(copyright)?)?$/,
  /^usr\/share\/zoneinfo\/.*$/,
  /^var\/(lib\/(dpkg\/(status\.d\/[\w.+-]*)?)?)?$/,
];

describe('container image (scripts/build-image.sh)', () => {
  let image: PullmapImage;
  let unpacked: UnpackedImage;
  let containerd: Containerd;
  let work: TempDir;
  let ref: string;

  before(async () => {
    image = await pullmapImage();
    unpacked = await unpackImage(image);
    work = await tempDir('image-test');
    containerd = await startContainerd();
    // The archive's ref name is only the tag; --base-name gives it a repository.
    await containerd.ctr(['images', 'import', '--base-name', imageRepository, image.archive]);
    ref = `${imageRepository}:${image.tag}`;
    assert.match(await containerd.ctr(['images', 'ls', '-q']), new RegExp(`^${ref}$`, 'm'));
  });
  after(() => closeAll(containerd, unpacked?.dir, work));

  /** Runs the image under runc; `args` replace the whole command line (ctr does not keep the entrypoint). */
  let runs = 0;
  const run = (args: readonly string[] = []): Promise<string> =>
    containerd.ctr(['run', '--rm', ref, `pullmap-image-${process.pid}-${runs++}`, ...args]);

  it('has the Dockerfile config: user 65532, entrypoint with its Node flags, cmd, workdir, version', async () => {
    const { config, created } = unpacked.config;
    assert.equal(config.User, '65532:65532');
    assert.equal(config.User, await dockerfile('USER'));
    assert.deepEqual(config.Entrypoint, [
      '/nodejs/bin/node',
      '--max-semi-space-size=2',
      '--heap-growing-percent=50',
      '--no-concurrent-recompilation',
      '--liftoff-only',
      '/app/dist/pullmap.js',
    ]);
    assert.deepEqual(config.Entrypoint, await dockerfile('ENTRYPOINT'));
    assert.deepEqual(config.Cmd, await dockerfile('CMD'));
    assert.equal(config.WorkingDir, await dockerfile('WORKDIR'));
    assert.equal(image.tag, version);
    assert.equal(config.Labels?.['org.opencontainers.image.version'], version);
    // created is the commit time, not the build time.
    const { stdout } = await execFileAsync('git', ['log', '-1', '--format=%ct'], { cwd: repo });
    assert.equal(created, new Date(Number(stdout.trim()) * 1000).toISOString().replace('.000Z', 'Z'));
  });

  it('holds the Debian runtime, Node and the bundle, and nothing else', async () => {
    const entries = unpacked.layers.flat();
    const paths = new Set(entries.map((e) => e.path));
    const unexpected = [...paths].filter((p) => !allowed.some((pattern) => pattern.test(p)));
    assert.deepEqual(unexpected, [], 'entries outside the allowlist');
    for (const path of [
      'nodejs/bin/node',
      'app/dist/pullmap.js',
      'etc/passwd',
      'etc/ssl/certs/ca-certificates.crt',
      'usr/share/zoneinfo/Europe/Berlin',
      'var/lib/dpkg/status.d/libc6',
      'lib64/ld-linux-x86-64.so.2',
    ]) {
      assert.ok(paths.has(path), `${path} is in the image`);
    }
    for (const absent of ['bin/sh', 'usr/bin/apt', 'usr/bin/dpkg', 'usr/bin/openssl', 'usr/bin/perl']) {
      assert.ok(!paths.has(absent), `${absent} is not in the image`);
    }
    // Only the user's home belongs to the user: the bundle and Node are read-only for it.
    const owners = entries.filter((e) => e.owner !== '0/0').map((e) => `${e.path} ${e.owner} ${e.mode}`);
    assert.deepEqual(owners, ['home/nonroot/ 65532/65532 drwx------']);
    assert.equal(entries.find((e) => e.path === 'tmp/')?.mode, 'drwxrwxrwt');
    // Three layers: Debian, Node, the bundle (a new pullmap version re-ships only the last).
    assert.deepEqual(
      unpacked.layers.map((layer) => layer[0]?.path.split('/')[0]),
      ['etc', 'nodejs', 'app'],
    );
    const { stdout: passwd } = await execFileAsync('tar', ['-xOzf', unpacked.blobs[0]!, 'etc/passwd']);
    assert.match(passwd, /^nonroot:x:65532:65532:nonroot:\/home\/nonroot:\/sbin\/nologin$/m);
  });

  it('runs under containerd: --version, explain nginx, and the default --help', async () => {
    const entrypoint = unpacked.config.config.Entrypoint ?? [];
    assert.ok((await run([...entrypoint, '--version'])).includes(version));
    const explained = await run([...entrypoint, 'explain', 'nginx']);
    assert.match(explained, /docker\.io\/library\/nginx:latest/);
    // No arguments: containerd runs the image's own entrypoint and cmd.
    assert.match(await run(), /^pullmap \S+: decides where every container image is pulled from/m);
  });

  it('runs as nonroot (65532) from /etc/passwd, with a writable /tmp and a read-only /app', async () => {
    const script = `const fs = require('node:fs'), os = require('node:os');
const writable = (p) => { try { fs.accessSync(p, fs.constants.W_OK); return true; } catch { return false; } };
const u = os.userInfo();
console.log(JSON.stringify({ uid: u.uid, gid: u.gid, user: u.username, home: u.homedir, cwd: process.cwd(),
  tmp: writable('/tmp'), app: writable('/app/dist'), ca: fs.statSync(process.env.SSL_CERT_FILE).size > 100000 }));`;
    const out = JSON.parse(await run(['/nodejs/bin/node', '-e', script]));
    assert.deepEqual(out, {
      uid: 65532,
      gid: 65532,
      user: 'nonroot',
      home: '/home/nonroot',
      cwd: '/app',
      tmp: true,
      app: false,
      ca: true,
    });
  });

  it('is reproducible: a second build writes the same archive byte for byte, and --push keeps the digest', async () => {
    let registry: TestRegistry | undefined;
    try {
      registry = await startRegistry();
      const second = join(work.path, 'second.oci.tar');
      const pushed = `${registry.host}/pullmap:${version}`;
      assert.equal(await runBuildImage(['--output', second, '--push', pushed]), second);
      assert.equal(await sha256(second), await sha256(image.archive));
      const response = await fetch(`${registry.url}/v2/pullmap/manifests/${version}`, {
        method: 'HEAD',
        headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
      });
      assert.equal(response.status, 200);
      assert.equal(response.headers.get('docker-content-digest'), image.digest);
    } finally {
      await registry?.close();
    }
  });
});
