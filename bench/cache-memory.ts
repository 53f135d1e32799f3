// Where the cache's memory goes: one `pullmap cache` process (the bundle, with the cache's Node flags),
// on disk or on S3 (SeaweedFS), through the phases the benchmark puts it through: started, after a
// cold 200 MB pull, after 3 s of manifest GETs 16 at once, while five clients read the warm blob at
// once. For each phase: resident set
// (VmRSS, peak VmHWM), process.memoryUsage() as the process itself reports it (a preloaded module
// logs it), and the largest anonymous mappings from /proc/PID/smaps (aligned arenas, thread stacks and
// heaps, the V8 heap). Not part of `npm run bench`: run it when the memory budget is in question:
//   npm run build && node bench/cache-memory.ts [disk|s3] [KEY=VALUE environment] [--node-flag ...]
// (environment such as MALLOC_ARENA_MAX=2, and Node/V8 flags added after the cache's, for A/B runs).
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { spawnCache } from '../test/harness/cache.ts';
import { buildImage, pushImage } from '../test/harness/images.ts';
import { tempDir } from '../test/harness/process.ts';
import { startRegistry } from '../test/harness/registry.ts';
import { startS3 } from '../test/harness/s3.ts';
import { download, pushRandomBlob } from './cache.ts';
import { cacheNodeFlags, mappingsOf } from './measure.ts';

const MB = 1024 * 1024;

/** A module preloaded into the cache process: logs its own view of its memory twice a second. */
const PROBE = `
const peak = { rss: 0, heapTotal: 0, heapUsed: 0, external: 0, arrayBuffers: 0 };
setInterval(() => {
  const m = process.memoryUsage();
  for (const k of Object.keys(peak)) peak[k] = Math.max(peak[k], m[k]);
  process.stderr.write('MEM ' + JSON.stringify({ now: m, peak }) + '\\n');
}, 100).unref();
`;

interface Sample {
  rssMb: number;
  hwmMb: number;
  /** Anonymous mappings of 4 MiB and more (size in MiB -> count), and file mappings of 1 MiB and more (MiB). */
  bigAnon: Record<string, number>;
  anonMb: number;
  fileMb: number;
}

async function sample(pid: number): Promise<Sample> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string): number => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0);
  const bigAnon: Record<string, number> = {};
  for (const { path, perms, rssKb } of await mappingsOf(pid)) {
    const rss = rssKb / 1024;
    if (rss >= 1 && path.startsWith('/')) {
      const key = `file ${path.split('/').at(-1)} ${perms}`;
      bigAnon[key] = Math.round(((bigAnon[key] ?? 0) + rss) * 10) / 10;
    }
    if (rss >= 4 && (path === '' || path.startsWith('['))) {
      const key = `${Math.round(rss)}MiB${path ? ` ${path}` : ''}`;
      bigAnon[key] = (bigAnon[key] ?? 0) + 1;
    }
  }
  return {
    rssMb: kb('VmRSS') / 1024,
    hwmMb: kb('VmHWM') / 1024,
    bigAnon,
    anonMb: kb('RssAnon') / 1024,
    fileMb: kb('RssFile') / 1024,
  };
}

async function main(): Promise<void> {
  const mode = process.argv[2] === 's3' ? 's3' : 'disk';
  const work = await tempDir('cache-memory');
  const upstream = await startRegistry();
  const probe = join(work.path, 'probe.mjs');
  await writeFile(probe, PROBE);
  const stops: (() => Promise<void>)[] = [() => upstream.close(), () => work.remove()];
  try {
    const digest = await pushRandomBlob(upstream, 'bench/big', 200 * MB);
    const image = buildImage({ files: { 'id.txt': 'manifests\n' } });
    const manifestDigest = await pushImage(upstream, 'bench/small', 'v1', image);
    let storage: Record<string, unknown> | undefined;
    if (mode === 's3') {
      const s3 = await startS3();
      stops.unshift(() => s3.close());
      storage = { s3: s3.storage(await s3.bucket()) };
    }
    await mkdir(join(work.path, 'c'), { recursive: true });
    let memLines = '';
    const env = { ...process.env };
    const extraFlags = process.argv.slice(3).filter((arg) => arg.startsWith('--'));
    for (const arg of process.argv.slice(3)) {
      if (arg.startsWith('--')) continue;
      const [k, v] = arg.split('=');
      if (k && v !== undefined) env[k] = v;
    }
    const cache = await spawnCache(
      {
        upstreams: [{ host: upstream.host, plainHttp: true }],
        log: { level: 'warn' },
        ...(storage ? { storage } : {}),
      },
      join(work.path, 'c'),
      { bundle: true, nodeFlags: [...(await cacheNodeFlags()), ...extraFlags, '--import', probe], env },
    );
    stops.unshift(() => cache.daemon.stop());
    const lastMem = (): string => {
      memLines = cache.daemon.output();
      const lines = memLines.split('\n').filter((l) => l.startsWith('MEM '));
      const last = JSON.parse(lines.at(-1)?.slice(4) ?? '{}') as {
        now: Record<string, number>;
        peak: Record<string, number>;
      };
      const f = (o: Record<string, number>): string =>
        Object.entries(o)
          .map(([k, v]) => `${k} ${(v / MB).toFixed(1)}`)
          .join(', ');
      return `memoryUsage now: ${f(last.now)}\n  memoryUsage peak: ${f(last.peak)}`;
    };
    const report = async (phase: string): Promise<void> => {
      await sleep(300);
      const s = await sample(cache.daemon.pid);
      console.log(
        `${phase}: RSS ${s.rssMb.toFixed(1)} MiB (anon ${s.anonMb.toFixed(1)}, file ${s.fileMb.toFixed(1)}), peak ${s.hwmMb.toFixed(1)} MiB`,
      );
      console.log(`  ${lastMem()}`);
      console.log(
        `  anonymous mappings >= 4 MiB (count), file mappings >= 1 MiB (MiB): ${JSON.stringify(s.bigAnon)}`,
      );
    };
    await report('started');
    const base = `http://${cache.host}/v2/127.0.0.1_${upstream.port}/bench/big/blobs/${digest}`;
    await download(base);
    // Until the copy is committed (renamed, or uploaded to the bucket).
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      const text = await (await fetch(`http://${cache.host}/metrics`)).text();
      if (/^pullmap_cache_downloads_in_flight 0$/m.test(text)) break;
      await sleep(20);
    }
    await report('after a cold 200 MB pull (stored)');
    // As the full benchmark's manifest step: 16 loops of GETs by digest, for 3 s.
    const manifestUrl = `http://${cache.host}/v2/127.0.0.1_${upstream.port}/bench/small/manifests/${manifestDigest}`;
    const until = performance.now() + 3000;
    let served = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (performance.now() < until) {
          const res = await request(manifestUrl, { headers: { accept: image.manifest.mediaType } });
          await res.body.dump();
          if (res.statusCode !== 200) throw new Error(`manifest GET answered ${res.statusCode}`);
          served++;
        }
      }),
    );
    await report(`after ${served} manifest GETs by digest, 16 at once`);
    await Promise.all(Array.from({ length: 5 }, () => download(base)));
    await report('after 5 concurrent warm reads');
  } finally {
    for (const stop of stops) await stop().catch(() => {});
  }
}

await main();
