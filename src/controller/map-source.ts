// The cluster map source: ImageMaps and ClusterImageMaps from the API server, analysed together
// (PRODUCT.md §3.3) into the snapshot the webhook reads. Every replica watches and analyses on its own;
// only the Lease holder writes status and events.
//
// Last accepted generation: kept in memory per object and also written to status.lastAccepted (generation
// and spec) whenever a generation is accepted, so a restarted or newly started replica that never saw the
// accepted generation still serves it. `onRejectedUpdate: 'Undeploy'` serves nothing for a rejected map.

import type { KubeConfig } from '@kubernetes/client-node';
import { namesOf } from '../core/api/crd.ts';
import { API_VERSION, GROUP, type MapObject, VERSION } from '../core/api/v1alpha1.ts';
import {
  analyzeMaps,
  buildSnapshot,
  DEFAULT_SNAPSHOT_OPTIONS,
  type MapInput,
  type MapVerdict,
  type SnapshotOptions,
} from '../core/mapping/index.ts';
import { type KubeClient, kubeClient } from '../kube/client.ts';
import { type LeaderElection, startLeaderElection } from '../kube/lease.ts';
import {
  type KubeObject,
  ListWatch,
  type ListWatchTiming,
  objectKey,
  type StoreChange,
} from '../kube/list-watch.ts';
import { type Logger, silentLogger } from '../observe/log.ts';
import type { MapSource, MapState } from '../serve/map-source.ts';
import { StatusWriter } from './status-writer.ts';

export interface ClusterMapSourceOptions {
  readonly kubeConfig: KubeConfig;
  readonly snapshotOptions?: SnapshotOptions;
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
  /** Parallel status and event writes. */
  readonly writeConcurrency?: number;
  readonly logger?: Logger;
  /** Injected clock for condition timestamps. */
  readonly now?: () => Date;
}

export interface ClusterMapSource extends MapSource {
  /** The objects as last seen, each with the generation to fall back on: what the validating webhook needs. */
  inputs(): readonly MapInput[] | undefined;
  /** Resolves with the first state (both kinds listed once). */
  ready(): Promise<MapState>;
  /** Called after every swap; returns an unsubscribe function. */
  subscribe(listener: (state: MapState) => void): () => void;
  isLeader(): boolean;
  /** Counters for metrics and tests. */
  readonly stats: { analyses: number; statusWrites: number; events: number; watch: ListWatch['stats'][] };
}

const collectionPath = (plural: string): string => `/apis/${GROUP}/${VERSION}/${plural}`;

/** The last accepted generation recorded in status, as a map object analyzeMaps can use. */
function lastAcceptedFromStatus(object: KubeObject): MapObject | undefined {
  const kept = (object.status as { lastAccepted?: { generation?: unknown; spec?: unknown } } | undefined)
    ?.lastAccepted;
  if (!kept || typeof kept.generation !== 'number' || kept.spec === undefined) return undefined;
  return {
    ...object,
    metadata: { ...object.metadata, generation: kept.generation },
    spec: kept.spec,
  } as unknown as MapObject;
}

export function startClusterMapSource(options: ClusterMapSourceOptions): ClusterMapSource {
  const logger = options.logger ?? silentLogger;
  const snapshotOptions = options.snapshotOptions ?? DEFAULT_SNAPSHOT_OPTIONS;
  const keepLastAccepted = (options.onRejectedUpdate ?? 'KeepLastAccepted') === 'KeepLastAccepted';
  const client: KubeClient = kubeClient(options.kubeConfig, {
    timeoutMs: options.requestTimeoutMs ?? 10_000,
  });
  const now = options.now ?? (() => new Date());
  const listeners = new Set<(state: MapState) => void>();
  /** uid → the newest accepted generation this replica has seen. */
  const accepted = new Map<string, MapObject>();
  let state: MapState | undefined;
  let verdicts = new Map<string, MapVerdict>();
  let scheduled = false;
  let closed = false;
  let resolveReady: (s: MapState) => void = () => undefined;
  const readyPromise = new Promise<MapState>((resolve) => {
    resolveReady = resolve;
  });

  const writeStatus = options.writeStatus ?? true;
  let election: LeaderElection | undefined;
  const mayWrite = (): boolean => writeStatus && (election === undefined || election.isLeader());
  const writer = new StatusWriter({
    client,
    logger,
    concurrency: options.writeConcurrency ?? 4,
    now,
    mayWrite,
  });

  const stats: ClusterMapSource['stats'] = { analyses: 0, statusWrites: 0, events: 0, watch: [] };

  function schedule(): void {
    if (scheduled || closed) return;
    scheduled = true;
    setImmediate(analyse);
  }

  const kinds = (['ImageMap', 'ClusterImageMap'] as const).map((kind) => {
    const watch: ListWatch = new ListWatch({
      client,
      path: collectionPath(namesOf(kind).plural),
      logger,
      ...(options.watch ? { timing: options.watch } : {}),
      onChange: (change: StoreChange) => onChange(watch, change),
    });
    stats.watch.push(watch.stats);
    return { kind, watch };
  });

  /** Whether a change can alter any verdict; a status-only change only needs its status re-checked. */
  function onChange(watch: ListWatch, change: StoreChange): void {
    if (change.type === 'upsert' && change.previous) {
      const next = watch.store.get(change.key)!;
      const prev = change.previous;
      const lastGen = (o: KubeObject) =>
        (o.status as { lastAccepted?: { generation?: number } } | undefined)?.lastAccepted?.generation;
      if (
        next.metadata.generation === prev.metadata.generation &&
        next.metadata.generation !== undefined &&
        lastGen(next) === lastGen(prev)
      ) {
        const verdict = verdicts.get(next.metadata.uid ?? '');
        if (verdict && state) writer.offer(next, verdict, stats);
        return;
      }
    }
    schedule();
  }

  function collectInputs(): { inputs: MapInput[]; objects: KubeObject[] } | undefined {
    if (!kinds.every((k) => k.watch.hasSynced())) return undefined;
    const inputs: MapInput[] = [];
    const objects: KubeObject[] = [];
    for (const { kind, watch } of kinds) {
      for (const object of watch.store.values()) {
        // The list and watch of custom resources leave apiVersion/kind on each item; set them anyway.
        const current = {
          ...object,
          apiVersion: object.apiVersion ?? API_VERSION,
          kind: object.kind ?? kind,
        };
        const uid = object.metadata.uid ?? objectKey(object);
        let lastAccepted: MapObject | undefined;
        if (keepLastAccepted) {
          const remembered = accepted.get(uid);
          const recorded = lastAcceptedFromStatus(current);
          lastAccepted =
            remembered &&
            (recorded === undefined ||
              (remembered.metadata.generation ?? 0) >= (recorded.metadata.generation ?? 0))
              ? remembered
              : recorded;
        }
        inputs.push({ current, lastAccepted });
        objects.push(current);
      }
    }
    return { inputs, objects };
  }

  function analyse(): void {
    scheduled = false;
    if (closed) return;
    const collected = collectInputs();
    if (!collected) return;
    const analysis = analyzeMaps(collected.inputs);
    stats.analyses++;
    const next = new Map<string, MapVerdict>();
    const seen = new Set<string>();
    analysis.verdicts.forEach((verdict, i) => {
      const object = collected.objects[i]!;
      const uid = object.metadata.uid ?? objectKey(object);
      seen.add(uid);
      next.set(uid, verdict);
      if (verdict.verdict === 'Accepted') accepted.set(uid, object as unknown as MapObject);
    });
    for (const uid of accepted.keys()) if (!seen.has(uid)) accepted.delete(uid);
    verdicts = next;
    state = {
      snapshot: buildSnapshot(analysis.accepted, snapshotOptions),
      analysis,
      version: (state?.version ?? 0) + 1,
    };
    resolveReady(state);
    for (const listener of listeners) listener(state);
    reconcileStatus(collected.objects);
  }

  function reconcileStatus(objects: readonly KubeObject[]): void {
    if (!mayWrite()) return;
    for (const object of objects) {
      const verdict = verdicts.get(object.metadata.uid ?? objectKey(object));
      if (verdict) writer.offer(object, verdict, stats);
    }
  }

  if (options.leaderElection) {
    const le = options.leaderElection;
    election = startLeaderElection({
      client,
      namespace: le.namespace,
      name: le.name ?? 'pullmap-controller',
      identity: le.identity,
      logger,
      ...(le.leaseDurationMs !== undefined ? { leaseDurationMs: le.leaseDurationMs } : {}),
      ...(le.renewDeadlineMs !== undefined ? { renewDeadlineMs: le.renewDeadlineMs } : {}),
      ...(le.renewIntervalMs !== undefined ? { renewIntervalMs: le.renewIntervalMs } : {}),
      // A new leader writes whatever the previous one left undone.
      onChange: (leading) => {
        if (leading) schedule();
      },
    });
  }
  for (const { watch } of kinds) watch.start();
  const recheck = setInterval(schedule, options.recheckIntervalMs ?? 60_000);

  return {
    current: () => state,
    inputs: () => collectInputs()?.inputs,
    ready: () => readyPromise,
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    isLeader: () => mayWrite(),
    stats,
    async close() {
      if (closed) return;
      closed = true;
      clearInterval(recheck);
      await Promise.all(kinds.map((k) => k.watch.stop()));
      await writer.drain();
      await election?.stop();
      await client.close();
    },
  };
}
