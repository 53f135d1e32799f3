// Benchmark 5: the pullmap cache against the Debian docker-registry in proxy mode, both in front of the
// same upstream docker-registry holding the same content, all on loopback, in one run (and, when the
// SeaweedFS binary is built, the cache on S3 beside them against docker-registry's proxy on its S3 driver
// on the same SeaweedFS, both streaming and, apart, both redirecting, plus N concurrent pulls through two S3
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
import { type BenchResult, cacheNodeFlags, median } from './measure.ts';

const BLOB_MB = 200;
/** Fresh blobs pulled cold; one cold pull is too noisy a sample on a shared machine. */
const COLD_BLOBS = 7;
/** A first, unmeasured cold pull through each side, so neither is measured while it warms up. */
const WARMUP_MB = 16;
const WARM_ROUNDS = 9;
const MANIFEST_ROUND_MS = 1500;
const MANIFEST_ROUNDS = 3;
const MANIFEST_CONCURRENCY = 16;
const RSS_TARGET_MB = 100;
const S3_RSS_TARGET_MB = 150;
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
export async function download(
  url: string,
  follow = false,
): Promise<{ bytes: number; seconds: number; firstByteSeconds: number }> {
  const { stdout } = await execFileAsync(requireCommand('curl'), [
    ...(follow ? ['--location'] : []),
    '--silent',
    '--show-error',
    '--output',
    '/dev/null',
    '--write-out',
    '%{http_code} %{size_download} %{time_total} %{time_starttransfer}',
    url,
  ]);
  const [status, bytes, seconds, firstByteSeconds] = stdout.trim().split(' ').map(Number) as [
    number,
    number,
    number,
    number,
  ];
  if (status !== 200) throw new Error(`GET ${url} answered ${status}`);
  return { bytes, seconds, firstByteSeconds };
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
export async function peakRssMb(pid: number): Promise<number> {
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
  /** Its storage section instead of the filesystem under `dir` (the S3 driver, say). */
  storage?: Record<string, unknown>,
  name = 'proxy',
): Promise<{ host: string; daemon: Daemon }> {
  const port = await freePort();
  const configPath = join(dir, `${name}.yml`);
  const config = {
    version: 0.1,
    log: { level: 'error', accesslog: { disabled: true } },
    storage: storage ?? { filesystem: { rootdirectory: join(dir, 'proxy-data') } },
    http: { addr: `127.0.0.1:${port}`, secret: 'bench' },
    proxy: { remoteurl: remote },
  };
  await writeFile(configPath, JSON.stringify(config));
  const host = `127.0.0.1:${port}`;
  // Its AWS SDK panics at start on the AWS_CA_BUNDLE these machines set (test-infra.md §9).
  const env = { ...process.env };
  delete env['AWS_CA_BUNDLE'];
  const daemon = await startDaemon({
    name: `docker-registry (${name})`,
    command: requireCommand('docker-registry'),
    args: ['serve', configPath],
    env,
    ready: async () => (await fetch(`http://${host}/v2/`)).ok,
  });
  return { host, daemon };
}

/** docker-registry's S3 driver on `bucket` of `s3`; `redirect`: blob GETs answer 307 to the bucket. */
export function registryS3Storage(s3: TestS3, bucket: string, redirect: boolean): Record<string, unknown> {
  return {
    s3: {
      region: s3.region,
      regionendpoint: s3.endpoint,
      bucket,
      accesskey: s3.accessKey,
      secretkey: s3.secretKey,
      secure: false,
      v4auth: true,
    },
    redirect: { disable: !redirect },
    cache: { blobdescriptor: 'inmemory' },
  };
}

/** Waits until docker-registry's S3 driver holds the blob (its proxy stores it in the background). */
export async function untilInBucket(s3: TestS3, bucket: string, digest: string, size: number): Promise<void> {
  const hex = digest.slice('sha256:'.length);
  const key = `docker/registry/v2/blobs/sha256/${hex.slice(0, 2)}/${hex}/data`;
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if ((await s3.list(bucket, key)).some((o) => o.key === key && o.size === size)) return;
    await sleep(20);
  }
  throw new Error(`docker-registry did not store ${digest} in the bucket within 60 s`);
}

export const mbps = (bytes: number, seconds: number): number => bytes / 1e6 / seconds;

/** Waits until a cache has no download under way (its copy is committed: renamed, or uploaded to S3). */
export async function untilIdle(host: string): Promise<void> {
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
): Promise<
  | {
      s3: TestS3;
      bucket: string;
      replica(name: string, extra?: Record<string, unknown>): Promise<CacheProcess>;
    }
  | undefined
> {
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
    replica: async (name, extra = {}) => {
      const at = join(dir, name);
      await mkdir(at, { recursive: true });
      const cache = await spawnCache(
        {
          upstreams: [{ host: upstreamHost, plainHttp: true }],
          storage: { s3: s3.storage(bucket, extra) },
          log: { level: 'warn' },
        },
        at,
        { bundle: true, nodeFlags: await cacheNodeFlags() },
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
      // What ships: dist/pullmap.js ("npm run bench" builds it first), with the cache's Node flags.
      { bundle: true, nodeFlags: await cacheNodeFlags() },
    );
    stops.unshift(() => cache.daemon.stop());
    const s3Side = await startS3Side(upstream.host, work.path, stops);
    const s3Cache = s3Side ? await s3Side.replica('s3-a') : undefined;
    // The fair peer of the S3 store: docker-registry's proxy with its S3 driver on the same SeaweedFS
    // (a bucket of its own), streaming blobs through itself (redirect disabled) as the cache does.
    let proxyS3: { host: string; bucket: string } | undefined;
    let proxyS3Pid: number | undefined;
    if (s3Side) {
      const bucket = await s3Side.s3.bucket();
      const started = await startProxyRegistry(
        upstream.url,
        work.path,
        registryS3Storage(s3Side.s3, bucket, false),
        'proxy-s3',
      );
      stops.unshift(() => started.daemon.stop());
      proxyS3 = { host: started.host, bucket };
      proxyS3Pid = started.daemon.pid;
    }
    const cacheBase = `http://${cache.host}/v2/127.0.0.1_${upstream.port}`;
    const proxyBase = `http://${proxy.host}/v2`;
    const s3Base = s3Cache ? `http://${s3Cache.host}/v2/127.0.0.1_${upstream.port}` : undefined;
    const proxyS3Base = proxyS3 ? `http://${proxyS3.host}/v2` : undefined;
    const sides = [cacheBase, proxyBase, ...(s3Base ? [s3Base] : []), ...(proxyS3Base ? [proxyS3Base] : [])];
    const blobPath = `/bench/big/blobs/${big.digest}`;
    /** Until a side's own copy of a blob is in place (and its background work is over). */
    const untilKept = async (base: string, digest: string, size: number): Promise<void> => {
      if (base === s3Base && s3Cache) await untilIdle(s3Cache.host);
      else if (base === proxyS3Base && proxyS3 && s3Side)
        await untilInBucket(s3Side.s3, proxyS3.bucket, digest, size);
      else
        await untilStored(
          base === proxyBase ? proxyBlobFile(work.path, digest) : cacheBlobFile(cache.storeDir, digest),
          size,
        );
    };

    // Cold: the first GET through each goes to upstream while it is stored. Upstream's copy is read
    // once first, so neither side pays for upstream's disk, and the direct speed is the ceiling. Who
    // goes first alternates per blob.
    for (const base of sides) {
      await download(`${base}/bench/big/blobs/${warmupDigest}`);
      await untilKept(base, warmupDigest, warmupSize);
    }
    const directRates: number[] = [];
    // Per side: cold rates as the client sees them, and from the request until the server's own copy
    // is in place (the whole cost of a cold blob).
    const coldBy = new Map(sides.map((base) => [base, [] as number[]]));
    const storedBy = new Map(sides.map((base) => [base, [] as number[]]));
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
        coldBy.get(base)?.push(mbps(pulled.bytes, pulled.seconds));
        // Its background work would otherwise compete with what is measured next.
        await untilKept(base, digest, big.size);
        if (base === cacheBase) diskWaitMs.push(((await diskWait()) - waited) * 1000);
        storedBy.get(base)?.push(mbps(big.size, (performance.now() - start) / 1000));
        // Nor may the kernel's writeback of what it wrote through the page cache (docker-registry).
        execFileSync('sync');
      }
    }
    const coldCache = coldBy.get(cacheBase) as number[];
    const coldProxy = coldBy.get(proxyBase) as number[];
    const storedCache = storedBy.get(cacheBase) as number[];
    const storedProxy = storedBy.get(proxyBase) as number[];
    const coldS3 = s3Base ? (coldBy.get(s3Base) as number[]) : [];
    const storedS3 = s3Base ? (storedBy.get(s3Base) as number[]) : [];
    const coldProxyS3 = proxyS3Base ? (coldBy.get(proxyS3Base) as number[]) : [];
    const storedProxyS3 = proxyS3Base ? (storedBy.get(proxyS3Base) as number[]) : [];

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
    const warmProxyS3: number[] = [];
    if (s3Base && proxyS3Base)
      for (let i = 0; i < WARM_ROUNDS; i++) {
        // Interleaved with both references, who goes first rotating, so all see the same machine.
        const trio = [proxyBase, s3Base, proxyS3Base];
        for (let k = 0; k < trio.length; k++) {
          const base = trio[(i + k) % trio.length] as string;
          const got = await download(`${base}${blobPath}`);
          (base === s3Base ? warmS3 : base === proxyBase ? warmProxyBesideS3 : warmProxyS3).push(
            mbps(got.bytes, got.seconds),
          );
        }
      }
    // Redirect mode, apart: pullmap answering 307 to a presigned URL, docker-registry's S3 driver to its
    // own; the client (curl --location) then reads SeaweedFS directly.
    const warmRedirect: number[] = [];
    const warmProxyRedirect: number[] = [];
    if (s3Side && proxyS3) {
      const redirecting = await s3Side.replica('s3-redirect', { serve: 'redirect' });
      const proxyRedirect = await startProxyRegistry(
        upstream.url,
        work.path,
        registryS3Storage(s3Side.s3, proxyS3.bucket, true),
        'proxy-s3-redirect',
      );
      stops.unshift(() => proxyRedirect.daemon.stop());
      const redirectBase = `http://${redirecting.host}/v2/127.0.0.1_${upstream.port}`;
      for (let i = 0; i < WARM_ROUNDS; i++) {
        const p = await download(`http://${proxyRedirect.host}/v2${blobPath}`, true);
        const r = await download(`${redirectBase}${blobPath}`, true);
        warmProxyRedirect.push(mbps(p.bytes, p.seconds));
        warmRedirect.push(mbps(r.bytes, r.seconds));
      }
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
    // And the same load on an S3 replica, streaming from the bucket.
    if (s3Base) await Promise.all(Array.from({ length: 5 }, () => download(`${s3Base}${blobPath}`)));
    const rssS3 = s3Cache ? await peakRssMb(s3Cache.daemon.pid) : undefined;
    const rssProxyS3 = proxyS3Pid !== undefined ? await peakRssMb(proxyS3Pid) : undefined;
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
    if (coldS3.length > 0 && coldProxyS3.length > 0) {
      const f = (values: readonly number[]): string => median(values).toFixed(0);
      const coldRatio = median(coldS3) / median(coldProxyS3);
      const storedRatio = median(storedS3) / median(storedProxyS3);
      const warmRatio = median(warmS3) / median(warmProxyS3);
      const warmRatioDisk = median(warmS3) / median(warmProxyBesideS3);
      const redirectRatio = median(warmRedirect) / median(warmProxyRedirect);
      console.log(
        `S3 cold       pullmap on S3 ${f(coldS3)} MB/s (${coldS3.map((r) => r.toFixed(0)).join(', ')}), reference on S3 ${f(coldProxyS3)} MB/s (${coldProxyS3.map((r) => r.toFixed(0)).join(', ')}), reference on disk ${f(coldProxy)} MB/s  RATIO ${coldRatio.toFixed(2)} (vs the reference on disk ${(median(coldS3) / median(coldProxy)).toFixed(2)})`,
      );
      console.log(
        `  until stored pullmap on S3 ${f(storedS3)} MB/s (uploaded after the digest checked out), reference on S3 ${f(storedProxyS3)} MB/s (its background fetch in the bucket)  RATIO ${storedRatio.toFixed(2)}`,
      );
      console.log(
        `S3 warm       pullmap on S3 ${f(warmS3)} MB/s, reference on S3 ${f(warmProxyS3)} MB/s (both streamed from SeaweedFS), reference on disk ${f(warmProxyBesideS3)} MB/s (rounds interleaved)  RATIO ${warmRatio.toFixed(2)} (vs the reference on disk ${warmRatioDisk.toFixed(2)})`,
      );
      console.log(
        `  redirect    pullmap ${f(warmRedirect)} MB/s, reference ${f(warmProxyRedirect)} MB/s (both answer 307 to the bucket; the client reads SeaweedFS)  RATIO ${redirectRatio.toFixed(2)}`,
      );
      console.log(
        `S3 replicas   ${REPLICA_PULLS} concurrent pulls of one ${REPLICA_BLOB_MB} MB blob through two replicas: ${replicaFetches} upstream fetch(es), ${replicaSeconds.toFixed(1)} s; peak RSS of an S3 replica ${rssS3?.toFixed(0)} MiB (after serving 5 warm GETs at once too), reference on S3 ${rssProxyS3?.toFixed(0)} MiB`,
      );
      s3Results.push(
        {
          name: 'cache on S3: warm 200 MB blob',
          target: '>= 1.0x reference on S3',
          measured: `${f(warmS3)} MB/s`,
          ratio: `${warmRatio.toFixed(2)} x docker-registry proxy on S3`,
          pass: warmRatio >= 1.0,
        },
        {
          name: 'cache on S3: cold pull-through',
          target: '>= 1.0x reference on S3',
          measured: `${f(coldS3)} MB/s`,
          ratio: `${coldRatio.toFixed(2)} x docker-registry proxy on S3`,
          pass: coldRatio >= 1.0,
        },
        {
          name: 'cache on S3: cold, until stored',
          target: 'report',
          measured: `${f(storedS3)} MB/s`,
          ratio: `${storedRatio.toFixed(2)} x docker-registry proxy on S3`,
          pass: true,
        },
        {
          name: 'cache on S3: warm, redirect mode',
          target: 'report',
          measured: `${f(warmRedirect)} MB/s`,
          ratio: `${redirectRatio.toFixed(2)} x docker-registry on S3, redirect`,
          pass: true,
        },
        {
          name: 'cache on S3: peak RSS of a replica',
          target: `< ${S3_RSS_TARGET_MB} MiB`,
          measured: `${rssS3?.toFixed(0)} MiB`,
          ratio: `${((rssS3 ?? 0) / (rssProxyS3 ?? 1)).toFixed(2)} x docker-registry proxy on S3`,
          pass: (rssS3 ?? Infinity) < S3_RSS_TARGET_MB,
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
