// Size cap and garbage collection by last use: blobs no cached manifest references go first, then the
// least recently used; what was evicted is fetched again on the next pull. The cache's clock is moved
// so "last use" differs without waiting. What one collection keeps and drops is checked on a store
// directory directly.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { DiskStore } from '../../src/cache/store/disk.ts';
import type { StoredManifest } from '../../src/cache/store/types.ts';
import { embedRegistry } from '../../src/core/reference/index.ts';
import {
  closeAll,
  skopeoCopy,
  startTestCache,
  type TestCache,
  unpackOci,
  untilNoDownloads,
} from '../harness/cache.ts';
import { buildImage, pushImage } from '../harness/images.ts';
import { type TempDir, tempDir } from '../harness/process.ts';
import { startRegistry, type TestRegistry } from '../harness/registry.ts';

const MINUTE = 60_000;
const layerOf = (name: string) =>
  buildImage({ files: { [`${name}.txt`]: name, 'fill.bin': randomBytes(600 * 1024).toString('base64') } });

describe('cache: size cap and garbage collection', () => {
  let upstream: TestRegistry;
  let cache: TestCache;
  let work: TempDir;
  let clock = Date.now();
  const images = { a: layerOf('a'), b: layerOf('b'), c: layerOf('c'), d: layerOf('d') };
  const cap = Math.floor(images.a.layer.size * 2.6);

  const pull = async (name: keyof typeof images): Promise<void> => {
    const layout = await skopeoCopy(
      `${cache.host}/${embedRegistry(upstream.host)}/team/${name}:1`,
      work.path,
    );
    assert.equal((await unpackOci(layout))[`${name}.txt`], name);
    await settled();
    await cache.instance.store.collect();
  };
  // Blobs are stored (fsync, rename) after their last byte was sent: wait for that before collecting.
  const settled = () => untilNoDownloads(() => cache.instance.metrics.render());
  // Looked at directly: asking the store would count as a use.
  const stored = async (name: keyof typeof images): Promise<boolean> =>
    existsSync((cache.instance.store as DiskStore).blobPath(images[name].layer.digest));

  before(async () => {
    upstream = await startRegistry();
    work = await tempDir('cache-gc');
    for (const [name, image] of Object.entries(images)) await pushImage(upstream, `team/${name}`, '1', image);
    cache = await startTestCache(
      { upstreams: [{ host: upstream.host, plainHttp: true }], storage: { maxSize: cap } },
      { now: () => clock },
    );
  });
  after(() => closeAll(cache, upstream, work));

  it('evicts an unreferenced blob first, even the newest', async () => {
    clock += MINUTE;
    await pull('a');
    clock += MINUTE;
    await pull('b');
    clock += MINUTE;
    // D's layer alone, without its manifest: nothing cached refers to it.
    const res = await request(
      `${cache.url}/v2/${embedRegistry(upstream.host)}/team/d/blobs/${images.d.layer.digest}`,
    );
    await res.body.dump();
    assert.equal(res.statusCode, 200);
    await settled();
    await cache.instance.store.collect();
    assert.equal(await stored('d'), false);
    assert.match(cache.instance.metrics.render(), /pullmap_cache_evictions_total\{kind="blob"\} 1\n/);
    assert.ok(await stored('a'));
    assert.ok(await stored('b'));
    assert.ok(cache.instance.store.usedBytes <= cap);
  });

  it('then evicts the least recently used, and an evicted image pulls again from upstream', async () => {
    clock += MINUTE;
    await pull('a'); // a is now used more recently than b
    clock += MINUTE;
    await pull('c');
    assert.ok(await stored('a'));
    assert.ok(await stored('c'));
    assert.equal(await stored('b'), false);
    assert.ok(cache.instance.store.usedBytes <= cap);
    await pull('b');
    assert.equal(await upstream.count({ method: 'GET', uri: `/blobs/${images.b.layer.digest}` }), 2);
    assert.equal(await upstream.count({ method: 'GET', uri: `/blobs/${images.a.layer.digest}` }), 1);
    assert.match(cache.instance.metrics.render(), /pullmap_cache_evictions_total\{kind="blob"\} [1-9]/);
  });
});

const digestOf = (bytes: Buffer): string => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

async function putBlob(store: DiskStore, bytes: Buffer): Promise<string> {
  const digest = digestOf(bytes);
  const temp = await store.spool.tempFile();
  await temp.handle.writeFile(bytes);
  await store.commitBlob(temp, digest, bytes.length);
  await temp.handle.close();
  return digest;
}

async function putManifestOf(store: DiskStore, config: string, layers: string[]): Promise<StoredManifest> {
  const bytes = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: config, size: 1 },
      layers: layers.map((digest) => ({
        mediaType: 'application/vnd.oci.image.layer.v1.tar',
        digest,
        size: 1,
      })),
    }),
  );
  const manifest = {
    digest: digestOf(bytes),
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    bytes,
  };
  await store.putManifest(manifest);
  return manifest;
}

describe('cache store: one garbage collection', () => {
  let work: TempDir;
  let clock = 1_800_000_000_000;
  const now = (): number => clock;
  const mtime = async (path: string): Promise<number> => (await stat(path)).mtimeMs;
  /** The same directory with a cap, opened later: collection runs at the clock of the call. */
  const capped = (dir: string, maxSize: number): Promise<DiskStore> =>
    DiskStore.open({ dir, maxSize, fsync: false, now });

  before(async () => {
    work = await tempDir('cache-gc-store');
  });
  after(() => closeAll(work));

  it('reads manifests without counting it as a use', async () => {
    const dir = join(work.path, 'no-touch');
    const store = await DiskStore.open({ dir, fsync: false, now });
    const config = await putBlob(store, randomBytes(100));
    const layer = await putBlob(store, randomBytes(10_000));
    const manifest = await putManifestOf(store, config, [layer]);
    await putBlob(store, randomBytes(50_000)); // referenced by nothing: the one evicted
    const path = join(dir, 'manifests', 'sha256', manifest.digest.slice('sha256:'.length));
    const used = await mtime(path);
    clock += 10 * MINUTE;
    const gc = await capped(dir, store.usedBytes - 1000);
    assert.deepEqual(await gc.collect(), { blobs: 1, manifests: 0, tags: 0, bytes: 50_000 });
    await new Promise((r) => setTimeout(r, 200)); // a use is recorded in the background
    assert.equal(await mtime(path), used, "collection bumped the manifest's last use");
  });

  it('evicts only blobs first; a manifest pulled by digest (no tag) waits its turn by last use', async () => {
    const dir = join(work.path, 'pinned');
    const store = await DiskStore.open({ dir, fsync: false, now });
    const old = await putBlob(store, randomBytes(50_000));
    const oldConfig = await putBlob(store, randomBytes(100));
    await putManifestOf(store, oldConfig, [old]);
    clock += MINUTE;
    const layer = await putBlob(store, randomBytes(10_000));
    const config = await putBlob(store, randomBytes(100));
    const pinned = await putManifestOf(store, config, [layer]);
    clock += MINUTE;
    const gc = await capped(dir, store.usedBytes - 1000);
    assert.equal((await gc.collect()).manifests, 0);
    assert.equal(existsSync(gc.blobPath(old)), false, 'the least recently used blob goes');
    assert.deepEqual(await gc.getManifest(pinned.digest), pinned, 'the newer digest-pinned manifest stays');
  });

  it('drops tag records whose manifest was evicted, and keeps the others', async () => {
    const dir = join(work.path, 'tags');
    const store = await DiskStore.open({ dir, fsync: false, now });
    const name = 'registry.example/team/app';
    const oldLayer = randomBytes(50_000);
    const oldConfig = randomBytes(100);
    // The old manifest is the least recently used object, so it goes first.
    const old = await putManifestOf(store, digestOf(oldConfig), [digestOf(oldLayer)]);
    await store.putTag({ name, tag: 'old', digest: old.digest, checkedAt: clock });
    clock += MINUTE;
    await putBlob(store, oldLayer);
    await putBlob(store, oldConfig);
    const current = await putManifestOf(store, await putBlob(store, randomBytes(100)), [
      await putBlob(store, randomBytes(10_000)),
    ]);
    await store.putTag({ name, tag: 'new', digest: current.digest, checkedAt: clock });
    clock += MINUTE;
    const gc = await capped(dir, store.usedBytes - 1000);
    const evicted = await gc.collect();
    assert.equal(evicted.manifests, 1);
    assert.equal(evicted.tags, 1);
    assert.equal(await gc.getTag(name, 'old'), undefined);
    assert.equal((await gc.getTag(name, 'new'))?.digest, current.digest);
    assert.equal((await readdir(join(dir, 'tags'))).length, 1);
  });
});
