// `npm run bench:ceiling`: how close to the reference a Node.js process can get on a cold pull-through,
// next to what the cache does. Fresh 200 MB blobs are pulled cold, once through each of:
//   reference   the Debian docker-registry in proxy mode (streams to the client and stores the blob
//               through a second, background fetch from upstream)
//   pullmap     the cache as shipped (dist/pullmap.js with the image's Node flags)
//   minimal     bench/minimal-pull-through.ts: a raw socket into reused buffers, inline hash and a
//               synchronous positional write; the floor of per-byte work for a Node.js process
//   no store    the same without writing the blob anywhere (hash and pass-through only)
// The order rotates per blob. Prints each round (MB/s and CPU ms of the serving process), then medians
// and ratios against the reference. Loopback only; about 20 seconds.
import { execFileSync } from 'node:child_process';
import { spawnCache } from '../test/harness/cache.ts';
import { freePort, startDaemon, tempDir } from '../test/harness/process.ts';
import { startRegistry } from '../test/harness/registry.ts';
import {
  cacheBlobFile,
  download,
  proxyBlobFile,
  pushRandomBlob,
  startProxyRegistry,
  untilStored,
} from './cache.ts';
import { cpuMicros, imageNodeFlags, median } from './measure.ts';

const BLOBS = 3;
const BLOB_BYTES = 200 * 1024 * 1024;
const REPOSITORY = 'bench/ceiling';

/** One cold GET through a server: MB/s, and the CPU ms the serving process spent on it. */
async function pull(url: string, pid: number): Promise<{ mbps: number; cpu: number }> {
  const before = await cpuMicros(pid);
  const { bytes, seconds } = await download(url);
  if (bytes !== BLOB_BYTES) throw new Error(`GET ${url} came back with ${bytes} bytes`);
  return { mbps: bytes / 1e6 / seconds, cpu: ((await cpuMicros(pid)) - before) / 1000 };
}

const work = await tempDir('bench-ceiling');
const upstream = await startRegistry();
const stops: (() => Promise<void>)[] = [() => upstream.close(), () => work.remove()];
try {
  const digests: string[] = [];
  for (let i = 0; i < BLOBS; i++) digests.push(await pushRandomBlob(upstream, REPOSITORY, BLOB_BYTES));
  const flags = await imageNodeFlags();

  const { host: proxyHost, daemon: proxy } = await startProxyRegistry(upstream.url, work.path);
  stops.unshift(() => proxy.stop());
  const cache = await spawnCache(
    { upstreams: [{ host: upstream.host, plainHttp: true }], log: { level: 'warn' } },
    work.path,
    { bundle: true, nodeFlags: flags },
  );
  stops.unshift(() => cache.daemon.stop());
  const minimal = async (extra: string[]) => {
    const port = await freePort();
    const daemon = await startDaemon({
      name: 'minimal pull-through',
      command: process.execPath,
      args: [
        ...flags,
        new URL('./minimal-pull-through.ts', import.meta.url).pathname,
        String(port),
        String(upstream.port),
        REPOSITORY,
        work.path,
        ...extra,
      ],
      ready: async () => (await fetch(`http://127.0.0.1:${port}/`)).ok,
    });
    stops.unshift(() => daemon.stop());
    return { base: `http://127.0.0.1:${port}/`, pid: daemon.pid };
  };
  const servers = [
    { name: 'reference', base: `http://${proxyHost}/v2/${REPOSITORY}/blobs/`, pid: proxy.pid },
    {
      name: 'pullmap',
      base: `http://${cache.host}/v2/127.0.0.1_${upstream.port}/${REPOSITORY}/blobs/`,
      pid: cache.daemon.pid,
    },
    { name: 'minimal', ...(await minimal([])) },
    { name: 'no store', ...(await minimal(['--no-store'])) },
  ];
  const results = new Map(servers.map((s) => [s.name, [] as { mbps: number; cpu: number }[]]));
  console.log('## cold pull-through ceiling (200 MB blobs, loopback)');
  for (const [round, digest] of digests.entries()) {
    // Upstream's copy is read once first, so nobody pays for upstream's disk.
    await download(`${upstream.url}/v2/${REPOSITORY}/blobs/${digest}`);
    const line: string[] = [];
    for (let k = 0; k < servers.length; k++) {
      const server = servers[(round + k) % servers.length]!;
      const r = await pull(`${server.base}${digest}`, server.pid);
      // Background work (the reference's own copy, the cache's fsync and rename) must not overlap the next.
      if (server.name === 'reference') await untilStored(proxyBlobFile(work.path, digest), BLOB_BYTES);
      if (server.name === 'pullmap') await untilStored(cacheBlobFile(cache.storeDir, digest), BLOB_BYTES);
      // Nor the kernel's writeback of what went through the page cache.
      execFileSync('sync');
      results.get(server.name)!.push(r);
      line.push(`${server.name} ${r.mbps.toFixed(0)} MB/s (${r.cpu.toFixed(0)} ms CPU)`);
    }
    console.log(`round ${round + 1}: ${line.join(', ')}`);
  }
  const reference = median(results.get('reference')!.map((r) => r.mbps));
  for (const [name, rs] of results) {
    const mbps = median(rs.map((r) => r.mbps));
    console.log(
      `${name.padEnd(10)} median ${mbps.toFixed(0)} MB/s, ${median(rs.map((r) => r.cpu)).toFixed(0)} ms CPU per blob  RATIO ${(mbps / reference).toFixed(2)}`,
    );
  }
} finally {
  for (const stop of stops) await stop().catch(() => {});
}
