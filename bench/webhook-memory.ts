// Where the webhook's memory goes under unique pods (issue 25 §3): one `pullmap serve` (the bundle, with
// the image's Node flags unless FLAGS overrides them), N reviews of 5-container pods that each have a
// label of their own, and at 0, 1k, 25k, 50k, 75k and 100k reviews: VmRSS split into anonymous and
// file-backed pages, and the V8 heap as the process sees it (a preloaded module answers SIGUSR2).
// Not part of `npm run bench` (its webhook section prints the RSS figure); run it when choosing flags:
//   npm run build && node bench/webhook-memory.ts
//   FLAGS="--max-semi-space-size=2 --optimize-for-size" N=50000 node bench/webhook-memory.ts
// At the end, on request: SMAPS=1 resident memory by mapping, V8's spaces and the Node modules loaded;
// MALLOC_STATS=1 glibc's arenas (through gdb); PAGEMAP_OUT=FILE which pages of the node binary are
// resident; SERVE_OUT=FILE appends the server's output (with FLAGS="... --trace-gc", its GCs).
import { appendFileSync } from 'node:fs';
import { open, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Agent, request } from 'undici';
import { buildImage, pushImage } from '../test/harness/images.ts';
import { freePort, startDaemon, tempDir } from '../test/harness/process.ts';
import { startRegistry } from '../test/harness/registry.ts';
import { makePki } from '../test/harness/tls.ts';
import { closedLoop, mappingsOf, nodeFlags } from './measure.ts';
import { BENCH_IMAGES, review as benchReview } from './webhook.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const N = Number(process.env.N ?? 100_000);
const MARKS = [1000, 25_000, 50_000, 75_000, 100_000].filter((m) => m <= N);

const PROBE = `
import { appendFileSync, readFileSync } from 'node:fs';
import { getHeapSpaceStatistics, getHeapStatistics } from 'node:v8';
process.on('SIGUSR2', () => {
  const status = readFileSync('/proc/self/status', 'utf8');
  const kb = (k) => Number(new RegExp('^' + k + ':\\\\s+(\\\\d+)', 'm').exec(status)?.[1]);
  const m = process.memoryUsage();
  appendFileSync(process.env.PROBE_OUT, JSON.stringify({ rss: kb('VmRSS'), anon: kb('RssAnon'), file: kb('RssFile'),
    heapUsed: m.heapUsed >> 10, heapTotal: m.heapTotal >> 10, external: m.external >> 10,
    v8: getHeapStatistics(), spaces: getHeapSpaceStatistics(), modules: process.moduleLoadList }) + '\\n');
});
`;

/**
 * SMAPS=1: the process's resident memory by mapping (file, or anonymous), largest first, anonymous
 * regions also by their size (V8 pages are 256 KiB, glibc's thread arenas reserve 64 MiB).
 */
async function residentByMapping(pid: number): Promise<string> {
  const by = new Map<string, number>();
  const anonBySize = new Map<number, [number, number]>();
  for (const { start, end, perms, path, rssKb } of await mappingsOf(pid)) {
    const name = `${path || '[anon]'} ${perms}`;
    by.set(name, (by.get(name) ?? 0) + rssKb);
    if (path === '') {
      const size = (end - start) / 1024;
      const [n, kb] = anonBySize.get(size) ?? [0, 0];
      anonBySize.set(size, [n + 1, kb + rssKb]);
    }
  }
  const rollup = await readFile(`/proc/${pid}/smaps_rollup`, 'utf8');
  const mib = (kb: number) => (kb / 1024).toFixed(1).padStart(6);
  const lines = [...by]
    .filter(([, kb]) => kb >= 256)
    .sort((a, b) => b[1] - a[1])
    .map(([n, kb]) => `  ${mib(kb)} MiB  ${n}`);
  const sizes = [...anonBySize]
    .filter(([, [, kb]]) => kb >= 512)
    .sort((a, b) => b[1][1] - a[1][1])
    .map(([sz, [n, kb]]) => `  ${mib(kb)} MiB resident in ${n} anonymous regions of ${sz} KiB`);
  const lazy = /^LazyFree:\s+(\d+)/m.exec(rollup)?.[1];
  return [...lines, ...sizes, `  LazyFree ${lazy} kB`].join('\n');
}

/**
 * PAGEMAP_OUT=FILE: for each mapping of the node binary, its file offset and which of its pages are
 * resident (from /proc/PID/pagemap), one line each: "fileOffset pages 0110...", a digit per page; the
 * offsets map to the binary's sections and symbols (`readelf -S`, `nm -n -S`).
 */
async function residentPagesOfBinary(pid: number, file: string): Promise<void> {
  const fd = await open(`/proc/${pid}/pagemap`, 'r');
  const lines: string[] = [];
  try {
    for (const { start, end, offset, path } of await mappingsOf(pid)) {
      if (!path.endsWith('bin/node')) continue;
      const pages = (end - start) / 4096;
      const buf = Buffer.alloc(pages * 8);
      await fd.read(buf, 0, buf.length, (start / 4096) * 8);
      let bits = '';
      for (let i = 0; i < pages; i++) bits += buf.readBigUInt64LE(i * 8) >> 63n ? '1' : '0';
      lines.push(`${offset} ${pages} ${bits}`);
    }
  } finally {
    await fd.close();
  }
  await writeFile(file, `${lines.join('\n')}\n`);
}

const review = (uid: number): string => benchReview(uid, true, 'mem');
let mallocStats = '';

const dir = await tempDir('bench-webhook-memory');
const registry = await startRegistry();
try {
  for (const [i, image] of BENCH_IMAGES.entries()) {
    const [repo, tag] = (image.includes('/') ? image : `library/${image}`).split(':') as [string, string];
    await pushImage(registry, `hub/${repo}`, tag, buildImage({ files: { 'id.txt': `image ${i}\n` } }));
  }
  const pki = await makePki(dir.path);
  const config = join(dir.path, 'maps.yaml');
  await writeFile(
    config,
    `apiVersion: pullmap.dev/v1alpha1\nkind: ClusterImageMap\nmetadata: { name: hub }\nspec:\n  mappings:\n    - { from: docker.io/, to: "${registry.host}/hub/", when: IfExists }\n  existence: { positiveTTL: 1h }\n`,
  );
  const probe = join(dir.path, 'probe.mjs');
  const out = join(dir.path, 'probe.jsonl');
  await writeFile(probe, PROBE);
  const flags = await nodeFlags();
  const agent = new Agent({ connect: { ca: pki.caPem }, connections: 32, keepAliveTimeout: 60_000 });
  const port = await freePort();
  const url = `https://127.0.0.1:${port}`;
  const serve = await startDaemon({
    name: 'pullmap serve',
    command: process.execPath,
    args: [
      ...flags,
      '--import',
      probe,
      join(ROOT, 'dist/pullmap.js'),
      'serve',
      ...['--listen', `127.0.0.1:${port}`, '--tls-cert', pki.certPath, '--tls-key', pki.keyPath],
      ...['--config', config, '--plain-http', registry.host, '--log-level', 'warn', '--shutdown-delay', '0'],
    ],
    env: { ...process.env, PROBE_OUT: out },
    onOutput: (text: string) => {
      if (process.env.SERVE_OUT) appendFileSync(process.env.SERVE_OUT, text);
      if (process.env.MALLOC_STATS) mallocStats += text;
    },
    ready: async () => {
      const res = await request(`${url}/readyz`, { dispatcher: agent }).catch(() => undefined);
      await res?.body.dump();
      return res?.statusCode === 200;
    },
  });
  const sample = async (label: string): Promise<void> => {
    process.kill(serve.pid, 'SIGUSR2');
    await sleep(200);
    const m = JSON.parse((await readFile(out, 'utf8')).trim().split('\n').at(-1)!);
    const mib = (kb: number) => (kb / 1024).toFixed(1).padStart(6);
    console.log(
      `${label.padStart(5)}  RSS ${mib(m.rss)}  anon ${mib(m.anon)}  file ${mib(m.file)}  heap used ${mib(m.heapUsed)} of ${mib(m.heapTotal)}  external ${mib(m.external)}  (MiB)`,
    );
  };
  console.log(`# pullmap serve, Node flags: ${flags.join(' ') || '(none)'}; ${N} unique-pod reviews`);
  await sample('0');
  let next = 0;
  const loop = await closedLoop({ concurrency: 32, count: N }, async (i) => {
    const res = await request(`${url}/mutate-pods`, {
      method: 'POST',
      dispatcher: agent,
      headers: { 'content-type': 'application/json' },
      body: review(i),
    });
    const text = await res.body.text();
    if (res.statusCode !== 200 || (i % 1000 === 0 && !JSON.parse(text).response.patch))
      throw new Error(`pullmap answered ${res.statusCode} without a patch: ${text.slice(0, 200)}`);
    if (i + 1 === MARKS[next]) {
      next++;
      await sample(`${(i + 1) / 1000}k`);
    }
  });
  console.log(`${loop.perSecond.toFixed(0)} reviews/s (the machine is shared with this load generator)`);
  if (process.env.MALLOC_STATS) {
    // glibc prints its arenas on the server's own stderr.
    const { execFileSync } = await import('node:child_process');
    execFileSync('gdb', ['-p', String(serve.pid), '-batch', '-ex', 'call (void)malloc_stats()'], {
      stdio: 'ignore',
    });
    await sleep(200);
    console.log(mallocStats.slice(mallocStats.indexOf('Arena 0:')));
  }
  if (process.env.PAGEMAP_OUT) await residentPagesOfBinary(serve.pid, process.env.PAGEMAP_OUT);
  if (process.env.SMAPS) {
    console.log(await residentByMapping(serve.pid));
    await sample('end');
    const m = JSON.parse((await readFile(out, 'utf8')).trim().split('\n').at(-1)!);
    console.log(JSON.stringify(m.v8));
    console.log(
      `  Node's own modules loaded: ${m.modules.filter((x: string) => x.startsWith('NativeModule')).join(' ')}`,
    );
    for (const sp of m.spaces)
      console.log(
        `  ${sp.space_name.padEnd(24)} size ${(sp.space_size >> 10).toString().padStart(7)} KiB  physical ${(sp.physical_space_size >> 10).toString().padStart(7)} KiB  used ${(sp.space_used_size >> 10).toString().padStart(7)} KiB`,
      );
  }
  await agent.close();
  await serve.stop();
} finally {
  await registry.close();
  await dir.remove();
}
