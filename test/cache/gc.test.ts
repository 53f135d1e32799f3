// Size cap and garbage collection by last use: blobs no cached manifest references go first, then the
// least recently used; what was evicted is fetched again on the next pull. The cache's clock is moved
// so "last use" differs without waiting.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { embedRegistry } from '../../src/core/reference/index.ts';
import { closeAll, skopeoCopy, startTestCache, type TestCache, unpackOci } from '../harness/cache.ts';
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
    await cache.instance.store.collect();
  };
  // Looked at directly: asking the store would count as a use.
  const stored = async (name: keyof typeof images): Promise<boolean> =>
    existsSync(cache.instance.store.blobPath(images[name].layer.digest));

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
    await cache.instance.store.collect();
    assert.equal(await stored('d'), false);
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
