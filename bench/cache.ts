// Benchmark 5: the pullmap cache against the Debian docker-registry in proxy mode, both in front of the
// same upstream docker-registry holding the same content, all on loopback, in one run (and, when the
// SeaweedFS binary is built, the cache on S3 beside them, plus N concurrent pulls through two S3
// replicas counting upstream fetches):
//   cold pull-through of 200 MB blobs (first GET through each; COLD_BLOBS fresh blobs, medians), warm
//   throughput of one of them,
//   manifest requests/s (by digest, 16 concurrent), and the cache's peak RSS while it serves >1 GB.
// Ratios are pullmap / reference (higher is better for speed). Blobs are timed with curl (see download).
// Bounded: about a minute.
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { request } from 'undici';
import { type CacheProcess, spawnCache } from '../test/harness/cache.ts';
import { buildImage, type PushTarget, pushBlob, pushImage, sha256 } from '../test/harness/images.ts';
import { type Daemon, freePort, requireCommand, startDaemon, tempDir } from '../test/harness/process.ts';
import { startRegistry } from '../test/harness/registry.ts';
import { startS3, type TestS3, weedBinary } from '../test/harness/s3.ts';
import { type BenchResult, imageNodeFlags, median } from './measure.ts';

const BLOB_MB = 200;
/** Fresh blobs pulled cold; one cold pull is too noisy a sample on a shared machine. */
const COLD_BLOBS = 7;
/** A first, unmeasured cold pull through each side, so neither is measured while it warms up. */
const WARMUP_MB = 16;
const WARM_ROUNDS = 9;
const MANIFEST_ROUND_MS = 1500;
const MANIFEST_ROUNDS = 3;
const MANIFEST_CONCURRENCY = 16;
const RSS_TARGET_MB = 150;
/** Concurrent pulls of one fresh blob through two S3-backed replicas (half through each). */
const REPLICA_PULLS = 8;
const REPLICA_BLOB_MB = 64;

const execFileAsync = promisify(execFile);

/**
 * GETs `url` with curl and discards the body; returns bytes read and seconds taken (curl's own clock, from
 * before connecting until the last byte). The client is a C program on purpose: the Node.js client used
 * before spent about as much CPU per byte as the servers it measured, on the same two cores, so it capped
 * both sides (warm, in one A/B run: reference 1438 MB/s with it, 1989 MB/s with curl; pullmap 1697 and
 * 2757 MB/s). Pulls in production come from containerd or skopeo, equally lean clients.
 */
export async function download(url: string): Promise<{ bytes: number; seconds: number }> {
  const { stdout } = await execFileAsync(requireCommand('curl'), [
    '--silent',
    '--show-error',
    '--output',
    '/dev/null',
    '--write-out',
    '%{http_code} %{size_download} %{time_total}',
    url,
  ]);
  const [status, bytes, seconds] = stdout.trim().split(' ').map(Number) as [number, number, number];
  if (status !== 200) throw new Error(`GET ${url} answered ${status}`);
  return { bytes, seconds };
}

/** Manifest GETs per second with `concurrency` loops for `ms`. */
async function manifestRate(url: string, accept: string, ms: number, concurrency: number): Promise<number> {
  let count = 0;
  const end = performance.now() + ms;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end) {
        const res = await request(url, { headers: { accept } });
        await res.body.dump();
        if (res.statusCode !== 200) throw new Error(`manifest GET answered ${res.statusCode}`);
        count++;
      }
    }),
  );
  return count / ((performance.now() - start) / 1000);
}

/** Peak resident set (VmHWM) of a process, in MiB. */
async function peakRssMb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? Number.NaN);
  return kb / 1024;
}

/**
 * Waits until a server's copy of a blob is in place. docker-registry's proxy stores what it streamed
 * through a second fetch from upstream in the background, and pullmap makes its copy durable (fsync,
 * rename) after the last byte: neither may overlap the next measurement.
 */
export async function untilStored(file: string, size: number): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const stored = await stat(file).catch(() => undefined);
    if (stored?.size === size) return;
    await sleep(5);
  }
  throw new Error(`${file} did not reach ${size} bytes within 30 s`);
}

/** Where the proxy started by startProxyRegistry(…, dir) stores a blob. */
export function proxyBlobFile(dir: string, digest: string): string {
  const hex = digest.slice('sha256:'.length);
  return join(dir, 'proxy-data/docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data');
}

/** Where a cache with store directory `storeDir` keeps a blob. */
export function cacheBlobFile(storeDir: string, digest: string): string {
  return join(storeDir, 'blobs', 'sha256', digest.slice('sha256:'.length));
}

/** docker-registry in proxy mode in front of `remote`, storing under `dir`. */
export async function startProxyRegistry(
  remote: string,
  dir: string,
): Promise<{ host: string; daemon: Daemon }> {
  const port = await freePort();
  const configPath = join(dir, 'proxy.yml');
  const config = {
    version: 0.1,
    log: { level: 'error', accesslog: { disabled: true } },
    storage: { filesystem: { rootdirectory: join(dir, 'proxy-data') } },
    http: { addr: `127.0.0.1:${port}`, secret: 'bench' },
    proxy: { remoteurl: remote },
  };
  await writeFile(configPath, JSON.stringify(config));
  const host = `127.0.0.1:${port}`;
  const daemon = await startDaemon({
    name: 'docker-registry (proxy)',
    command: requireCommand('docker-registry'),
    args: ['serve', configPath],
    ready: async () => (await fetch(`http://${host}/v2/`)).ok,
  });
  return { host, daemon };
}

const mbps = (bytes: number, seconds: number): number => bytes / 1e6 / seconds;

/** Waits until a cache has no download under way (its copy is committed: renamed, or uploaded to S3). */
async function untilIdle(host: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const text = await (await fetch(`http://${host}/metrics`)).text();
    if (/^pullmap_cache_downloads_in_flight 0$/m.test(text)) return;
    await sleep(5);
  }
  throw new Error(`the cache at ${host} still downloads after 60 s`);
}

/** The S3 side of the benchmark, when SeaweedFS is built; undefined (with a note) when it is not. */
async function startS3Side(
  upstreamHost: string,
  dir: string,
  stops: (() => Promise<void>)[],
): Promise<{ s3: TestS3; bucket: string; replica(name: string): Promise<CacheProcess> } | undefined> {
  try {
    await weedBinary();
  } catch {
    console.log('(S3-backed cache skipped: no SeaweedFS binary; run "bash scripts/go-tool.sh weed" once)\n');
    return undefined;
  }
  let s3: TestS3;
  try {
    s3 = await startS3();
  } catch (err) {
    console.log(
      `(S3-backed cache skipped: SeaweedFS did not start: ${(err as Error).message.slice(0, 300)})\n`,
    );
    return undefined;
  }
  stops.unshift(() => s3.close());
  const bucket = await s3.bucket();
  return {
    s3,
    bucket,
    replica: async (name) => {
      const at = join(dir, name);
      await mkdir(at, { recursive: true });
      const cache = await spawnCache(
        {
          upstreams: [{ host: upstreamHost, plainHttp: true }],
          storage: { s3: s3.storage(bucket) },
          log: { level: 'warn' },
        },
        at,
        { bundle: true, nodeFlags: await imageNodeFlags() },
      );
      stops.unshift(() => cache.daemon.stop());
      return cache;
    },
  };
}

/** Pushes `size` fresh random bytes to `repository` upstream as a blob; answers its digest. */
export async function pushRandomBlob(target: PushTarget, repository: string, size: number): Promise<string> {
  const bytes = randomBytes(size);
  const digest = sha256(bytes);
  await pushBlob(target, repository, { mediaType: 'application/octet-stream', digest, size, bytes });
  return digest;
}

export async function runCacheBench(): Promise<BenchResult[]> {
  const work = await tempDir('bench-cache');
  const upstream = await startRegistry();
  const stops: (() => Promise<void>)[] = [() => upstream.close(), () => work.remove()];
  try {
    const warmupSize = WARMUP_MB * 1024 * 1024;
    const warmupDigest = await pushRandomBlob(upstream, 'bench/big', warmupSize);
    const coldDigests: string[] = [];
    for (let i = 0; i < COLD_BLOBS; i++)
      coldDigests.push(await pushRandomBlob(upstream, 'bench/big', BLOB_MB * 1024 * 1024));
    const big = { digest: coldDigests[0] as string, size: BLOB_MB * 1024 * 1024 };
    const small = buildImage({ files: { 'x.txt': 'manifest benchmark\n' } });
    await pushImage(upstream, 'bench/small', '1', small);

    const proxy = await startProxyRegistry(upstream.url, work.path);
    stops.unshift(() => proxy.daemon.stop());
    const cache = await spawnCache(
      { upstreams: [{ host: upstream.host, plainHttp: true }], log: { level: 'warn' } },
      work.path,
      // What ships: dist/pullmap.js ("npm run bench" builds it first), with the image's Node flags.
      { bundle: true, nodeFlags: await imageNodeFlags() },
    );
    stops.unshift(() => cache.daemon.stop());
    const s3Side = await startS3Side(upstream.host, work.path, stops);
    const s3Cache = s3Side ? await s3Side.replica('s3-a') : undefined;
    const cacheBase = `http://${cache.host}/v2/127.0.0.1_${upstream.port}`;
    const proxyBase = `http://${proxy.host}/v2`;
    const s3Base = s3Cache ? `http://${s3Cache.host}/v2/127.0.0.1_${upstream.port}` : undefined;
    const sides = [cacheBase, proxyBase, ...(s3Base ? [s3Base] : [])];
    const blobPath = `/bench/big/blobs/${big.digest}`;

    // Cold: the first GET through each goes to upstream while it is stored. Upstream's copy is read
    // once first, so neither side pays for upstream's disk, and the direct speed is the ceiling. Who
    // goes first alternates per blob.
    for (const base of sides) await download(`${base}/bench/big/blobs/${warmupDigest}`);
    await untilStored(proxyBlobFile(work.path, warmupDigest), warmupSize);
    if (s3Cache) await untilIdle(s3Cache.host);
    const directRates: number[] = [];
    const coldCache: number[] = [];
    const coldProxy: number[] = [];
    // From the request until the server's own copy is in place: the whole cost of a cold blob.
    const storedCache: number[] = [];
    const storedProxy: number[] = [];
    const coldS3: number[] = [];
    const storedS3: number[] = [];
    // Per cold blob, how long pullmap held upstream back waiting for its disk (from its /metrics).
    const diskWaitMs: number[] = [];
    const diskWait = async (): Promise<number> => {
      const text = await (await fetch(`http://${cache.host}/metrics`)).text();
      return Number(/^pullmap_cache_download_disk_wait_seconds_total (\S+)$/m.exec(text)?.[1] ?? 0);
    };
    for (const [i, digest] of coldDigests.entries()) {
      const direct = await download(`${upstream.url}/v2/bench/big/blobs/${digest}`);
      directRates.push(mbps(direct.bytes, direct.seconds));
      const path = `/bench/big/blobs/${digest}`;
      // Who goes first rotates per blob.
      const order = sides.map((_, k) => sides[(i + k) % sides.length] as string);
      for (const base of order) {
        const waited = base === cacheBase ? await diskWait() : 0;
        const start = performance.now();
        const pulled = await download(`${base}${path}`);
        if (pulled.bytes !== big.size) throw new Error('cold GET came back short');
        (base === cacheBase ? coldCache : base === proxyBase ? coldProxy : coldS3).push(
          mbps(pulled.bytes, pulled.seconds),
        );
        // Its background work would otherwise compete with what is measured next.
        if (base === s3Base && s3Cache) await untilIdle(s3Cache.host);
        else
          await untilStored(
            base === proxyBase ? proxyBlobFile(work.path, digest) : cacheBlobFile(cache.storeDir, digest),
            big.size,
          );
        const stored = (performance.now() - start) / 1000;
        if (base === cacheBase) diskWaitMs.push(((await diskWait()) - waited) * 1000);
        (base === cacheBase ? storedCache : base === proxyBase ? storedProxy : storedS3).push(
          mbps(big.size, stored),
        );
        // Nor may the kernel's writeback of what it wrote through the page cache (docker-registry).
        execFileSync('sync');
      }
    }

    const warmCache: number[] = [];
    const warmProxy: number[] = [];
    for (let i = 0; i < WARM_ROUNDS; i++) {
      // Alternating which side goes first, so neither always runs right after the other's page-cache work.
      const first = i % 2 === 0 ? cacheBase : proxyBase;
      const a = await download(`${first}${blobPath}`);
      const b = await download(`${first === cacheBase ? proxyBase : cacheBase}${blobPath}`);
      const [c, p] = first === cacheBase ? [a, b] : [b, a];
      warmCache.push(mbps(c.bytes, c.seconds));
      warmProxy.push(mbps(p.bytes, p.seconds));
    }
    const warmS3: number[] = [];
    const warmProxyBesideS3: number[] = [];
    if (s3Base)
      for (let i = 0; i < WARM_ROUNDS; i++) {
        // Interleaved with the reference again, so both see the same machine.
        const p = await download(`${proxyBase}${blobPath}`);
        const s = await download(`${s3Base}${blobPath}`);
        warmProxyBesideS3.push(mbps(p.bytes, p.seconds));
        warmS3.push(mbps(s.bytes, s.seconds));
      }

    // N concurrent pulls of one fresh blob, half through each of two S3-backed replicas: how often
    // upstream is asked for it (the target is once).
    let replicaFetches: number | undefined;
    let replicaSeconds = 0;
    if (s3Side && s3Base && s3Cache) {
      const second = await s3Side.replica('s3-b');
      const secondBase = `http://${second.host}/v2/127.0.0.1_${upstream.port}`;
      const digest = await pushRandomBlob(upstream, 'bench/big', REPLICA_BLOB_MB * 1024 * 1024);
      const before = await upstream.count({ method: 'GET', uri: digest });
      const start = performance.now();
      const pulls = await Promise.all(
        Array.from({ length: REPLICA_PULLS }, (_, k) =>
          download(`${k % 2 === 0 ? s3Base : secondBase}/bench/big/blobs/${digest}`),
        ),
      );
      replicaSeconds = (performance.now() - start) / 1000;
      for (const p of pulls) if (p.bytes !== REPLICA_BLOB_MB * 1024 * 1024) throw new Error('short pull');
      replicaFetches = (await upstream.count({ method: 'GET', uri: digest })) - before;
    }

    const manifestPath = `/bench/small/manifests/${small.manifest.digest}`;
    const accept = small.manifest.mediaType;
    await manifestRate(`${cacheBase}${manifestPath}`, accept, 300, MANIFEST_CONCURRENCY);
    await manifestRate(`${proxyBase}${manifestPath}`, accept, 300, MANIFEST_CONCURRENCY);
    const mCache: number[] = [];
    const mProxy: number[] = [];
    for (let i = 0; i < MANIFEST_ROUNDS; i++) {
      mCache.push(
        await manifestRate(`${cacheBase}${manifestPath}`, accept, MANIFEST_ROUND_MS, MANIFEST_CONCURRENCY),
      );
      mProxy.push(
        await manifestRate(`${proxyBase}${manifestPath}`, accept, MANIFEST_ROUND_MS, MANIFEST_CONCURRENCY),
      );
    }
    const tagCache = await manifestRate(
      `${cacheBase}/bench/small/manifests/1`,
      accept,
      MANIFEST_ROUND_MS,
      MANIFEST_CONCURRENCY,
    );
    const tagProxy = await manifestRate(
      `${proxyBase}/bench/small/manifests/1`,
      accept,
      MANIFEST_ROUND_MS,
      MANIFEST_CONCURRENCY,
    );

    // >1 GB served at once: five concurrent GETs of the warm blob (plus everything served above).
    const served = await Promise.all(Array.from({ length: 5 }, () => download(`${cacheBase}${blobPath}`)));
    const servedBytes = served.reduce((sum, s) => sum + s.bytes, 0);
    const rssS3 = s3Cache ? await peakRssMb(s3Cache.daemon.pid) : undefined;
    const rssCache = await peakRssMb(cache.daemon.pid);
    const rssProxy = await peakRssMb(proxy.daemon.pid);

    const cold = median(coldCache) / median(coldProxy);
    const coldStored = median(storedCache) / median(storedProxy);
    const warm = median(warmCache) / median(warmProxy);
    const manifests = median(mCache) / median(mProxy);
    console.log('## 5. pull-through cache vs docker-registry proxy (same upstream, loopback)');
    console.log(
      `direct        upstream itself ${median(directRates).toFixed(0)} MB/s (the ceiling for cold pulls)`,
    );
    console.log(
      `cold 200 MB   pullmap ${median(coldCache).toFixed(0)} MB/s, reference ${median(coldProxy).toFixed(0)} MB/s (medians of ${COLD_BLOBS} blobs; pullmap ${coldCache.map((r) => r.toFixed(0)).join(', ')}; reference ${coldProxy.map((r) => r.toFixed(0)).join(', ')})  RATIO ${cold.toFixed(2)}`,
    );
    console.log(
      `  disk wait   pullmap held upstream back for its disk ${diskWaitMs.map((ms) => ms.toFixed(0)).join(', ')} ms per blob`,
    );
    console.log(
      `  until stored pullmap ${median(storedCache).toFixed(0)} MB/s, reference ${median(storedProxy).toFixed(0)} MB/s (request to the server's own copy in place; docker-registry stores through a second, background fetch)  RATIO ${coldStored.toFixed(2)}`,
    );
    console.log(
      `warm 200 MB   pullmap ${median(warmCache).toFixed(0)} MB/s, reference ${median(warmProxy).toFixed(0)} MB/s (median of ${WARM_ROUNDS})  RATIO ${warm.toFixed(2)}`,
    );
    console.log(
      `manifests     pullmap ${median(mCache).toFixed(0)}/s, reference ${median(mProxy).toFixed(0)}/s by digest, ${MANIFEST_CONCURRENCY} concurrent  RATIO ${manifests.toFixed(2)}`,
    );
    console.log(
      `  by tag      pullmap ${tagCache.toFixed(0)}/s (Interval(1h): not re-asked), reference ${tagProxy.toFixed(0)}/s (asks upstream each time)  RATIO ${(tagCache / tagProxy).toFixed(2)}`,
    );
    console.log(
      `peak RSS      pullmap ${rssCache.toFixed(0)} MiB over the whole run (last step served ${(servedBytes / 1e9).toFixed(2)} GB at once), reference ${rssProxy.toFixed(0)} MiB`,
    );
    const s3Results: BenchResult[] = [];
    if (coldS3.length > 0) {
      const coldRatio = median(coldS3) / median(coldProxy);
      const storedRatio = median(storedS3) / median(storedProxy);
      const warmRatio = median(warmS3) / median(warmProxyBesideS3);
      console.log(
        `S3 cold       pullmap on S3 ${median(coldS3).toFixed(0)} MB/s (${coldS3.map((r) => r.toFixed(0)).join(', ')}), disk ${median(coldCache).toFixed(0)} MB/s, reference ${median(coldProxy).toFixed(0)} MB/s  RATIO ${coldRatio.toFixed(2)} (vs disk ${(median(coldS3) / median(coldCache)).toFixed(2)})`,
      );
      console.log(
        `  until stored pullmap on S3 ${median(storedS3).toFixed(0)} MB/s (uploaded to the bucket after the digest checked out)  RATIO ${storedRatio.toFixed(2)}`,
      );
      console.log(
        `S3 warm       pullmap on S3 ${median(warmS3).toFixed(0)} MB/s (streamed from SeaweedFS), disk ${median(warmCache).toFixed(0)} MB/s, reference ${median(warmProxyBesideS3).toFixed(0)} MB/s (rounds interleaved with the S3 side)  RATIO ${warmRatio.toFixed(2)}`,
      );
      console.log(
        `S3 replicas   ${REPLICA_PULLS} concurrent pulls of one ${REPLICA_BLOB_MB} MB blob through two replicas: ${replicaFetches} upstream fetch(es), ${replicaSeconds.toFixed(1)} s; peak RSS of an S3 replica ${rssS3?.toFixed(0)} MiB`,
      );
      s3Results.push(
        {
          name: 'cache on S3: warm 200 MB blob',
          target: 'report',
          measured: `${median(warmS3).toFixed(0)} MB/s`,
          ratio: `${warmRatio.toFixed(2)} x docker-registry proxy`,
          pass: true,
        },
        {
          name: 'cache on S3: cold pull-through',
          target: 'report',
          measured: `${median(coldS3).toFixed(0)} MB/s`,
          ratio: `${coldRatio.toFixed(2)} x docker-registry proxy`,
          pass: true,
        },
        {
          name: 'cache on S3: upstream fetches',
          target: `1 for ${REPLICA_PULLS} pulls, 2 replicas`,
          measured: `${replicaFetches}`,
          ratio: '-',
          pass: replicaFetches === 1,
        },
      );
    }
    console.log('');
    return [
      ...s3Results,
      {
        name: 'cache: warm 200 MB blob',
        target: '>= 1.0x reference',
        measured: `${median(warmCache).toFixed(0)} MB/s`,
        ratio: `${warm.toFixed(2)} x docker-registry proxy`,
        pass: warm >= 1.0,
      },
      {
        name: 'cache: cold pull-through',
        target: '>= 0.9x reference',
        measured: `${median(coldCache).toFixed(0)} MB/s`,
        ratio: `${cold.toFixed(2)} x docker-registry proxy`,
        pass: cold >= 0.9,
      },
      {
        name: 'cache: cold, until stored',
        target: 'report',
        measured: `${median(storedCache).toFixed(0)} MB/s`,
        ratio: `${coldStored.toFixed(2)} x docker-registry proxy`,
        pass: true,
      },
      {
        name: 'cache: manifests by digest',
        target: 'report',
        measured: `${median(mCache).toFixed(0)} req/s`,
        ratio: `${manifests.toFixed(2)} x docker-registry proxy`,
        pass: true,
      },
      {
        name: 'cache: peak RSS serving 1 GB',
        target: `< ${RSS_TARGET_MB} MiB`,
        measured: `${rssCache.toFixed(0)} MiB`,
        ratio: `${(rssCache / rssProxy).toFixed(2)} x docker-registry proxy`,
        pass: rssCache < RSS_TARGET_MB,
      },
    ];
  } finally {
    for (const stop of stops) await stop().catch(() => {});
  }
}

if (import.meta.main) await runCacheBench();
