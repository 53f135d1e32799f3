// The cluster map source: ImageMaps and ClusterImageMaps from the API server, analysed together
// (PRODUCT.md §3.3) into the snapshot the webhook reads. Every replica watches and analyses on its own;
// only the Lease holder writes status and events. This file is the wiring: what is re-analysed and how
// is incremental.ts's, the accepted generations accepted.ts's, status writes status-writer.ts's.
//
// Last accepted generation: kept in memory per object and also written to status.lastAccepted (generation
// and spec) whenever a generation is accepted, so a restarted or newly started replica that never saw the
// accepted generation still serves it. `onRejectedUpdate: 'Undeploy'` serves nothing for a rejected map.

import { resourcePath } from '../core/api/crd.ts';
import { API_VERSION, type MapObject } from '../core/api/v1alpha1.ts';
import { isObject } from '../core/json.ts';
import { buildSnapshot, type MapInput, updateSnapshot } from '../core/mapping/index.ts';
import { type KubeClient, kubeClient } from '../kube/client.ts';
import type { KubeCredentials } from '../kube/config.ts';
import { type LeaderElection, startLeaderElection } from '../kube/lease.ts';
import {
  type KubeObject,
  ListWatch,
  type ListWatchOptions,
  type ListWatchTiming,
} from '../kube/list-watch.ts';
import { type Logger, silentLogger } from '../observe/log.ts';
import type { MapSource, MapState } from '../sources/map-source.ts';
import { AcceptedGenerations } from './accepted.ts';
import {
  type AnalysisStep,
  allMaps,
  type GroupedMaps,
  groupMaps,
  IncrementalAnalysis,
  type MapChange,
} from './incremental.ts';
import { StatusWriter } from './status-writer.ts';

export interface ClusterMapSourceOptions {
  readonly kubeConfig: KubeCredentials;
  /** Rejected maps are re-checked on every change in scope and also this often (default 60 s). */
  readonly recheckIntervalMs?: number;
  /** What serves while a map's newest generation is rejected (default: the last accepted generation). */
  readonly onRejectedUpdate?: 'KeepLastAccepted' | 'Undeploy';
  /** Write status and events (default true); only the Lease holder does, when leader election is on. */
  readonly writeStatus?: boolean;
  /** Lease for status writes; omit to write status without election (a single replica). */
  readonly leaderElection?: {
    readonly namespace: string;
    readonly name?: string;
    readonly identity: string;
    readonly leaseDurationMs?: number;
    readonly renewDeadlineMs?: number;
    readonly renewIntervalMs?: number;
  };
  readonly watch?: Partial<ListWatchTiming>;
  /** Deadline of one API request (not a watch). */
  readonly requestTimeoutMs?: number;
  /** false: pull secrets are not copied, and ClusterImageMaps naming one say so in their status. */
  readonly pullSecretCopy?: boolean;
  /** The cache's upstream hosts (--cache-upstreams): maps with cache.enabled are checked against them. */
  readonly cacheUpstreams?: readonly string[] | undefined;
  /** Parallel status and event writes. */
  readonly writeConcurrency?: number;
  readonly logger?: Logger;
  /** Injected clock for condition timestamps. */
  readonly now?: () => Date;
  /**
   * Called with each target a map's status.fill newly lists as Filled or Partial, whichever replica
   * copied it: every replica's webhook then forgets its cached "missing" for it, not only the leader's.
   */
  readonly onFilled?: ((target: string) => void) | undefined;
}

const MAX_FILLS_SEEN = 10_000;

/** The Filled or Partial entries of a map object's status.fill, as target and time. */
function filledEntries(object: KubeObject): { target: string; time: string }[] {
  const images = (object as { status?: { fill?: { images?: unknown } } }).status?.fill?.images;
  if (!Array.isArray(images)) return [];
  return images.flatMap((e: unknown) => {
    if (!isObject(e) || (e.state !== 'Filled' && e.state !== 'Partial')) return [];
    return typeof e.target === 'string' && typeof e.time === 'string'
      ? [{ target: e.target, time: e.time }]
      : [];
  });
}

export interface ClusterMapSource extends MapSource {
  /** The objects as last seen, each with the generation to fall back on: what the validating webhook needs. */
  inputs(): readonly MapInput[] | undefined;
  /** Resolves with the first state (both kinds listed once). */
  ready(): Promise<MapState>;
  /** Called after every swap; returns an unsubscribe function. */
  subscribe(listener: (state: MapState) => void): () => void;
  /**
   * Whether this replica writes to the cluster (status, pull secret copies, fills): it holds the Lease,
   * or runs without an election (a single replica). False when status writing is off.
   */
  mayWrite(): boolean;
  /** Counters for metrics and tests. */
  readonly stats: { analyses: number; statusWrites: number; events: number; watch: ListWatch['stats'][] };
}

type Kind = MapObject['kind'];

/** The two list-watches; objects come out with apiVersion and kind set (lists leave them off items). */
class MapWatches {
  readonly watches: readonly ListWatch[];
  private readonly kinds: readonly Kind[] = ['ImageMap', 'ClusterImageMap'];

  constructor(
    options: Omit<ListWatchOptions, 'path' | 'onChange'>,
    onChange: (change: MapChange, kind: Kind) => void,
  ) {
    this.watches = this.kinds.map((kind) => {
      const watch: ListWatch = new ListWatch({
        ...options,
        path: resourcePath(kind),
        onChange: (change) =>
          onChange(
            change.type === 'replaced' ? change : { ...change, current: watch.store.get(change.key) },
            kind,
          ),
      });
      return watch;
    });
  }

  static withKind(object: KubeObject, kind: Kind): KubeObject {
    return { ...object, apiVersion: object.apiVersion ?? API_VERSION, kind: object.kind ?? kind };
  }

  /** Every object grouped by scope; undefined until both kinds are listed. */
  grouped(): GroupedMaps | undefined {
    if (!this.watches.every((w) => w.hasSynced())) return undefined;
    const objects = this.watches.flatMap((watch, i) =>
      [...watch.store.values()].map((o) => MapWatches.withKind(o, this.kinds[i]!)),
    );
    return groupMaps(objects);
  }
}

/** The Lease campaign for status writes, when configured; `onLeading` runs on each new leadership. */
function electionOf(
  options: ClusterMapSourceOptions,
  client: KubeClient,
  logger: Logger,
  onLeading: () => void,
): LeaderElection | undefined {
  const le = options.leaderElection;
  if (!le) return undefined;
  return startLeaderElection({
    client,
    namespace: le.namespace,
    name: le.name ?? 'pullmap-controller',
    identity: le.identity,
    logger,
    ...(le.leaseDurationMs !== undefined ? { leaseDurationMs: le.leaseDurationMs } : {}),
    ...(le.renewDeadlineMs !== undefined ? { renewDeadlineMs: le.renewDeadlineMs } : {}),
    ...(le.renewIntervalMs !== undefined ? { renewIntervalMs: le.renewIntervalMs } : {}),
    onChange: (leading) => {
      if (leading) onLeading();
    },
  });
}

export function startClusterMapSource(options: ClusterMapSourceOptions): ClusterMapSource {
  const logger = options.logger ?? silentLogger;
  const client: KubeClient = kubeClient(options.kubeConfig, {
    timeoutMs: options.requestTimeoutMs ?? 10_000,
  });
  const accepted = new AcceptedGenerations(
    (options.onRejectedUpdate ?? 'KeepLastAccepted') === 'KeepLastAccepted',
  );
  const incremental = new IncrementalAnalysis(accepted);
  const listeners = new Set<(state: MapState) => void>();
  const now = options.now ?? (() => new Date());
  const ready = Promise.withResolvers<MapState>();
  let state: MapState | undefined;
  let scheduled = false;
  let closed = false;

  const writeStatus = options.writeStatus ?? true;
  let election: LeaderElection | undefined;
  const mayWrite = (): boolean => writeStatus && (election === undefined || election.isLeader());
  const stats: ClusterMapSource['stats'] = { analyses: 0, statusWrites: 0, events: 0, watch: [] };
  const writer = new StatusWriter({
    client,
    logger,
    concurrency: options.writeConcurrency ?? 4,
    now,
    mayWrite,
    stats,
    context: { pullSecretCopy: options.pullSecretCopy ?? true, cacheUpstreams: options.cacheUpstreams },
  });

  const schedule = (): void => {
    if (scheduled || closed) return;
    scheduled = true;
    setImmediate(analyse);
  };
  const recheckAll = (): void => {
    incremental.recheck();
    schedule();
  };
  const reconcileStatus = (objects: readonly KubeObject[]): void => {
    if (!state || !mayWrite()) return;
    for (const object of objects) {
      const verdict = incremental.verdictOf(object);
      if (verdict) writer.offer(object, verdict);
    }
  };

  // The time each filled target was last seen in a status, so each fill is announced once.
  const fillsSeen = new Map<string, string>();
  const noteFills = (object: KubeObject | undefined): void => {
    if (object === undefined || options.onFilled === undefined) return;
    for (const { target, time } of filledEntries(object)) {
      if (fillsSeen.get(target) === time) continue;
      if (fillsSeen.size >= MAX_FILLS_SEEN) fillsSeen.clear();
      fillsSeen.set(target, time);
      options.onFilled(target);
    }
  };

  const maps = new MapWatches(
    { client, logger, ...(options.watch ? { timing: options.watch } : {}) },
    (change, kind) => {
      // A relist (the watch expired) may have missed some: look at them all.
      if (change.type === 'replaced')
        for (const w of maps.watches) for (const o of w.store.values()) noteFills(o);
      else noteFills(change.current);
      // A status-only change needs its status re-checked, not an analysis.
      if (incremental.change(change) === 'status')
        reconcileStatus([MapWatches.withKind(change.current!, kind)]);
      else schedule();
    },
  );
  stats.watch.push(...maps.watches.map((w) => w.stats));

  function analyse(): void {
    scheduled = false;
    const grouped = closed ? undefined : maps.grouped();
    if (!grouped) return;
    const step = incremental.run(grouped, state?.analysis);
    stats.analyses++;
    // A periodic re-check that found what is in force already: the webhook keeps its snapshot (and what
    // it has memoised about images) and the version stays, so logs and metrics show only real changes.
    if (!step.unchanged) swap(step);
    reconcileStatus(step.changed);
  }

  function swap(step: AnalysisStep): void {
    const snapshot =
      state && step.onlyIn
        ? updateSnapshot(state.snapshot, step.analysis.accepted, step.onlyIn)
        : buildSnapshot(step.analysis.accepted);
    state = { snapshot, analysis: step.analysis, version: (state?.version ?? 0) + 1 };
    ready.resolve(state);
    for (const listener of listeners) listener(state);
  }

  // A new leader writes whatever the previous one left undone.
  election = electionOf(options, client, logger, recheckAll);
  for (const watch of maps.watches) watch.start();
  const recheck = setInterval(recheckAll, options.recheckIntervalMs ?? 60_000);

  return {
    current: () => state,
    inputs: (): MapInput[] | undefined => {
      const grouped = maps.grouped();
      return grouped && allMaps(grouped).map((o) => accepted.inputOf(o));
    },
    ready: () => ready.promise,
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    mayWrite,
    stats,
    async close() {
      if (closed) return;
      closed = true;
      clearInterval(recheck);
      await Promise.all(maps.watches.map((w) => w.stop()));
      await writer.drain();
      await election?.stop();
      await client.close();
    },
  };
}
