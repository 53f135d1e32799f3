// Blobs through the cache: one upstream fetch however many clients ask at once, nothing stored or
// completely served when upstream sends corrupted or truncated bytes, and nothing half-written visible
// after the cache process is killed mid-download; a restart keeps what was stored; a client that stops
// reading is cut off after the idle timeout, releasing the blob's file handle; a store that cannot be
// written answers 503, not an upstream error.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readlink, realpath, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { embedRegistry } from '../../src/core/reference/index.ts';
import {
  closeAll,
  skopeoCopy,
  spawnCache,
  startTestCache,
  type TestCache,
  unpackOci,
} from '../harness/cache.ts';
import { startFaultyUpstream } from '../harness/faulty-upstream.ts';
import { buildImage, pushBlob, pushImage, sha256 } from '../harness/images.ts';
import { type TempDir, tempDir } from '../harness/process.ts';
import { startRegistry, type TestRegistry } from '../harness/registry.ts';

const bigFile = randomBytes(3 * 1024 * 1024).toString('base64');

describe('cache: concurrent pulls of one uncached image', () => {
  let upstream: TestRegistry;
  let cache: TestCache;
  let work: TempDir;
  const image = buildImage({ files: { 'big.txt': bigFile, 'name.txt': 'concurrent\n' } });

  before(async () => {
    upstream = await startRegistry();
    work = await tempDir('cache-blobs');
    await pushImage(upstream, 'team/big', '1', image);
    cache = await startTestCache({ upstreams: [{ host: upstream.host, plainHttp: true }] });
  });
  after(() => closeAll(cache, upstream, work));

  it('20 parallel skopeo pulls cause one upstream fetch per blob and all unpack the same files', async () => {
    const ref = `${cache.host}/${embedRegistry(upstream.host)}/team/big:1`;
    const layouts = await Promise.all(Array.from({ length: 20 }, () => skopeoCopy(ref, work.path)));
    for (const layout of layouts) {
      const files = await unpackOci(layout);
      assert.equal(files['name.txt'], 'concurrent\n');
      assert.equal(files['big.txt'], bigFile);
    }
    assert.equal(await upstream.count({ method: 'GET', uri: `/blobs/${image.layer.digest}` }), 1);
    assert.equal(await upstream.count({ method: 'GET', uri: `/blobs/${image.config.digest}` }), 1);
    assert.equal(await upstream.count({ method: 'GET', uri: '/manifests/1' }), 1);
  });
});

describe('cache: corrupted and truncated upstream blobs', () => {
  const image = buildImage({ files: { 'big.txt': bigFile } });

  for (const fault of ['corrupt', 'truncate'] as const) {
    it(`a ${fault} layer is neither served whole nor stored, and is fetched again next time`, async () => {
      const upstream = await startFaultyUpstream('team/bad', '1', image, { [image.layer.digest]: fault });
      const cache = await startTestCache({ upstreams: [{ host: upstream.host, plainHttp: true }] });
      const work = await tempDir('cache-fault');
      try {
        const url = `${cache.url}/v2/${embedRegistry(upstream.host)}/team/bad/blobs/${image.layer.digest}`;
        for (let attempt = 1; attempt <= 2; attempt++) {
          const res = await request(url);
          if (res.statusCode === 200) {
            assert.equal(Number(res.headers['content-length']), image.layer.size);
            await assert.rejects(res.body.arrayBuffer(), 'the body must end early, never complete');
          } else {
            await res.body.dump();
            assert.equal(res.statusCode, 502);
          }
          assert.equal(upstream.blobRequests(image.layer.digest), attempt);
          assert.equal(await cache.instance.store.useBlob(image.layer.digest), undefined);
          assert.deepEqual(await readdir(join(cache.storeDir, 'tmp')), []);
        }
        await assert.rejects(
          skopeoCopy(`${cache.host}/${embedRegistry(upstream.host)}/team/bad:1`, work.path),
        );
        assert.equal(await cache.instance.store.useBlob(image.layer.digest), undefined);
        const metrics = cache.instance.metrics.render();
        assert.match(metrics, /pullmap_cache_download_failures_total [3-9]/);
      } finally {
        await cache.close();
        await upstream.close();
        await work.remove();
      }
    });
  }
});

describe('cache: killed mid-download, then restarted', () => {
  let work: TempDir;
  let upstream: TestRegistry;
  const good = buildImage({ files: { 'good.txt': 'stored before the crash\n' } });
  const stalled = buildImage({ files: { 'big.txt': bigFile } });

  before(async () => {
    work = await tempDir('cache-crash');
    upstream = await startRegistry();
    await pushImage(upstream, 'team/good', '1', good);
  });
  after(() => closeAll(upstream, work));

  it('leaves nothing half-written visible, and keeps what was complete', async () => {
    const faulty = await startFaultyUpstream('team/slow', '1', stalled, { [stalled.layer.digest]: 'stall' });
    const storeDir = join(work.path, 'store');
    const config = {
      storage: { dir: storeDir, fsync: true },
      upstreams: [
        { host: upstream.host, plainHttp: true },
        { host: faulty.host, plainHttp: true },
      ],
    };
    try {
      const first = await spawnCache(config, work.path);
      const goodRef = `${first.host}/${embedRegistry(upstream.host)}/team/good:1`;
      await skopeoCopy(goodRef, work.path);
      // A client has a blob once it is verified; storing it (fsync, rename) follows: wait for that.
      const goodFile = join(storeDir, 'blobs', 'sha256', good.layer.digest.slice(7));
      for (let i = 0; !existsSync(goodFile); i++) {
        assert.ok(i < 400, 'the complete blob was never stored');
        await new Promise((r) => setTimeout(r, 10));
      }
      // Start the download that will never finish, and kill the cache while it is half done.
      const pending = request(
        `http://${first.host}/v2/${embedRegistry(faulty.host)}/team/slow/blobs/${stalled.layer.digest}`,
      );
      pending.then((r) => r.body.dump().catch(() => {})).catch(() => {});
      await faulty.stalled();
      for (let i = 0; (await readdir(join(storeDir, 'tmp'))).length === 0; i++) {
        assert.ok(i < 400, 'the download never reached the store temp directory');
        await new Promise((r) => setTimeout(r, 10));
      }
      process.kill(first.daemon.pid, 'SIGKILL');
      await first.daemon.stop();
      const blobs = await readdir(join(storeDir, 'blobs', 'sha256'));
      assert.ok(!blobs.includes(stalled.layer.digest.slice(7)), 'a half download became visible');
      assert.ok(blobs.includes(good.layer.digest.slice(7)));

      // Upstream is gone; the restarted cache still has the complete image and no leftovers.
      await upstream.stop();
      const second = await spawnCache(config, work.path);
      try {
        assert.deepEqual(await readdir(join(storeDir, 'tmp')), []);
        const layout = await skopeoCopy(
          `${second.host}/${embedRegistry(upstream.host)}/team/good:1`,
          work.path,
        );
        assert.deepEqual(await unpackOci(layout), { 'good.txt': 'stored before the crash\n' });
      } finally {
        await second.daemon.stop();
      }
    } finally {
      await faulty.close();
    }
  });
});

/** Whether this process has `path` open. */
async function holdsOpen(path: string): Promise<boolean> {
  for (const fd of await readdir('/proc/self/fd')) {
    const target = await readlink(`/proc/self/fd/${fd}`).catch(() => '');
    if (target === path) return true;
  }
  return false;
}

describe('cache: a client that stops reading', () => {
  let upstream: TestRegistry;
  let cache: TestCache;
  // Far more than the socket buffers on both ends hold, so the copy to the client stalls.
  const bytes = randomBytes(48 * 1024 * 1024);
  const blob = { mediaType: 'application/octet-stream', digest: sha256(bytes), size: bytes.length, bytes };

  before(async () => {
    upstream = await startRegistry();
    await pushBlob(upstream, 'team/huge', blob);
    cache = await startTestCache({
      upstreams: [{ host: upstream.host, plainHttp: true }],
      limits: { idleTimeout: '1s' },
    });
  });
  after(() => closeAll(cache, upstream));

  it('is cut off after the idle timeout, and the stored blob is no longer held open', async () => {
    const path = `/v2/${embedRegistry(upstream.host)}/team/huge/blobs/${blob.digest}`;
    // Not kept alive: the only connection left is the stalled one.
    const whole = await request(`${cache.url}${path}`, { reset: true });
    assert.equal(Buffer.compare(Buffer.from(await whole.body.arrayBuffer()), bytes), 0);
    // Storing (fsync, rename) follows the last byte sent.
    let stored = await cache.instance.store.useBlob(blob.digest);
    for (let i = 0; stored === undefined; i++) {
      assert.ok(i < 100, 'the blob was not stored');
      await new Promise((r) => setTimeout(r, 50));
      stored = await cache.instance.store.useBlob(blob.digest);
    }
    const file = await realpath(stored.path as string);

    const [host, port] = cache.host.split(':') as [string, string];
    const socket = connect(Number(port), host);
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.on('error', () => {});
    socket.write(`GET ${path} HTTP/1.1\r\nHost: ${cache.host}\r\n\r\n`);
    await new Promise((resolve) => socket.once('data', resolve));
    socket.pause();
    const stalledAt = Date.now();
    try {
      assert.ok(await holdsOpen(file), 'the cache reads the stored blob for the client');
      const connections = (): Promise<number> =>
        new Promise((resolve, reject) =>
          cache.instance.server.getConnections((err, n) => (err ? reject(err) : resolve(n))),
        );
      for (let i = 0; (await connections()) > 0 || (await holdsOpen(file)); i++) {
        assert.ok(i < 150, 'the stalled connection and its file handle are still held after 15 s');
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.ok(Date.now() - stalledAt >= 900, 'cut off before the idle timeout');
    } finally {
      socket.destroy();
      await closed;
    }
  });
});

describe('cache: a store that cannot be written', () => {
  let upstream: TestRegistry;
  let cache: TestCache;
  const image = buildImage({ files: { 'disk.txt': 'full\n' } });

  before(async () => {
    upstream = await startRegistry();
    await pushImage(upstream, 'team/disk', '1', image);
    cache = await startTestCache({ upstreams: [{ host: upstream.host, plainHttp: true }] });
  });
  after(() => closeAll(cache, upstream));

  it('answers 503 UNAVAILABLE (not an upstream failure) and counts the failed download', async () => {
    const url = `${cache.url}/v2/${embedRegistry(upstream.host)}/team/disk/blobs/${image.layer.digest}`;
    const tmp = join(cache.storeDir, 'tmp');
    // A file where the temp directory was: every temp file fails to open (ENOTDIR), even for root.
    await rm(tmp, { recursive: true });
    await writeFile(tmp, '');
    const res = await request(url);
    const body = (await res.body.json()) as { errors: { code: string; message: string }[] };
    assert.equal(res.statusCode, 503);
    assert.equal(body.errors[0]?.code, 'UNAVAILABLE');
    assert.doesNotMatch(body.errors[0]?.message ?? '', /^upstream/);
    assert.match(cache.instance.metrics.render(), /pullmap_cache_download_failures_total 1\n/);
    assert.match(cache.logs(), /blob download failed/);

    await rm(tmp);
    await mkdir(tmp);
    const again = await request(url);
    assert.equal(again.statusCode, 200);
    assert.equal(Buffer.compare(Buffer.from(await again.body.arrayBuffer()), image.layer.bytes), 0);
  });
});
