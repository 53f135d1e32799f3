// Benchmark 4: the cluster map source with 2,000 ImageMaps across 200 namespaces in a real etcd +
// kube-apiserver. Measures the time from a map change (the PATCH returning) to the source's snapshot
// deciding with it, against a bare list-watch of the same resource receiving the event in the same
// process (the floor: what the API server and the watch cost), plus the time to the first snapshot and
// the process RSS. Bounded: every wait gives up after 30 s.

import { startClusterMapSource } from '../src/controller/map-source.ts';
import { decideImage } from '../src/core/mapping/index.ts';
import { kubeClient } from '../src/kube/client.ts';
import { ListWatch } from '../src/kube/list-watch.ts';
import { silentLogger } from '../src/observe/log.ts';
import { kubeApiserverBinary, startKube } from '../test/harness/kube.ts';
import { type BenchResult, median, percentile } from './measure.ts';

const NAMESPACES = 200;
const MAPS_PER_NAMESPACE = 10;
const CHANGES = 30;
const TARGET_P99_MS = 1000;

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
    await pool(maps, 32, async ({ ns, j }) => {
      await client.request('POST', `/apis/pullmap.dev/v1alpha1/namespaces/${ns}/imagemaps`, {
        body: mapBody(ns, j, 0),
      });
    });
    const createdMs = performance.now() - t0;

    const rssBefore = process.memoryUsage().rss;
    const started = performance.now();
    const source = startClusterMapSource({
      kubeConfig: kube.kubeConfig(),
      writeStatus: false,
      logger: silentLogger,
    });
    const first = await source.ready();
    const firstSnapshotMs = performance.now() - started;
    if (first.analysis.verdicts.length !== maps.length)
      throw new Error(`first snapshot has ${first.analysis.verdicts.length} maps, expected ${maps.length}`);

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
      const expected = `mirror-${j}.example/v${n}/registry-${j}.example/x:1`;
      const updated = (await client.request('PATCH', path(ns, j), {
        contentType: 'application/merge-patch+json',
        body: { spec: mapBody(ns, j, n).spec },
      })) as { metadata: { resourceVersion: string } };
      const patched = performance.now();
      const [inSnapshot, inWatch] = await Promise.all([
        waitFor(
          `snapshot with change ${n}`,
          () => {
            const s = source.current();
            const ctx = { namespace: ns, namespaceLabels: {}, podLabels: {} };
            return (
              s !== undefined &&
              decideImage(s.snapshot, `registry-${j}.example/x:1`, ctx, () => undefined).image === expected
            );
          },
          (poke) => source.subscribe(poke),
        ),
        waitFor(
          `bare watch event ${n}`,
          () => seen.get(`${ns}/map-${j}`) === updated.metadata.resourceVersion,
          (poke) => {
            barePokes.add(poke);
            return () => barePokes.delete(poke);
          },
        ),
      ]);
      sourceMs.push(inSnapshot - patched);
      bareMs.push(inWatch - patched);
    }
    const rss = process.memoryUsage().rss;
    await bare.stop();
    await source.close();
    await client.close();

    const p50 = median(sourceMs);
    const p99 = percentile(sourceMs, 99);
    const b50 = median(bareMs);
    const b99 = percentile(bareMs, 99);
    console.log('## controller: map change → snapshot');
    console.log(
      `setup: ${NAMESPACES} namespaces, ${maps.length} ImageMaps created in ${(createdMs / 1000).toFixed(1)} s`,
    );
    console.log(`first snapshot (list of both kinds + analysis): ${firstSnapshotMs.toFixed(0)} ms`);
    console.log(`${CHANGES} changes, change → snapshot: p50 ${p50.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms`);
    console.log(
      `same changes, change → bare watch event: p50 ${b50.toFixed(1)} ms, p99 ${b99.toFixed(1)} ms`,
    );
    console.log(`analyses run: ${source.stats.analyses}`);
    console.log(
      `process RSS: ${mib(rssBefore)} before the source, ${mib(rss)} with it (${mib(rss - rssBefore)} more, bare watch included)\n`,
    );
    return {
      name,
      target: `p99 ≤ ${TARGET_P99_MS} ms`,
      measured: `p50 ${p50.toFixed(0)} ms, p99 ${p99.toFixed(0)} ms, RSS ${mib(rss)}`,
      ratio: `${(p50 / b50).toFixed(1)}× bare watch p50 (${b50.toFixed(1)} ms)`,
      pass: p99 <= TARGET_P99_MS,
    };
  } finally {
    await kube.stop();
  }
}

if (import.meta.main) await runControllerBench();
