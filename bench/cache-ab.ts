// Two builds of the cache side by side against docker-registry's proxy in the same run, for A/B runs of a
// tuning change on a shared machine (the ratios against the peer are comparable; the MB/s are not).
// Not part of `npm run bench`:
//   npm run build && cp -r dist /tmp/a && (change, npm run build) && cp -r dist /tmp/b
//   node bench/cache-ab.ts /tmp/a/pullmap.js /tmp/b/pullmap.js
// Environment: AB_MODE=s3 (default: the peer on the S3 driver, the caches on SeaweedFS) or disk;
// AB_MB (blob size, default 100), AB_COLD (cold blobs, default 5), AB_WARM (warm rounds, default 5);
// AB_FLAGS_A / AB_FLAGS_B: Node flags added after the cache's; AB_ENV_A / AB_ENV_B: KEY=VALUE ... .
import { execFileSync } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { type CacheProcess, spawnCache } from '../test/harness/cache.ts';
import { tempDir } from '../test/harness/process.ts';
import { startRegistry } from '../test/harness/registry.ts';
import { startS3 } from '../test/harness/s3.ts';
import {
  cacheBlobFile,
  download,
  mbps,
  peakRssMb,
  proxyBlobFile,
  pushRandomBlob,
  registryS3Storage,
  startProxyRegistry,
  untilIdle,
  untilInBucket,
  untilStored,
} from './cache.ts';
import { cacheNodeFlags, median } from './measure.ts';

const MB = 1024 * 1024;
const mode = process.env['AB_MODE'] === 'disk' ? 'disk' : 's3';
const size = Number(process.env['AB_MB'] ?? 100) * MB;
const coldBlobs = Number(process.env['AB_COLD'] ?? 5);
const warmRounds = Number(process.env['AB_WARM'] ?? 5);
const [bundleA, bundleB] = process.argv.slice(2);
if (!bundleA || !bundleB) throw new Error('usage: node bench/cache-ab.ts BUNDLE_A BUNDLE_B');
const bundles = { A: bundleA, B: bundleB };

const work = await tempDir('cache-ab');
const stops: (() => Promise<void>)[] = [() => work.remove()];
try {
  const upstream = await startRegistry();
  stops.unshift(() => upstream.close());
  const s3 = mode === 's3' ? await startS3() : undefined;
  if (s3) stops.unshift(() => s3.close());
  const peerBucket = s3 ? await s3.bucket() : '';
  const peer = await startProxyRegistry(
    upstream.url,
    work.path,
    s3 ? registryS3Storage(s3, peerBucket, false) : undefined,
  );
  stops.unshift(() => peer.daemon.stop());
  const caches: Record<string, CacheProcess> = {};
  for (const name of ['A', 'B'] as const) {
    const at = join(work.path, name);
    await mkdir(at, { recursive: true });
    const env = { ...process.env };
    for (const kv of (process.env[`AB_ENV_${name}`] ?? '').split(' ').filter(Boolean)) {
      const [k, v] = kv.split('=');
      if (k && v !== undefined) env[k] = v;
    }
    const flags = (process.env[`AB_FLAGS_${name}`] ?? '').split(' ').filter(Boolean);
    const cache = await spawnCache(
      {
        upstreams: [{ host: upstream.host, plainHttp: true }],
        log: { level: 'warn' },
        ...(s3 ? { storage: { s3: s3.storage(await s3.bucket()) } } : {}),
      },
      at,
      { bundle: bundles[name], nodeFlags: [...(await cacheNodeFlags()), ...flags], env },
    );
    stops.unshift(() => cache.daemon.stop());
    caches[name] = cache;
  }
  const bases: Record<string, string> = { peer: `http://${peer.host}/v2` };
  for (const [name, c] of Object.entries(caches))
    bases[name] = `http://${c.host}/v2/127.0.0.1_${upstream.port}`;
  const sides = Object.keys(bases);
  const kept = async (side: string, digest: string, bytes: number): Promise<void> => {
    if (side === 'peer') {
      if (s3) await untilInBucket(s3, peerBucket, digest, bytes);
      else await untilStored(proxyBlobFile(work.path, digest), bytes);
    } else if (s3) await untilIdle((caches[side] as CacheProcess).host);
    else await untilStored(cacheBlobFile((caches[side] as CacheProcess).storeDir, digest), bytes);
  };
  const warmup = await pushRandomBlob(upstream, 'bench/big', 16 * MB);
  for (const side of sides) {
    await download(`${bases[side]}/bench/big/blobs/${warmup}`);
    await kept(side, warmup, 16 * MB);
  }
  const cold: Record<string, number[]> = Object.fromEntries(sides.map((s) => [s, []]));
  // Per cold blob, how long each cache held upstream back for its spool or store (its /metrics).
  const waits: Record<string, number[]> = Object.fromEntries(sides.map((s) => [s, []]));
  /** Per cold blob, milliseconds until the first byte (the store's lookups and claim come before it). */
  const firstByte: Record<string, number[]> = Object.fromEntries(sides.map((s) => [s, []]));
  const waited = async (side: string): Promise<number> => {
    if (side === 'peer') return 0;
    const text = await (await fetch(`http://${(caches[side] as CacheProcess).host}/metrics`)).text();
    return Number(/^pullmap_cache_download_disk_wait_seconds_total (\S+)$/m.exec(text)?.[1] ?? 0) * 1000;
  };
  const warm: Record<string, number[]> = Object.fromEntries(sides.map((s) => [s, []]));
  let first = '';
  for (let i = 0; i < coldBlobs; i++) {
    const digest = await pushRandomBlob(upstream, 'bench/big', size);
    first ||= digest;
    await download(`${upstream.url}/v2/bench/big/blobs/${digest}`);
    for (let k = 0; k < sides.length; k++) {
      const side = sides[(i + k) % sides.length] as string;
      const before = await waited(side);
      const got = await download(`${bases[side]}/bench/big/blobs/${digest}`);
      if (got.bytes !== size) throw new Error(`${side}: short cold GET`);
      cold[side]?.push(mbps(got.bytes, got.seconds));
      firstByte[side]?.push(got.firstByteSeconds * 1000);
      await kept(side, digest, size);
      waits[side]?.push((await waited(side)) - before);
      execFileSync('sync');
    }
  }
  for (let i = 0; i < warmRounds; i++)
    for (let k = 0; k < sides.length; k++) {
      const side = sides[(i + k) % sides.length] as string;
      const got = await download(`${bases[side]}/bench/big/blobs/${first}`);
      warm[side]?.push(mbps(got.bytes, got.seconds));
    }
  for (const name of ['A', 'B'])
    await Promise.all(Array.from({ length: 5 }, () => download(`${bases[name]}/bench/big/blobs/${first}`)));
  const f = (xs: number[]): string => xs.map((x) => x.toFixed(0)).join(' ');
  console.log(`mode ${mode}, ${size / MB} MiB blobs, ${coldBlobs} cold, ${warmRounds} warm rounds`);
  for (const side of sides) {
    const c = cold[side] as number[];
    const w = warm[side] as number[];
    const ratio =
      side === 'peer'
        ? ''
        : ` cold ${(median(c) / median(cold['peer'] as number[])).toFixed(2)}x warm ${(median(w) / median(warm['peer'] as number[])).toFixed(2)}x peakRSS ${(await peakRssMb((caches[side] as CacheProcess).daemon.pid)).toFixed(0)} MiB, waited for the spool ${f(waits[side] as number[])} ms`;
    console.log(
      `${side}: cold ${median(c).toFixed(0)} MB/s (${f(c)}, first byte ${f(firstByte[side] as number[])} ms) warm ${median(w).toFixed(0)} MB/s (${f(w)})${ratio}`,
    );
  }
  console.log(`peer peak RSS ${(await peakRssMb(peer.daemon.pid)).toFixed(0)} MiB`);
} finally {
  for (const stop of stops) await stop().catch(() => {});
}
