// The cluster map source: ImageMaps and ClusterImageMaps from the API server, analysed together
// (PRODUCT.md §3.3) into the snapshot the webhook reads. Every replica watches and analyses on its own;
// only the Lease holder writes status and events.
//
// Last accepted generation: kept in memory per object and also written to status.lastAccepted (generation
// and spec) whenever a generation is accepted, so a restarted or newly started replica that never saw the
// accepted generation still serves it. `onRejectedUpdate: 'Undeploy'` serves nothing for a rejected map.

import { resourcePath } from '../core/api/crd.ts';
import { API_VERSION, type MapObject } from '../core/api/v1alpha1.ts';
import {
  type Analysis,
  analyzeMaps,
  buildSnapshot,
  DEFAULT_SNAPSHOT_OPTIONS,
  type MapInput,
  type MapVerdict,
  type SnapshotOptions,
  updateSnapshot,
} from '../core/mapping/index.ts';
import type { MapSource, MapState } from '../decision/map-source.ts';
import { type KubeClient, kubeClient } from '../kube/client.ts';
import type { KubeCredentials } from '../kube/config.ts';
import { type LeaderElection, startLeaderElection } from '../kube/lease.ts';
import {
  type KubeObject,
  ListWatch,
  type ListWatchTiming,
  objectKey,
  type StoreChange,
} from '../kube/list-watch.ts';
import { type Logger, silentLogger } from '../observe/log.ts';
import { lastAcceptedOf } from './status.ts';
import { StatusWriter } from './status-writer.ts';

export interface ClusterMapSourceOptions {
  readonly kubeConfig: KubeCredentials;
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

/** One key per map object for this replica's bookkeeping. */
const idOf = (o: KubeObject): string => o.metadata.uid ?? objectKey(o);

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
  const stats: ClusterMapSource['stats'] = { analyses: 0, statusWrites: 0, events: 0, watch: [] };
  const writer = new StatusWriter({
    client,
    logger,
    concurrency: options.writeConcurrency ?? 4,
    now,
    mayWrite,
    stats,
  });

  function schedule(): void {
    if (scheduled || closed) return;
    scheduled = true;
    setImmediate(analyse);
  }

  const kinds = (['ImageMap', 'ClusterImageMap'] as const).map((kind) => {
    const watch: ListWatch = new ListWatch({
      client,
      path: resourcePath(kind),
      logger,
      ...(options.watch ? { timing: options.watch } : {}),
      onChange: (change: StoreChange) => onChange(watch, change),
    });
    stats.watch.push(watch.stats);
    return { kind, watch };
  });

  // Incremental analysis: a namespace's verdicts depend only on its own maps and the ClusterImageMaps
  // (analyzeMaps settles cluster maps first), so a change re-analyses one namespace; a cluster map
  // change, a relist, the re-check timer and a new leadership re-analyse everything.
  interface Part {
    readonly objects: readonly KubeObject[];
    readonly verdicts: readonly MapVerdict[];
    readonly accepted: Analysis['accepted'];
  }
  let clusterPart: Part | undefined;
  const namespaceParts = new Map<string, Part>();
  let dirtyAll = true;
  const dirtyNamespaces = new Set<string>();
  /** Set by the re-check timer and new leadership; cleared by any change that can alter verdicts. */
  let recheckOnly = false;
  const recheckAll = (): void => {
    if (!dirtyAll && dirtyNamespaces.size === 0) recheckOnly = true;
    dirtyAll = true;
    schedule();
  };

  /** Whether a change can alter any verdict; a status-only change only needs its status re-checked. */
  function onChange(watch: ListWatch, change: StoreChange): void {
    if (change.type === 'upsert' && change.previous) {
      const next = watch.store.get(change.key)!;
      const prev = change.previous;
      const lastGen = (o: KubeObject) => lastAcceptedOf(o)?.metadata.generation;
      // The same spec, and a recorded last-accepted generation this replica already holds (its own
      // status write coming back, or another replica's of the same answer): nothing to re-analyse.
      const held = accepted.get(idOf(next))?.metadata.generation;
      if (
        next.metadata.generation === prev.metadata.generation &&
        next.metadata.generation !== undefined &&
        (lastGen(next) === lastGen(prev) || (lastGen(next) ?? 0) <= (held ?? -1))
      ) {
        const verdict = verdicts.get(idOf(next));
        if (verdict && state && mayWrite()) writer.offer(withKind(next, watch), verdict);
        return;
      }
    }
    if (change.type === 'deleted' && change.previous) accepted.delete(idOf(change.previous));
    const namespace =
      change.type === 'replaced'
        ? undefined
        : (watch.store.get(change.key)?.metadata.namespace ?? change.previous?.metadata.namespace);
    recheckOnly = false;
    if (namespace === undefined) dirtyAll = true;
    else dirtyNamespaces.add(namespace);
    schedule();
  }

  const kindOf = new Map<ListWatch, MapObject['kind']>(kinds.map((k) => [k.watch, k.kind]));
  // The list and watch of custom resources leave apiVersion/kind on each item; set them anyway.
  const withKind = (object: KubeObject, watch: ListWatch): KubeObject => ({
    ...object,
    apiVersion: object.apiVersion ?? API_VERSION,
    kind: object.kind ?? kindOf.get(watch)!,
  });

  function inputOf(current: KubeObject): MapInput {
    if (!keepLastAccepted) return { current };
    const remembered = accepted.get(idOf(current));
    const recorded = lastAcceptedOf(current);
    const lastAccepted =
      remembered &&
      (recorded === undefined || (remembered.metadata.generation ?? 0) >= (recorded.metadata.generation ?? 0))
        ? remembered
        : recorded;
    return { current, lastAccepted };
  }

  /** Every object, cluster maps first, grouped by namespace; undefined until both kinds are listed. */
  function collect(): { cluster: KubeObject[]; namespaces: Map<string, KubeObject[]> } | undefined {
    if (!kinds.every((k) => k.watch.hasSynced())) return undefined;
    const cluster: KubeObject[] = [];
    const namespaces = new Map<string, KubeObject[]>();
    for (const { watch } of kinds) {
      for (const raw of watch.store.values()) {
        const object = withKind(raw, watch);
        const ns = object.metadata.namespace;
        if (object.kind === 'ClusterImageMap' || ns === undefined) cluster.push(object);
        else {
          const list = namespaces.get(ns);
          if (list) list.push(object);
          else namespaces.set(ns, [object]);
        }
      }
    }
    return { cluster, namespaces };
  }

  function collectInputs(): MapInput[] | undefined {
    const all = collect();
    if (!all) return undefined;
    return [...all.cluster, ...[...all.namespaces.values()].flat()].map(inputOf);
  }

  /** Analyses `own` (after `cluster`, whose verdicts are dropped unless `own` is empty). */
  function analysePart(cluster: readonly KubeObject[], own: readonly KubeObject[] | undefined): Part {
    const objects = own ?? cluster;
    const analysis = analyzeMaps([...(own ? cluster : []), ...objects].map(inputOf));
    const verdicts = analysis.verdicts.slice(analysis.verdicts.length - objects.length);
    return {
      objects,
      verdicts,
      accepted: verdicts.flatMap((v) => (v.compiled ? [v.compiled] : [])),
    };
  }

  function analyse(): void {
    scheduled = false;
    if (closed) return;
    const all = collect();
    if (!all) return;
    const changed: Part[] = [];
    if (dirtyAll) {
      // A relist brings no delete events for maps removed in the gap: forget what is gone.
      const present = new Set([...all.cluster, ...[...all.namespaces.values()].flat()].map(idOf));
      for (const id of accepted.keys()) if (!present.has(id)) accepted.delete(id);
      clusterPart = analysePart(all.cluster, undefined);
      changed.push(clusterPart);
      namespaceParts.clear();
      for (const ns of all.namespaces.keys()) dirtyNamespaces.add(ns);
    }
    for (const ns of dirtyNamespaces) {
      const own = all.namespaces.get(ns);
      if (!own) {
        namespaceParts.delete(ns);
        continue;
      }
      const part = analysePart(all.cluster, own);
      namespaceParts.set(ns, part);
      changed.push(part);
    }
    // Without a full re-analysis, only these namespaces' maps changed: the snapshot keeps the rest.
    const onlyIn = dirtyAll ? undefined : new Set(dirtyNamespaces);
    dirtyAll = false;
    dirtyNamespaces.clear();
    stats.analyses++;
    const parts = [clusterPart!, ...namespaceParts.values()];
    for (const part of changed) {
      part.verdicts.forEach((verdict, i) => {
        const object = part.objects[i]!;
        if (verdict.verdict === 'Accepted') accepted.set(idOf(object), object as unknown as MapObject);
      });
    }
    const next = new Map<string, MapVerdict>();
    for (const part of parts)
      part.verdicts.forEach((v, i) => {
        const object = part.objects[i]!;
        next.set(idOf(object), v);
      });
    verdicts = next;
    const analysis: Analysis = {
      verdicts: parts.flatMap((p) => p.verdicts),
      accepted: parts.flatMap((p) => p.accepted),
    };
    const wasRecheck = recheckOnly;
    recheckOnly = false;
    if (wasRecheck && state && sameAnalysis(state.analysis, analysis)) {
      // A periodic re-check that found what is in force already: the webhook keeps its snapshot
      // (and what it has memoised about images), and the version stays, so logs and metrics show
      // only real changes. Status is still reconciled.
      reconcileStatus(changed.flatMap((p) => p.objects));
      return;
    }
    state = {
      snapshot:
        state && onlyIn
          ? updateSnapshot(state.snapshot, analysis.accepted, onlyIn)
          : buildSnapshot(analysis.accepted, snapshotOptions),
      analysis,
      version: (state?.version ?? 0) + 1,
    };
    resolveReady(state);
    for (const listener of listeners) listener(state);
    reconcileStatus(changed.flatMap((p) => p.objects));
  }

  /** Same verdicts, findings and accepted maps (kind, name, generation, order and spec). */
  function sameAnalysis(a: Analysis, b: Analysis): boolean {
    const text = (x: Analysis) =>
      JSON.stringify([
        x.verdicts.map((v) => [v.name, v.generation, v.verdict, v.serving, v.servingGeneration, v.findings]),
        x.accepted.map((m) => [m.ref, m.order, m.spec]),
      ]);
    return (
      a.verdicts.length === b.verdicts.length &&
      a.accepted.length === b.accepted.length &&
      text(a) === text(b)
    );
  }

  function reconcileStatus(objects: readonly KubeObject[]): void {
    if (!mayWrite()) return;
    for (const object of objects) {
      const verdict = verdicts.get(idOf(object));
      if (verdict) writer.offer(object, verdict);
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
        if (leading) recheckAll();
      },
    });
  }
  for (const { watch } of kinds) watch.start();
  const recheck = setInterval(recheckAll, options.recheckIntervalMs ?? 60_000);

  return {
    current: () => state,
    inputs: collectInputs,
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
