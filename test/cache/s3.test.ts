// The cache on S3-compatible storage, against a real S3 server (SeaweedFS on loopback): two `pullmap
// cache` processes share one bucket (skopeo and ctr pull through either), a blob one replica is
// downloading is not fetched again by the other, a replica killed mid-download is taken over, a stopped
// upstream is answered from the bucket (stale), a stopped S3 gives clear errors and the cache recovers,
// and garbage collection works on the bucket.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { checkCacheConfig } from '../../src/cache/config.ts';
import { run } from '../../src/cli/run.ts';
import { embedRegistry } from '../../src/core/reference/index.ts';
import {
  type CacheProcess,
  type Containerd,
  closeAll,
  readTree,
  skopeoCopy,
  spawnCache,
  startContainerd,
  startTestCache,
  type TestCache,
  unpackOci,
  untilNoDownloads,
} from '../harness/cache.ts';
import { type Blob, buildImage, pushBlob, pushImage, sha256 } from '../harness/images.ts';
import { type TempDir, tempDir } from '../harness/process.ts';
import { startRegistry, type TestRegistry } from '../harness/registry.ts';
import { startThrottlingProxy, type ThrottlingProxy } from '../harness/registry-stubs.ts';
import { startS3, type TestS3 } from '../harness/s3.ts';

const randomBlob = (bytes: number): Blob => {
  const data = randomBytes(bytes);
  return { mediaType: 'application/octet-stream', digest: sha256(data), size: data.length, bytes: data };
};

async function getBlob(
  host: string,
  path: string,
): Promise<{ status: number; digest: string; text: string }> {
  const res = await request(`http://${host}/v2/${path}`);
  const body = Buffer.from(await res.body.arrayBuffer());
  return {
    status: res.statusCode,
    digest: `sha256:${createHash('sha256').update(body).digest('hex')}`,
    text: res.statusCode >= 400 ? body.toString('utf8') : '',
  };
}

const metric = (text: string, pattern: RegExp): number => Number(pattern.exec(text)?.[1] ?? 0);
const blobFetches = async (host: string): Promise<number> =>
  metric(
    await (await fetch(`http://${host}/metrics`)).text(),
    /pullmap_cache_upstream_fetches_total\{kind="blob"\} (\d+)/,
  );

describe('cache config: storage.s3', () => {
  const base = { upstreams: [{ host: 'docker.io' }] };
  const errors = (storage: unknown): string[] => {
    const r = checkCacheConfig({ ...base, storage }, 'c.yaml');
    return r.ok ? [] : [...r.errors];
  };

  it('accepts a bucket alone (AWS, standard credential chain) and fills in the defaults', () => {
    const r = checkCacheConfig(
      { ...base, storage: { s3: { bucket: 'pullmap-cache', prefix: 'team' } } },
      'c.yaml',
    );
    assert.ok(r.ok);
    assert.equal(r.config.storage.dir, undefined);
    assert.deepEqual(
      { ...r.config.storage.s3 },
      {
        bucket: 'pullmap-cache',
        endpoint: undefined,
        region: 'us-east-1',
        prefix: 'team/',
        forcePathStyle: false,
        credentialsFile: undefined,
        profile: undefined,
        caFile: undefined,
        timeoutMs: 30_000,
        connectTimeoutMs: 5_000,
        maxConcurrent: 32,
        serve: 'stream',
        redirectExpiryMs: 600_000,
        downloadLeaseMs: 30_000,
        peerWaitMs: 300_000,
        gcIntervalMs: 600_000,
      },
    );
  });

  it('names the field and the fix for bad values', () => {
    assert.deepEqual(errors({}), [
      'c.yaml: storage: set dir (a store on local disk) or s3 (a bucket shared by replicas)',
    ]);
    assert.match(
      errors({ s3: { bucket: 'Bad_Bucket' } }).join(),
      /storage\.s3\.bucket: must be a bucket name/,
    );
    assert.match(
      errors({ s3: { bucket: 'b-1', endpoint: 'http://127.0.0.1:9000/b-1' } }).join(),
      /storage\.s3\.endpoint: must be the service URL alone .*the bucket goes in bucket/,
    );
    assert.match(
      errors({ s3: { bucket: 'b-1', endpoint: 'ftp://x' } }).join(),
      /storage\.s3\.endpoint: must be an http/,
    );
    assert.match(
      errors({ s3: { bucket: 'b-1', profile: 'p' } }).join(),
      /storage\.s3\.profile: .*set credentialsFile too/,
    );
    assert.match(errors({ s3: { bucket: 'b-1', serve: 'proxy' } }).join(), /storage\.s3\.serve/);
    assert.match(
      errors({ s3: { bucket: 'b-1', downloadLease: '1s' } }).join(),
      /downloadLease: must be at least 3s/,
    );
    assert.match(
      errors({ s3: { bucket: 'b-1', prefix: '/x' } }).join(),
      /storage\.s3\.prefix: must not start with "\/"/,
    );
  });
});

describe('cache on S3: replicas sharing one bucket', { timeout: 300_000 }, () => {
  let s3: TestS3;
  let upstream: TestRegistry;
  let slow: ThrottlingProxy;
  let work: TempDir;
  let bucket: string;
  let a: CacheProcess;
  let b: CacheProcess;
  const image = buildImage({
    files: { 'srv/app.txt': 'from the bucket\n', 'fill.bin': randomBytes(300_000).toString('base64') },
  });
  const big = randomBlob(12 * 2 ** 20);
  const bigForKill = randomBlob(12 * 2 ** 20);

  const replica = async (
    name: string,
    upstreamHost: string,
    extra: Record<string, unknown> = {},
  ): Promise<CacheProcess> => {
    const dir = join(work.path, name);
    await mkdir(dir, { recursive: true });
    return spawnCache(
      {
        upstreams: [{ host: upstreamHost, plainHttp: true }],
        storage: { s3: s3.storage(bucket, { prefix: 'cache/', downloadLease: '10s', ...extra }) },
      },
      dir,
    );
  };

  before(async () => {
    s3 = await startS3();
    upstream = await startRegistry();
    work = await tempDir('cache-s3');
    await pushImage(upstream, 'team/app', '1', image);
    await pushBlob(upstream, 'team/big', big);
    await pushBlob(upstream, 'team/big', bigForKill);
    // 4 MB/s: a 12 MiB blob takes about 3 s to come through.
    slow = await startThrottlingProxy(upstream.url, 4_000_000);
    bucket = await s3.bucket();
    a = await replica('a', slow.host);
    b = await replica('b', slow.host);
  });
  after(async () => {
    await a?.daemon.stop();
    await b?.daemon.stop();
    await closeAll(slow, upstream, s3, work);
  });

  it('skopeo pulls through one replica, then through the other from the bucket alone', async () => {
    const name = `${embedRegistry(slow.host)}/team/app:1`;
    const first = await skopeoCopy(`${a.host}/${name}`, work.path);
    assert.equal((await unpackOci(first))['srv/app.txt'], 'from the bucket\n');
    const keys = (await s3.list(bucket, 'cache/')).map((o) => o.key);
    assert.ok(keys.includes(`cache/blobs/sha256/${image.layer.digest.slice(7)}`), keys.join('\n'));
    assert.ok(keys.includes(`cache/manifests/sha256/${image.manifest.digest.slice(7)}`));
    assert.ok(keys.some((k) => k.startsWith('cache/tags/')));
    const second = await skopeoCopy(`${b.host}/${name}`, work.path);
    assert.equal((await unpackOci(second))['srv/app.txt'], 'from the bucket\n');
    assert.equal(await blobFetches(b.host), 0, 'replica b fetched blobs upstream that a had stored');
    assert.equal(slow.blobGets(image.layer.digest), 1);
  });

  it('lists what the bucket holds on either replica: cache ls, _catalog and tags/list', async () => {
    const out = new PassThrough();
    let text = '';
    out.on('data', (c: Buffer) => {
      text += c.toString();
    });
    const io = { stdin: new PassThrough(), stdout: out, stderr: new PassThrough(), env: {} };
    assert.equal(await run(['cache', 'ls', '--url', `http://${b.host}`, '-o', 'json'], io), 0);
    const listing = JSON.parse(text) as {
      tags: { name: string; tag: string; digest: string; bytes: number }[];
    };
    const app = listing.tags.find((t) => t.name === `${slow.host}/team/app` && t.tag === '1');
    assert.equal(app?.digest, image.manifest.digest, text);
    assert.equal(app?.bytes, image.manifest.size + image.config.size + image.layer.size);
    const catalog = await request(`http://${b.host}/v2/_catalog`);
    assert.deepEqual(await catalog.body.json(), { repositories: [`${embedRegistry(slow.host)}/team/app`] });
    const tags = await request(`http://${a.host}/v2/${embedRegistry(slow.host)}/team/app/tags/list`);
    assert.deepEqual(await tags.body.json(), { name: `${embedRegistry(slow.host)}/team/app`, tags: ['1'] });
  });

  it('ctr pulls through the second replica from the bucket', async () => {
    let containerd: Containerd | undefined;
    try {
      containerd = await startContainerd();
      const ref = `${b.host}/${embedRegistry(slow.host)}/team/app:1`;
      await containerd.ctr(['images', 'pull', '--plain-http', ref]);
      const mount = join(work.path, 'mnt');
      await mkdir(mount);
      await containerd.ctr(['images', 'mount', ref, mount]);
      try {
        assert.equal((await readTree(mount))['srv/app.txt'], 'from the bucket\n');
      } finally {
        await containerd.ctr(['images', 'unmount', '--rm', mount]).catch(() => {});
      }
      assert.equal(slow.blobGets(image.layer.digest), 1);
    } finally {
      await closeAll(containerd);
    }
  });

  it('concurrent pulls of one blob through both replicas fetch it upstream once', async () => {
    const path = `${embedRegistry(slow.host)}/team/big/blobs/${big.digest}`;
    const results = await Promise.all([a.host, b.host, a.host, b.host].map((h) => getBlob(h, path)));
    for (const r of results) assert.deepEqual([r.status, r.digest], [200, big.digest], r.text);
    assert.equal(slow.blobGets(big.digest), 1, 'the second replica fetched the blob too');
    assert.equal(await s3.pendingUploads(bucket, 'cache/'), 0);
    // A range of a stored blob, streamed from the bucket.
    const res = await request(`http://${b.host}/v2/${path}`, { headers: { range: 'bytes=1000-1999' } });
    const part = Buffer.from(await res.body.arrayBuffer());
    assert.equal(res.statusCode, 206);
    assert.equal(Buffer.compare(part, big.bytes.subarray(1000, 2000)), 0);
  });

  it('a replica killed mid-download is taken over by the other once its lease expires', async () => {
    const path = `${embedRegistry(slow.host)}/team/big/blobs/${bigForKill.digest}`;
    const victim = request(`http://${a.host}/v2/${path}`).then(
      (r) => r.body.dump(),
      () => {},
    );
    for (let i = 0; slow.blobBytesSent(bigForKill.digest) < 2 ** 20; i++) {
      assert.ok(i < 200, 'the download never started');
      await new Promise((r) => setTimeout(r, 25));
    }
    process.kill(a.daemon.pid, 'SIGKILL');
    await a.daemon.stop();
    await victim.catch(() => {});
    // Nothing unverified became visible.
    const keys = (await s3.list(bucket, 'cache/blobs/')).map((o) => o.key);
    assert.ok(!keys.includes(`cache/blobs/sha256/${bigForKill.digest.slice(7)}`));
    const got = await getBlob(b.host, path);
    assert.deepEqual([got.status, got.digest], [200, bigForKill.digest], got.text);
    assert.equal(slow.blobGets(bigForKill.digest), 2);
    a = await replica('a', slow.host);
    const again = await getBlob(a.host, path);
    assert.deepEqual([again.status, again.digest], [200, bigForKill.digest]);
    assert.equal(slow.blobGets(bigForKill.digest), 2);
  });
});

describe('cache on S3: upstream down, S3 down, redirects, garbage collection', { timeout: 300_000 }, () => {
  let s3: TestS3;
  let upstream: TestRegistry;
  /** Stopped for good by the stale-if-error test. */
  let doomed: TestRegistry;
  let work: TempDir;
  let cache: TestCache;
  let bucket: string;
  const image = buildImage({ files: { 'app.txt': 'stale but there\n' } });

  before(async () => {
    s3 = await startS3();
    upstream = await startRegistry();
    doomed = await startRegistry();
    work = await tempDir('cache-s3-faults');
    await pushImage(upstream, 'team/app', '1', image);
    await pushImage(doomed, 'team/app', '1', image);
    bucket = await s3.bucket();
    cache = await startTestCache({
      upstreams: [
        { host: upstream.host, plainHttp: true },
        { host: doomed.host, plainHttp: true },
      ],
      storage: { s3: s3.storage(bucket, { timeout: '10s', connectTimeout: '2s' }) },
      refresh: { default: 'Always' },
    });
  });
  after(() => closeAll(cache, upstream, doomed, s3, work));

  it('serves the cached tag from the bucket, marked stale, while upstream is down', async () => {
    const ref = `${cache.host}/${embedRegistry(doomed.host)}/team/app:1`;
    await skopeoCopy(ref, work.path);
    await doomed.stop();
    const res = await request(`${cache.url}/v2/${embedRegistry(doomed.host)}/team/app/manifests/1`, {
      headers: { accept: image.manifest.mediaType },
    });
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['x-pullmap-stale'], 'unreachable');
    assert.equal(Buffer.compare(Buffer.from(await res.body.arrayBuffer()), image.manifest.bytes), 0);
    assert.equal((await unpackOci(await skopeoCopy(ref, work.path)))['app.txt'], 'stale but there\n');
  });

  it('answers 503 naming the bucket while S3 is down, and recovers when it is back', async () => {
    const path = `${embedRegistry(upstream.host)}/team/app/blobs/${image.layer.digest}`;
    await s3.stop();
    try {
      const res = await request(`${cache.url}/v2/${path}`);
      const body = await res.body.text();
      assert.equal(res.statusCode, 503, body);
      assert.match(body, /"code":"UNAVAILABLE"/);
      assert.match(
        body,
        new RegExp(`cache store unavailable \\(storage\\.s3, bucket ${bucket} at ${s3.endpoint}\\)`),
      );
      const manifest = await request(`${cache.url}/v2/${embedRegistry(upstream.host)}/team/app/manifests/1`);
      assert.equal(manifest.statusCode, 503);
      await manifest.body.dump();
    } finally {
      await s3.start();
    }
    // SeaweedFS answers metadata before its volume serves data again: until then the cache answers a
    // clean 503 (never a 200 cut short), so the recovery is awaited, bounded.
    let got = await getBlob(cache.host, path);
    for (let i = 0; got.status === 503 && i < 30; i++) {
      await new Promise((r) => setTimeout(r, 1000));
      got = await getBlob(cache.host, path);
    }
    assert.deepEqual([got.status, got.digest], [200, image.layer.digest], got.text);
  });

  it('refuses to start on a bucket that does not exist, naming storage.s3 and what to check', async () => {
    await assert.rejects(
      startTestCache({
        upstreams: [{ host: upstream.host, plainHttp: true }],
        storage: { s3: s3.storage('pullmap-no-such-bucket') },
      }),
      (err: Error) => {
        assert.match(
          err.message,
          /^storage\.s3: cannot use pullmap-no-such-bucket at http:\/\/127\.0\.0\.1:\d+: /,
        );
        assert.match(
          err.message,
          /cannot list the bucket: .*NoSuchBucket.*check endpoint, bucket \(it must exist\)/,
        );
        return true;
      },
    );
  });

  it('serve: redirect answers blob GETs with a presigned URL that skopeo follows', async () => {
    const redirecting = await startTestCache({
      upstreams: [{ host: upstream.host, plainHttp: true }],
      storage: { s3: s3.storage(bucket, { serve: 'redirect' }) },
    });
    try {
      const res = await request(
        `${redirecting.url}/v2/${embedRegistry(upstream.host)}/team/app/blobs/${image.layer.digest}`,
      );
      await res.body.dump();
      assert.equal(res.statusCode, 307);
      const location = String(res.headers['location']);
      assert.ok(location.startsWith(`${s3.endpoint}/${bucket}/blobs/sha256/`), location);
      assert.match(location, /X-Amz-Signature=/);
      const layout = await skopeoCopy(
        `${redirecting.host}/${embedRegistry(upstream.host)}/team/app:1`,
        work.path,
      );
      assert.equal((await unpackOci(layout))['app.txt'], 'stale but there\n');
    } finally {
      await redirecting.close();
    }
  });

  it('collects the bucket by last use above maxSize, unreferenced blobs first', async () => {
    const gcBucket = await s3.bucket();
    const images = [0, 1, 2].map((i) =>
      buildImage({ files: { 'n.txt': `${i}`, 'fill.bin': randomBytes(400 * 1024).toString('base64') } }),
    );
    for (const [i, img] of images.entries()) await pushImage(upstream, `team/gc${i}`, '1', img);
    const loose = randomBlob(700 * 1024);
    await pushBlob(upstream, 'team/gc0', loose);
    const layer = images[0]?.layer.size ?? 0;
    const gc = await startTestCache({
      upstreams: [{ host: upstream.host, plainHttp: true }],
      storage: { maxSize: Math.floor(layer * 2.6), s3: s3.storage(gcBucket) },
    });
    try {
      const has = async (digest: string): Promise<boolean> =>
        (await s3.list(gcBucket, `blobs/sha256/${digest.slice(7)}`)).length > 0;
      // LastModified has a one-second resolution: each pull a second apart.
      for (const i of [0, 1]) {
        await skopeoCopy(`${gc.host}/${embedRegistry(upstream.host)}/team/gc${i}:1`, work.path);
        await new Promise((r) => setTimeout(r, 1100));
      }
      const got = await getBlob(gc.host, `${embedRegistry(upstream.host)}/team/gc0/blobs/${loose.digest}`);
      assert.equal(got.status, 200);
      // Uploaded after the last byte was sent (which may start a collection by itself: over the cap).
      await untilNoDownloads(() => gc.instance.metrics.render());
      await gc.instance.store.collect();
      assert.equal(await has(loose.digest), false, 'the unreferenced blob survived');
      assert.ok(await has(images[0]?.layer.digest ?? ''));
      assert.ok(await has(images[1]?.layer.digest ?? ''));
      await new Promise((r) => setTimeout(r, 1100));
      await skopeoCopy(`${gc.host}/${embedRegistry(upstream.host)}/team/gc2:1`, work.path);
      await gc.instance.store.collect();
      assert.equal(await has(images[0]?.layer.digest ?? ''), false, 'the least recently used layer survived');
      assert.ok(await has(images[2]?.layer.digest ?? ''));
      assert.ok(gc.instance.store.usedBytes <= Math.floor(layer * 2.6));
      assert.match(gc.instance.metrics.render(), /pullmap_cache_evictions_total\{kind="blob"\} [2-9]/);
      // The evicted image pulls again (from upstream).
      const layout = await skopeoCopy(`${gc.host}/${embedRegistry(upstream.host)}/team/gc0:1`, work.path);
      assert.equal((await unpackOci(layout))['n.txt'], '0');
    } finally {
      await gc.close();
    }
  });
});
