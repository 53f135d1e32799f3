// Where the webhook's memory goes under unique pods (issue 25 §3): one `pullmap serve` (the bundle, with
// the image's Node flags unless FLAGS overrides them), N reviews of 5-container pods that each have a
// label of their own, and at 0, 1k, 25k, 50k, 75k and 100k reviews: VmRSS split into anonymous and
// file-backed pages, and the V8 heap as the process sees it (a preloaded module answers SIGUSR2).
// Not part of `npm run bench` (its webhook section prints the RSS figure); run it when choosing flags:
//   npm run build && node bench/webhook-memory.ts
//   FLAGS="--max-semi-space-size=2 --optimize-for-size" N=50000 node bench/webhook-memory.ts
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Agent, request } from 'undici';
import { buildImage, pushImage } from '../test/harness/images.ts';
import { freePort, startDaemon, tempDir } from '../test/harness/process.ts';
import { startRegistry } from '../test/harness/registry.ts';
import { makePki } from '../test/harness/tls.ts';
import { closedLoop, nodeFlags } from './measure.ts';
import { BENCH_IMAGES, review as benchReview } from './webhook.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const N = Number(process.env.N ?? 100_000);
const MARKS = [1000, 25_000, 50_000, 75_000, 100_000].filter((m) => m <= N);

const PROBE = `
import { appendFileSync, readFileSync } from 'node:fs';
process.on('SIGUSR2', () => {
  const status = readFileSync('/proc/self/status', 'utf8');
  const kb = (k) => Number(new RegExp('^' + k + ':\\\\s+(\\\\d+)', 'm').exec(status)?.[1]);
  const m = process.memoryUsage();
  appendFileSync(process.env.PROBE_OUT, JSON.stringify({ rss: kb('VmRSS'), anon: kb('RssAnon'), file: kb('RssFile'),
    heapUsed: m.heapUsed >> 10, heapTotal: m.heapTotal >> 10, external: m.external >> 10 }) + '\\n');
});
`;

const review = (uid: number): string => benchReview(uid, true, 'mem');

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
  await agent.close();
  await serve.stop();
} finally {
  await registry.close();
  await dir.remove();
}
