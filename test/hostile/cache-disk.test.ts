// The cache when its disk does not cooperate (issue 21 §6), with a real docker-registry upstream and
// skopeo and curl as clients. On a small tmpfs a blob that does not fit is streamed through whole and
// verified, never cut after a 200, while /readyz and pullmap_cache_store_full say the store is full; a
// store remounted read-only answers a manifest miss with a clean 503, as a blob miss. Mounting needs
// root (the CI machine and the test VM run tests as root).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { embedRegistry } from '../../src/core/reference/index.ts';
import { skopeoCopy, startTestCache, type TestCache, untilNoDownloads } from '../harness/cache.ts';
import { type FaultyUpstream, startFaultyUpstream } from '../harness/faulty-upstream.ts';
import { type BuiltImage, buildImage, pushImage, sha256 } from '../harness/images.ts';
import { execFileAsync, requireCommand, type TempDir, tempDir } from '../harness/process.ts';
import { startRegistry, type TestRegistry } from '../harness/registry.ts';

const MiB = 2 ** 20;
/** An image whose layer is `mib` MiB of random (incompressible) bytes. */
const imageOf = (name: string, mib: number): BuiltImage =>
  buildImage({ files: { [`${name}.bin`]: randomBytes(Math.round(mib * MiB)) } });

async function mountTmpfs(at: string, size: string): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('this test mounts a tmpfs: run it as root');
  await mkdir(at, { recursive: true });
  await execFileAsync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', at]);
}

/**
 * The cache may still hold a file open for writing just after a pull (the last blob's rename, its
 * last-use record): the kernel then refuses the remount as busy, so it is tried again for a while.
 */
async function remountReadOnly(at: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await execFileAsync('mount', ['-o', 'remount,ro', at]);
      return;
    } catch (err) {
      if (attempt >= 50) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

async function unmount(at: string): Promise<void> {
  await execFileAsync('umount', [at]).catch(() => execFileAsync('umount', ['-l', at]).catch(() => {}));
}

/** The layer skopeo wrote into an OCI layout, byte for byte. */
async function layerIn(layout: string, image: BuiltImage): Promise<Buffer> {
  return readFile(join(layout, 'blobs', 'sha256', image.layer.digest.slice('sha256:'.length)));
}

async function curl(args: readonly string[]): Promise<{ status: number; body: Buffer }> {
  const out = await execFileAsync(requireCommand('curl'), ['-s', '-w', '\n%{http_code}', ...args], {
    encoding: 'buffer',
    maxBuffer: 64 * MiB,
  });
  const text = out.stdout as Buffer;
  const nl = text.lastIndexOf(0x0a);
  return { status: Number(text.subarray(nl + 1).toString()), body: text.subarray(0, nl) };
}

const metric = (text: string, name: string): string | undefined =>
  text
    .split('\n')
    .find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`))
    ?.split(' ')
    .at(-1);

describe('cache on a full disk (8 MiB tmpfs)', () => {
  let upstream: TestRegistry;
  let cache: TestCache;
  let work: TempDir;
  let mount: string;
  let prefix: string;
  const big = imageOf('big', 20);
  const mid1 = imageOf('mid1', 2.5);
  const mid2 = imageOf('mid2', 2.5);
  const small = buildImage({ files: { 'small.txt': 'fits\n' } });
  const late = buildImage({ files: { 'late.txt': 'after the disk filled up\n' } });

  before(async () => {
    upstream = await startRegistry();
    work = await tempDir('cache-disk-full');
    mount = join(work.path, 'store');
    await mountTmpfs(mount, '8m');
    for (const [name, image] of Object.entries({ big, mid1, mid2, small, late }))
      await pushImage(upstream, `team/${name}`, '1', image);
    cache = await startTestCache({
      upstreams: [{ host: upstream.host, plainHttp: true }],
      storage: { dir: mount },
    });
    prefix = `${cache.host}/${embedRegistry(upstream.host)}`;
  });
  after(async () => {
    await cache?.close();
    if (mount) await unmount(mount);
    await work?.remove();
    await upstream?.close();
  });

  const ready = () => curl([`${cache.url}/readyz`]);
  const metrics = async () => (await curl([`${cache.url}/metrics`])).body.toString();
  /**
   * Whether the store holds the image's layer, asked once no download is under way: a client has the
   * whole blob before its last writes, fsync and rename are done.
   */
  const storedBlob = async (image: BuiltImage): Promise<boolean> => {
    await untilNoDownloads(metrics);
    return existsSync(join(mount, 'blobs', 'sha256', image.layer.digest.slice('sha256:'.length)));
  };

  it('pulls a blob larger than the disk whole and verified, without keeping it; readiness says full', async () => {
    assert.equal((await ready()).status, 200);
    const layout = await skopeoCopy(`${prefix}/team/big:1`, work.path);
    assert.ok((await layerIn(layout, big)).equals(big.layer.bytes));
    assert.equal(await storedBlob(big), false, 'a 20 MiB blob cannot be on an 8 MiB disk');
    const readiness = await ready();
    assert.equal(readiness.status, 503);
    assert.match(readiness.body.toString(), /store full/);
    const m = await metrics();
    assert.equal(metric(m, 'pullmap_cache_store_full'), '1');
    assert.match(m, /pullmap_cache_not_kept_total\{kind="blob"\} 1/);
  });

  it('answers a range of a streamed-through blob, and the whole of it to curl', async () => {
    const url = `${cache.url}/v2/${embedRegistry(upstream.host)}/team/big/blobs/${big.layer.digest}`;
    const part = await curl(['-H', 'Range: bytes=5000000-5000099', url]);
    assert.equal(part.status, 206);
    assert.ok(part.body.equals(big.layer.bytes.subarray(5_000_000, 5_000_100)));
    const whole = await curl([url]);
    assert.equal(whole.status, 200);
    assert.equal(sha256(whole.body), big.layer.digest);
  });

  it('keeps a blob that fits, and streams one through that would not fit beside it', async () => {
    const layout = await skopeoCopy(`${prefix}/team/small:1`, work.path);
    assert.ok((await layerIn(layout, small)).equals(small.layer.bytes));
    assert.equal(await storedBlob(small), true);
    assert.equal((await ready()).status, 503, 'a small blob kept does not mean a large one would be');
    // Two 2.5 MiB blobs at once on what is left: the second cannot count on the room the first takes.
    const url = (image: BuiltImage, name: string) =>
      `${cache.url}/v2/${embedRegistry(upstream.host)}/team/${name}/blobs/${image.layer.digest}`;
    const [a, b] = await Promise.all([curl([url(mid1, 'mid1')]), curl([url(mid2, 'mid2')])]);
    assert.deepEqual([a.status, b.status], [200, 200]);
    assert.equal(sha256(a.body), mid1.layer.digest);
    assert.equal(sha256(b.body), mid2.layer.digest);
    assert.equal(
      [await storedBlob(mid1), await storedBlob(mid2)].filter(Boolean).length,
      1,
      'one of them was kept',
    );
  });

  it('serves a new image when the disk is full to the last byte (real ENOSPC): manifest and blob', async () => {
    // Whatever is left is taken by another file, as another process filling the disk would.
    await execFileAsync('dd', ['if=/dev/zero', `of=${join(mount, 'filler')}`, 'bs=64k'], {}).catch(() => {});
    const layout = await skopeoCopy(`${prefix}/team/late:1`, work.path);
    assert.ok((await layerIn(layout, late)).equals(late.layer.bytes));
    assert.equal(await storedBlob(late), false);
    assert.equal(existsSync(join(mount, 'manifests', 'sha256', late.manifest.digest.slice(7))), false);
    assert.equal((await ready()).status, 503);
    const m = await metrics();
    assert.equal(metric(m, 'pullmap_cache_store_full'), '1');
    assert.match(m, /pullmap_cache_not_kept_total\{kind="manifest"\} [1-9]/);
    assert.doesNotMatch(cache.logs(), /"request failed"/, 'no request ended in an internal error');
    // The other file goes: there is room again.
    await rm(join(mount, 'filler'));
    assert.equal((await ready()).status, 200);
    assert.equal(metric(await metrics(), 'pullmap_cache_store_full'), '0');
  });
});

describe('a disk filled by another writer in the middle of a download (8 MiB tmpfs)', () => {
  let upstream: FaultyUpstream;
  let cache: TestCache;
  let work: TempDir;
  let mount: string;
  const image = imageOf('racy', 2);

  before(async () => {
    // The first request for the layer stops half-way until the test resumes it.
    upstream = await startFaultyUpstream('team/racy', '1', image, { [image.layer.digest]: 'pause' });
    work = await tempDir('cache-disk-race');
    mount = join(work.path, 'store');
    await mountTmpfs(mount, '8m');
    cache = await startTestCache({
      upstreams: [{ host: upstream.host, plainHttp: true }],
      storage: { dir: mount },
    });
  });
  after(async () => {
    await cache?.close();
    if (mount) await unmount(mount);
    await work?.remove();
    await upstream?.close();
  });

  it('serves that download whole or ends it early, says the store is full, and the retry streams through whole', async () => {
    const url = `${cache.url}/v2/${embedRegistry(upstream.host)}/team/racy/blobs/${image.layer.digest}`;
    assert.equal((await curl([`${cache.url}/readyz`])).status, 200);
    // It fits when it starts (2 MiB and the margin on an empty 8 MiB disk); then another file takes the rest.
    const first = curl([url]).then(
      (r) => ({ ...r, exit: 0 }),
      (err: { code: number }) => ({ status: 0, body: Buffer.alloc(0), exit: err.code }),
    );
    await upstream.stalled();
    // Only once the download has its temp file: it started with room for the blob.
    const tmp = join(mount, 'tmp');
    for (let i = 0; !existsSync(tmp) || (await readdir(tmp)).length === 0; i++) {
      assert.ok(i < 400, 'the download never reached the store temp directory');
      await new Promise((r) => setTimeout(r, 10));
    }
    await execFileAsync('dd', ['if=/dev/zero', `of=${join(mount, 'filler')}`, 'bs=64k'], {}).catch(() => {});
    upstream.resume();
    // A client that kept up has every byte from memory before the last writes fail, and gets the blob
    // whole and verified; one that fell behind sees the body end early. Never a 200 with other bytes.
    const cut = await first;
    if (cut.exit === 0) assert.equal(sha256(cut.body), image.layer.digest);
    else assert.notEqual(sha256(cut.body), image.layer.digest);
    const metrics = async () => (await curl([`${cache.url}/metrics`])).body.toString();
    for (let i = 0; metric(await metrics(), 'pullmap_cache_store_full') !== '1'; i++) {
      assert.ok(i < 100, 'the store is never marked full');
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal((await curl([`${cache.url}/readyz`])).status, 503);
    const retry = await curl([url]);
    assert.equal(retry.status, 200);
    assert.equal(sha256(retry.body), image.layer.digest);
    assert.equal(existsSync(join(mount, 'blobs', 'sha256', image.layer.digest.slice(7))), false);
    assert.match(await metrics(), /pullmap_cache_not_kept_total\{kind="blob"\} 1/);
  });
});

describe('cache on a read-only store', () => {
  let upstream: TestRegistry;
  let cache: TestCache;
  let work: TempDir;
  let mount: string;
  let prefix: string;
  const kept = buildImage({ files: { 'kept.txt': 'stored before the disk went read-only\n' } });
  const missing = buildImage({ files: { 'missing.txt': 'never stored\n' } });

  before(async () => {
    upstream = await startRegistry();
    work = await tempDir('cache-disk-ro');
    mount = join(work.path, 'store');
    await mountTmpfs(mount, '16m');
    await pushImage(upstream, 'team/kept', '1', kept);
    await pushImage(upstream, 'team/missing', '1', missing);
    cache = await startTestCache({
      upstreams: [{ host: upstream.host, plainHttp: true }],
      storage: { dir: mount },
    });
    prefix = `${cache.host}/${embedRegistry(upstream.host)}`;
    await skopeoCopy(`${prefix}/team/kept:1`, work.path);
    await remountReadOnly(mount);
  });
  after(async () => {
    await cache?.close();
    if (mount) await unmount(mount);
    await work?.remove();
    await upstream?.close();
  });

  it('answers a manifest miss and a blob miss with a clean 503 naming the store', async () => {
    const base = `${cache.url}/v2/${embedRegistry(upstream.host)}/team/missing`;
    for (const url of [`${base}/manifests/1`, `${base}/blobs/${missing.layer.digest}`]) {
      const res = await curl([url]);
      assert.equal(res.status, 503, url);
      const body = JSON.parse(res.body.toString()) as { errors: { code: string; message: string }[] };
      assert.equal(body.errors[0]?.code, 'UNAVAILABLE');
      assert.match(body.errors[0]?.message ?? '', /cannot write to the cache store/);
    }
    assert.doesNotMatch(cache.logs(), /"request failed"/, 'no request ended in an internal error');
  });

  it('still serves what it holds', async () => {
    const layout = await skopeoCopy(`${prefix}/team/kept:1`, work.path);
    assert.ok((await layerIn(layout, kept)).equals(kept.layer.bytes));
  });
});
