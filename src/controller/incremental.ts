// Incremental analysis of the cluster's maps: store changes in, parts and verdicts out. A namespace's
// verdicts depend only on its own maps and the ClusterImageMaps (analyzeMaps settles cluster maps
// first), so a change re-analyses one namespace; a cluster map change, a relist, the re-check timer and
// a new leadership re-analyse everything. No I/O and no clock: map-source.ts feeds it from the watches.

import { type Analysis, analyzeMaps, type MapVerdict } from '../core/mapping/index.ts';
import type { KubeObject } from '../kube/list-watch.ts';
import { type AcceptedGenerations, idOf } from './accepted.ts';
import { lastAcceptedOf } from './status.ts';

/** One store change, with the object as stored now (undefined once deleted). */
export interface MapChange {
  readonly type: 'replaced' | 'upsert' | 'deleted';
  readonly current?: KubeObject | undefined;
  readonly previous?: KubeObject | undefined;
}

/** Every map object, cluster maps first, the namespaced ones by namespace. */
export interface GroupedMaps {
  readonly cluster: readonly KubeObject[];
  readonly namespaces: ReadonlyMap<string, readonly KubeObject[]>;
}

/** The analysis of one scope: the cluster maps, or one namespace's maps judged after them. */
interface Part {
  readonly objects: readonly KubeObject[];
  readonly verdicts: readonly MapVerdict[];
  readonly accepted: Analysis['accepted'];
}

export interface AnalysisStep {
  readonly analysis: Analysis;
  /** The objects whose scope was re-analysed: their status is reconciled. */
  readonly changed: readonly KubeObject[];
  /** Only these namespaces' maps changed, so the snapshot keeps the rest; undefined: rebuild it. */
  readonly onlyIn: ReadonlySet<string> | undefined;
  /** A re-check (timer, new leadership) that found what is in force already: keep the snapshot. */
  readonly unchanged: boolean;
}

/** Groups objects (each with its kind set) into the cluster's and each namespace's. */
export function groupMaps(objects: Iterable<KubeObject>): GroupedMaps {
  const cluster: KubeObject[] = [];
  const namespaces = new Map<string, KubeObject[]>();
  for (const object of objects) {
    const ns = object.metadata.namespace;
    if (object.kind === 'ClusterImageMap' || ns === undefined) cluster.push(object);
    else {
      const list = namespaces.get(ns);
      if (list) list.push(object);
      else namespaces.set(ns, [object]);
    }
  }
  return { cluster, namespaces };
}

export const allMaps = (maps: GroupedMaps): KubeObject[] => [
  ...maps.cluster,
  ...[...maps.namespaces.values()].flat(),
];

const lastGeneration = (o: KubeObject): number | undefined => lastAcceptedOf(o)?.metadata.generation;

/**
 * Whether an update changed neither the spec nor anything this replica does not already hold: the same
 * generation, and a recorded last-accepted generation equal to before or not newer than the one held
 * (its own status write coming back, or another replica's of the same answer).
 */
export function isStatusOnly(
  next: KubeObject,
  previous: KubeObject,
  heldGeneration: number | undefined,
): boolean {
  const generation = next.metadata.generation;
  if (generation === undefined || generation !== previous.metadata.generation) return false;
  const recorded = lastGeneration(next);
  return recorded === lastGeneration(previous) || (recorded ?? 0) <= (heldGeneration ?? -1);
}

/** Same verdicts, findings and accepted maps (kind, name, generation, order and spec). */
function sameAnalysis(a: Analysis, b: Analysis): boolean {
  const text = (x: Analysis) =>
    JSON.stringify([
      x.verdicts.map((v) => [v.name, v.generation, v.verdict, v.serving, v.servingGeneration, v.findings]),
      x.accepted.map((m) => [m.ref, m.order, m.spec]),
    ]);
  return (
    a.verdicts.length === b.verdicts.length && a.accepted.length === b.accepted.length && text(a) === text(b)
  );
}

export class IncrementalAnalysis {
  private readonly accepted: AcceptedGenerations;
  private clusterPart: Part | undefined;
  private readonly namespaceParts = new Map<string, Part>();
  private verdicts = new Map<string, MapVerdict>();
  private dirtyAll = true;
  private readonly dirtyNamespaces = new Set<string>();
  /** Set by a re-check; cleared by any change that can alter verdicts. */
  private recheckOnly = false;

  constructor(accepted: AcceptedGenerations) {
    this.accepted = accepted;
  }

  /** Takes a store change: 'status' when only the object's status may need writing, else 'analyse'. */
  change(change: MapChange): 'status' | 'analyse' {
    const { current, previous } = change;
    if (
      change.type === 'upsert' &&
      current &&
      previous &&
      isStatusOnly(current, previous, this.accepted.generation(current))
    )
      return 'status';
    if (change.type === 'deleted' && previous) this.accepted.forget(previous);
    const namespace = change.type === 'replaced' ? undefined : (current ?? previous)?.metadata.namespace;
    this.recheckOnly = false;
    if (namespace === undefined) this.dirtyAll = true;
    else this.dirtyNamespaces.add(namespace);
    return 'analyse';
  }

  /** Re-analyses everything; when nothing else changed meanwhile, the step may report `unchanged`. */
  recheck(): void {
    if (!this.dirtyAll && this.dirtyNamespaces.size === 0) this.recheckOnly = true;
    this.dirtyAll = true;
  }

  /** The verdict of the last run about `object`. */
  verdictOf(object: KubeObject): MapVerdict | undefined {
    return this.verdicts.get(idOf(object));
  }

  /** Re-analyses what changed since the last run; `inForce` is the analysis serving now, if any. */
  run(maps: GroupedMaps, inForce: Analysis | undefined): AnalysisStep {
    const changed = this.reanalyse(maps);
    const onlyIn = this.dirtyAll ? undefined : new Set(this.dirtyNamespaces);
    const wasRecheck = this.recheckOnly;
    this.dirtyAll = false;
    this.dirtyNamespaces.clear();
    this.recheckOnly = false;
    for (const part of changed) this.rememberAccepted(part);
    const parts = [this.clusterPart!, ...this.namespaceParts.values()];
    this.verdicts = new Map(
      parts.flatMap((p) => p.verdicts.map((v, i) => [idOf(p.objects[i]!), v] as const)),
    );
    const analysis: Analysis = {
      verdicts: parts.flatMap((p) => p.verdicts),
      accepted: parts.flatMap((p) => p.accepted),
    };
    return {
      analysis,
      changed: changed.flatMap((p) => p.objects),
      onlyIn,
      unchanged: wasRecheck && inForce !== undefined && sameAnalysis(inForce, analysis),
    };
  }

  /** Analyses the dirty scopes into their parts; returns the parts analysed. */
  private reanalyse(maps: GroupedMaps): Part[] {
    const changed: Part[] = [];
    if (this.dirtyAll) {
      this.accepted.keepOnly(allMaps(maps));
      this.clusterPart = this.analysePart(maps.cluster, undefined);
      changed.push(this.clusterPart);
      this.namespaceParts.clear();
      for (const ns of maps.namespaces.keys()) this.dirtyNamespaces.add(ns);
    }
    for (const ns of this.dirtyNamespaces) {
      const own = maps.namespaces.get(ns);
      if (!own) {
        this.namespaceParts.delete(ns);
        continue;
      }
      const part = this.analysePart(maps.cluster, own);
      this.namespaceParts.set(ns, part);
      changed.push(part);
    }
    return changed;
  }

  /** Analyses `own` after `cluster`, whose verdicts are dropped unless `own` is undefined. */
  private analysePart(cluster: readonly KubeObject[], own: readonly KubeObject[] | undefined): Part {
    const objects = own ?? cluster;
    const inputs = [...(own ? cluster : []), ...objects].map((o) => this.accepted.inputOf(o));
    const analysis = analyzeMaps(inputs);
    const verdicts = analysis.verdicts.slice(analysis.verdicts.length - objects.length);
    return { objects, verdicts, accepted: verdicts.flatMap((v) => (v.compiled ? [v.compiled] : [])) };
  }

  private rememberAccepted(part: Part): void {
    part.verdicts.forEach((verdict, i) => {
      if (verdict.verdict === 'Accepted') this.accepted.remember(part.objects[i]!);
    });
  }
}
