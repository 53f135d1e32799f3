// The cluster map source alone in a process of its own, for bench/controller.ts: so the RSS it reports
// is the controller's, not the benchmark driver's (which creates thousands of objects and, in
// `npm run bench`, has run every other benchmark first). Started with the image's Node flags.
//
// IPC, parent → child: { type: 'expect', id, namespace, image, mapped }: answer { type: 'watching', id }
// at once, then { type: 'seen', id, at } once the snapshot maps `image` (in `namespace`) to `mapped`;
// { type: 'memory' }: answer with process.memoryUsage(). Child → parent first: { type: 'ready', maps,
// ms } after the first snapshot.

import { startClusterMapSource } from '../src/controller/map-source.ts';
import { DEFAULT_DECISION_SETTINGS, decideImage } from '../src/core/mapping/index.ts';
import { loadKubeConfig } from '../src/kube/config.ts';
import { silentLogger } from '../src/observe/log.ts';

export type ToSource =
  | { type: 'expect'; id: number; namespace: string; image: string; mapped: string }
  | { type: 'memory' };
export type FromSource =
  | { type: 'ready'; maps: number; ms: number }
  | { type: 'watching'; id: number }
  | { type: 'seen'; id: number; at: number }
  | { type: 'memory'; usage: NodeJS.MemoryUsage };

const send = (message: FromSource): void => {
  process.send?.(message);
};
/** Milliseconds since the epoch with sub-millisecond resolution, comparable across processes. */
const now = (): number => performance.timeOrigin + performance.now();

const started = performance.now();
// As `pullmap serve --maps-from cluster --kubeconfig FILE` loads it.
const kubeConfig = await loadKubeConfig({ path: process.argv[2] as string });
const source = startClusterMapSource({ kubeConfig, writeStatus: false, logger: silentLogger });
const first = await source.ready();
send({ type: 'ready', maps: first.analysis.verdicts.length, ms: performance.now() - started });

process.on('message', (message: ToSource) => {
  if (message.type === 'memory') {
    send({ type: 'memory', usage: process.memoryUsage() });
    return;
  }
  const { id, namespace, image, mapped } = message;
  const ctx = { namespace, namespaceLabels: {}, podLabels: {} };
  const check = (): boolean => {
    const s = source.current();
    if (
      s === undefined ||
      decideImage(s.snapshot, DEFAULT_DECISION_SETTINGS, image, ctx, () => undefined).image !== mapped
    )
      return false;
    send({ type: 'seen', id, at: now() });
    return true;
  };
  if (!check()) {
    const unsubscribe = source.subscribe(() => {
      if (check()) unsubscribe();
    });
  }
  send({ type: 'watching', id });
});
process.on('disconnect', () => {
  void source.close().then(() => process.exit(0));
});
