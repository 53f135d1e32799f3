// Benchmark 4: the cluster map source with 2,000 ImageMaps across 200 namespaces in a real etcd +
// kube-apiserver. Measures the time from a map change (the PATCH returning) to the source's snapshot
// deciding with it, against a bare list-watch of the same resource receiving the event in this process
// (the floor: what the API server and the watch cost), plus the time to the first snapshot and the
// source's RSS at 250, 500, 1,000 and 2,000 maps. The source runs in a process of its own
// (bench/controller-source.ts, the image's Node flags), so the RSS is the controller's and not this
// driver's. Bounded: every wait gives up after 30 s.

import { type ChildProcess, fork } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { kubeClient } from '../src/kube/client.ts';
import { ListWatch } from '../src/kube/list-watch.ts';
import { silentLogger } from '../src/observe/log.ts';
import { kubeApiserverBinary, startKube } from '../test/harness/kube.ts';
import type { FromSource, ToSource } from './controller-source.ts';
import { type BenchResult, imageNodeFlags, median, percentile } from './measure.ts';

const NAMESPACES = 200;
const MAPS_PER_NAMESPACE = 10;
const CHANGES = 30;
const TARGET_P99_MS = 1000;
const TARGET_RSS_MIB = 200;
/** Map counts at which a fresh source process lists everything and its RSS is read. */
const STAGES = [250, 500, 1000, NAMESPACES * MAPS_PER_NAMESPACE];

async function pool<T>(items: readonly T[], width: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < items.length) await work(items[next++]!);
    }),
  );
}

function waitFor(
  what: string,
  ok: () => boolean,
  subscribe: (poke: () => void) => () => void,
): Promise<number> {
  return new Promise((resolve, reject) => {
    const poke = (): void => {
      if (!ok()) return;
      clearTimeout(timer);
      unsubscribe();
      resolve(performance.now());
    };
    const timer = setTimeout(() => {
      unsubscribe();
      reject(new Error(`benchmark gave up waiting for ${what}`));
    }, 30_000);
    const unsubscribe = subscribe(poke);
    poke();
  });
}

const mib = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(0)} MiB`;

/** A source process: its messages by type, and a way to wait for one. */
interface SourceProcess {
  readonly child: ChildProcess;
  next<T extends FromSource['type']>(
    what: string,
    type: T,
    match?: (m: Extract<FromSource, { type: T }>) => boolean,
  ): Promise<Extract<FromSource, { type: T }>>;
  send(message: ToSource): void;
  /** Current and peak RSS (VmRSS, VmHWM) from /proc. */
  rss(): Promise<{ now: number; peak: number }>;
  stop(): Promise<void>;
}

/** Source processes not yet exited: killed when the benchmark ends early. */
const running = new Set<ChildProcess>();

/**
 * controller-source.ts bundled as `npm run build` bundles pullmap (split: code behind dynamic imports
 * stays out until used): the process then runs JavaScript, as the image does (running .ts makes Node
 * load its type stripper, about 18 MiB more RSS).
 */
async function bundleSource(dir: string): Promise<string> {
  const outdir = join(dir, 'controller-source');
  await build({
    entryPoints: [fileURLToPath(new URL('./controller-source.ts', import.meta.url))],
    outdir,
    outExtension: { '.js': '.mjs' },
    splitting: true,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node24',
    banner: {
      js: "import { createRequire as __benchCreateRequire } from 'node:module';\nconst require = __benchCreateRequire(import.meta.url);",
    },
    logLevel: 'warning',
  });
  return join(outdir, 'controller-source.mjs');
}

async function startSourceProcess(script: string, kubeconfigPath: string): Promise<SourceProcess> {
  const child = fork(script, [kubeconfigPath], {
    execArgv: await imageNodeFlags(),
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const inbox: FromSource[] = [];
  const waiters = new Set<() => void>();
  child.on('message', (m: FromSource) => {
    inbox.push(m);
    for (const w of waiters) w();
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  running.add(child);
  void exited.then(() => running.delete(child));
  return {
    child,
    next(what, type, match = () => true) {
      type M = Extract<FromSource, { type: typeof type }>;
      return new Promise((resolve, reject) => {
        const look = (): void => {
          const i = inbox.findIndex((m) => m.type === type && match(m as M));
          if (i < 0) return;
          clearTimeout(timer);
          waiters.delete(look);
          resolve(inbox.splice(i, 1)[0] as M);
        };
        const timer = setTimeout(() => {
          waiters.delete(look);
          reject(new Error(`benchmark gave up waiting for ${what}`));
        }, 30_000);
        waiters.add(look);
        look();
      });
    },
    send: (message) => child.send(message),
    async rss() {
      const status = await readFile(`/proc/${child.pid}/status`, 'utf8');
      const kib = (field: string) =>
        Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1]) * 1024;
      return { now: kib('VmRSS'), peak: kib('VmHWM') };
    },
    async stop() {
      child.disconnect();
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

export async function runControllerBench(): Promise<BenchResult> {
  const name = `map change → snapshot, ${NAMESPACES * MAPS_PER_NAMESPACE} maps (vs bare watch)`;
  try {
    await kubeApiserverBinary();
  } catch {
    console.log('## controller\nskipped: no kube-apiserver binary (run bash scripts/kube-apiserver.sh)\n');
    return { name, target: `p99 ≤ ${TARGET_P99_MS} ms`, measured: 'skipped', ratio: '-', pass: true };
  }
  const kube = await startKube();
  try {
    await kube.kubectl(['apply', '-k', new URL('../deploy/crds/', import.meta.url).pathname]);
    await kube.kubectl([
      'wait',
      '--for=condition=Established',
      'crd/imagemaps.pullmap.dev',
      'crd/clusterimagemaps.pullmap.dev',
    ]);
    const client = kubeClient(kube.kubeConfig());
    const namespaces = Array.from({ length: NAMESPACES }, (_, i) => `bench-${i}`);
    const t0 = performance.now();
    await pool(namespaces, 32, async (ns) => {
      await client.request('POST', '/api/v1/namespaces', { body: { metadata: { name: ns } } });
    });
    const maps = namespaces.flatMap((ns) =>
      Array.from({ length: MAPS_PER_NAMESPACE }, (_, j) => ({ ns, j })),
    );
    const mapBody = (ns: string, j: number, version: number) => ({
      apiVersion: 'pullmap.dev/v1alpha1',
      kind: 'ImageMap',
      metadata: { name: `map-${j}`, namespace: ns },
      spec: {
        mappings: [
          { from: `registry-${j}.example/`, to: `mirror-${j}.example/v${version}/registry-${j}.example/` },
          { from: `team-${j}/app`, to: `mirror-${j}.example/v${version}/apps/team-${j}/app` },
          { from: `quay.io/team-${j}/`, to: `mirror-${j}.example/v${version}/quay.io/team-${j}/` },
        ],
      },
    });
    const path = (ns: string, j: number): string =>
      `/apis/pullmap.dev/v1alpha1/namespaces/${ns}/imagemaps/map-${j}`;
    const create = (from: number, to: number) =>
      pool(maps.slice(from, to), 32, async ({ ns, j }) => {
        await client.request('POST', `/apis/pullmap.dev/v1alpha1/namespaces/${ns}/imagemaps`, {
          body: mapBody(ns, j, 0),
        });
      });
    let createdMs = performance.now() - t0;
    const byCount: { maps: number; firstMs: number; rss: number; peak: number; heapUsed: number }[] = [];
    let source: SourceProcess | undefined;
    const script = await bundleSource(kube.dir);
    for (const [i, count] of STAGES.entries()) {
      const createdFrom = performance.now();
      await create(STAGES[i - 1] ?? 0, count);
      createdMs += performance.now() - createdFrom;
      await source?.stop();
      source = await startSourceProcess(script, kube.kubeconfigPath);
      const ready = await source.next(`first snapshot of ${count} maps`, 'ready');
      if (ready.maps !== count) throw new Error(`first snapshot has ${ready.maps} maps, expected ${count}`);
      source.send({ type: 'memory' });
      const { usage } = await source.next('memory usage', 'memory');
      const rss = await source.rss();
      byCount.push({
        maps: count,
        firstMs: ready.ms,
        rss: rss.now,
        peak: rss.peak,
        heapUsed: usage.heapUsed,
      });
    }
    const sourceProcess = source!;

    const seen = new Map<string, string>();
    const bare = new ListWatch({
      client,
      path: '/apis/pullmap.dev/v1alpha1/imagemaps',
      logger: silentLogger,
      onChange: (change) => {
        if (change.type === 'upsert')
          seen.set(change.key, bare.store.get(change.key)!.metadata.resourceVersion ?? '');
        for (const poke of barePokes) poke();
      },
    });
    const barePokes = new Set<() => void>();
    bare.start();
    await waitFor(
      'bare watch sync',
      () => bare.hasSynced(),
      (poke) => {
        barePokes.add(poke);
        return () => barePokes.delete(poke);
      },
    );

    const sourceMs: number[] = [];
    const bareMs: number[] = [];
    for (let n = 1; n <= CHANGES; n++) {
      const { ns, j } = maps[(n * 7919) % maps.length]!;
      const image = `registry-${j}.example/x:1`;
      const mapped = `mirror-${j}.example/v${n}/registry-${j}.example/x:1`;
      sourceProcess.send({ type: 'expect', id: n, namespace: ns, image, mapped });
      await sourceProcess.next(`source watching for change ${n}`, 'watching', (m) => m.id === n);
      const updated = (await client.request('PATCH', path(ns, j), {
        contentType: 'application/merge-patch+json',
        body: { spec: mapBody(ns, j, n).spec },
      })) as { metadata: { resourceVersion: string } };
      const patched = performance.timeOrigin + performance.now();
      const [inSnapshot, inWatch] = await Promise.all([
        sourceProcess.next(`snapshot with change ${n}`, 'seen', (m) => m.id === n).then((m) => m.at),
        waitFor(
          `bare watch event ${n}`,
          () => seen.get(`${ns}/map-${j}`) === updated.metadata.resourceVersion,
          (poke) => {
            barePokes.add(poke);
            return () => barePokes.delete(poke);
          },
        ).then((at) => performance.timeOrigin + at),
      ]);
      sourceMs.push(inSnapshot - patched);
      bareMs.push(inWatch - patched);
    }
    const after = await sourceProcess.rss();
    sourceProcess.send({ type: 'memory' });
    const { usage: afterUsage } = await sourceProcess.next('memory usage', 'memory');
    await bare.stop();
    await sourceProcess.stop();
    await client.close();

    const p50 = median(sourceMs);
    const p99 = percentile(sourceMs, 99);
    const b50 = median(bareMs);
    const b99 = percentile(bareMs, 99);
    console.log('## controller: map change → snapshot');
    console.log(
      `setup: ${NAMESPACES} namespaces, ${maps.length} ImageMaps created in ${(createdMs / 1000).toFixed(1)} s`,
    );
    const last = byCount[byCount.length - 1]!;
    console.log(`first snapshot (list of both kinds + analysis): ${last.firstMs.toFixed(0)} ms`);
    console.log(`${CHANGES} changes, change → snapshot: p50 ${p50.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms`);
    console.log(
      `same changes, change → bare watch event: p50 ${b50.toFixed(1)} ms, p99 ${b99.toFixed(1)} ms`,
    );
    console.log('source process RSS against the map count (a fresh process lists them all):');
    for (const c of byCount)
      console.log(
        `  ${String(c.maps).padStart(5)} maps: RSS ${mib(c.rss)} (peak ${mib(c.peak)}), heap used ${mib(c.heapUsed)}, first snapshot ${c.firstMs.toFixed(0)} ms`,
      );
    console.log(
      `  after ${CHANGES} changes at ${last.maps} maps: RSS ${mib(after.now)} (peak ${mib(after.peak)}), heap used ${mib(afterUsage.heapUsed)} of ${mib(afterUsage.heapTotal)}; target < ${TARGET_RSS_MIB} MiB\n`,
    );
    const rssOk = Math.max(after.now, after.peak) < TARGET_RSS_MIB * 1024 * 1024;
    return {
      name,
      target: `p99 ≤ ${TARGET_P99_MS} ms, RSS < ${TARGET_RSS_MIB} MiB`,
      measured: `p50 ${p50.toFixed(0)} ms, p99 ${p99.toFixed(0)} ms, RSS ${mib(after.now)} (peak ${mib(after.peak)})`,
      ratio: `${(p50 / b50).toFixed(1)}× bare watch p50 (${b50.toFixed(1)} ms)`,
      pass: p99 <= TARGET_P99_MS && rssOk,
    };
  } finally {
    for (const child of running) child.kill('SIGKILL');
    await kube.stop();
  }
}

if (import.meta.main) await runControllerBench();
