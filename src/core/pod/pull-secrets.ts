// Pull credentials for mapped images: which Secret a pod must name in imagePullSecrets when a mapping
// with a pullSecret rewrote one of its images, and which copies of ClusterImageMap secrets the
// controller keeps. A map may only hand out credentials its author already controls: an ImageMap names
// a Secret of its own namespace; a ClusterImageMap one of pullmap's namespace, copied by pullmap.

import type { MapKind, MapSpec } from '../api/v1alpha1.ts';
import { type Labels, podPullSecretName, selects } from '../mapping/index.ts';

/** Label on every Secret pullmap copies; its value is the source Secret's name. */
export const COPY_LABEL = 'pullmap.dev/copy-of';
export const DOCKER_CONFIG_JSON = 'kubernetes.io/dockerconfigjson';

interface PullSecretCopy {
  readonly namespace: string;
  /** The copy's name (pullmap-<source>). */
  readonly name: string;
  /** The Secret in pullmap's namespace it copies. */
  readonly source: string;
}

interface CopyInputs {
  /** The ClusterImageMaps in force (accepted or served last-accepted generations). */
  readonly maps: readonly { readonly kind: MapKind; readonly spec: MapSpec }[];
  /** Every namespace with its labels. */
  readonly namespaces: ReadonlyMap<string, Labels>;
  /** Namespaces pullmap never maps pods in (their pods get no reference, so no copy). */
  readonly excludedNamespaces: readonly string[];
  /** pullmap's own namespace, which holds the sources. */
  readonly ownNamespace: string;
}

/**
 * Every copy that should exist: one per pullSecret of a ClusterImageMap in each namespace its
 * namespaceSelector selects, so the Secret is there before a pod that refers to it is admitted.
 */
export function desiredCopies(inputs: CopyInputs): PullSecretCopy[] {
  const out = new Map<string, PullSecretCopy>();
  for (const map of inputs.maps) if (map.kind === 'ClusterImageMap') addCopiesOf(map.spec, inputs, out);
  return [...out.values()].sort((a, b) =>
    a.namespace === b.namespace ? a.name.localeCompare(b.name) : a.namespace.localeCompare(b.namespace),
  );
}

/** One ClusterImageMap's copies into `out`, keyed by "namespace/name". */
function addCopiesOf(spec: MapSpec, inputs: CopyInputs, out: Map<string, PullSecretCopy>): void {
  const sources = new Set(spec.mappings.flatMap((m) => (m.pullSecret === undefined ? [] : [m.pullSecret])));
  if (sources.size === 0) return;
  for (const [namespace, labels] of inputs.namespaces) {
    if (namespace === inputs.ownNamespace || inputs.excludedNamespaces.includes(namespace)) continue;
    if (!selects(spec.namespaceSelector, labels)) continue;
    for (const source of sources) {
      const name = podPullSecretName('ClusterImageMap', source);
      out.set(`${namespace}/${name}`, { namespace, name, source });
    }
  }
}

/**
 * The JSON Patch ops that add `names` to a pod's imagePullSecrets, keeping every entry it has and
 * never adding one twice.
 */
export function addPullSecrets(
  spec: Record<string, unknown>,
  names: Iterable<string>,
): { op: 'add'; path: string; value: unknown }[] {
  const existing = Array.isArray(spec.imagePullSecrets) ? spec.imagePullSecrets : undefined;
  const have = new Set(
    (existing ?? []).flatMap((s: unknown) =>
      s !== null && typeof s === 'object' && typeof (s as { name?: unknown }).name === 'string'
        ? [(s as { name: string }).name]
        : [],
    ),
  );
  const missing: string[] = [];
  for (const name of names)
    if (!have.has(name)) {
      have.add(name);
      missing.push(name);
    }
  if (missing.length === 0) return [];
  if (existing === undefined)
    return [{ op: 'add', path: '/spec/imagePullSecrets', value: missing.map((name) => ({ name })) }];
  return missing.map((name) => ({ op: 'add', path: '/spec/imagePullSecrets/-', value: { name } }));
}

/** A Secret as the copy plan reads it: the shape a watch's store holds, without Kubernetes types. */
export interface SecretState {
  readonly metadata: {
    readonly name: string;
    readonly namespace?: string;
    readonly resourceVersion?: string;
  };
  readonly type?: unknown;
  readonly data?: Readonly<Record<string, string>> | undefined;
}

interface CopyPlanInputs extends CopyInputs {
  /** The Secrets of pullmap's namespace, by name. */
  readonly sources: (name: string) => SecretState | undefined;
  /** The copies that exist (Secrets carrying COPY_LABEL), by "namespace/name". */
  readonly copies: ReadonlyMap<string, SecretState>;
}

/** A Secret body to POST (create) or PUT (update, with the copy's resourceVersion). */
export interface CopyWrite {
  readonly op: 'create' | 'update';
  readonly copy: PullSecretCopy;
  readonly body: Record<string, unknown>;
}

export interface CopyPlan {
  readonly writes: readonly CopyWrite[];
  /** Copies no map in force needs any more. */
  readonly deletes: readonly { readonly namespace: string; readonly name: string }[];
  /** Sources that a map names but that are absent or of another type than DOCKER_CONFIG_JSON: no copies. */
  readonly unusable: readonly {
    readonly source: string;
    readonly missing: boolean;
    readonly type: unknown;
  }[];
}

/**
 * What to write and delete so the copies match desiredCopies: a copy whose source is unusable is
 * neither written nor kept, one already equal to its source is left alone, one no map needs is deleted.
 */
export function planCopies(inputs: CopyPlanInputs): CopyPlan {
  const writes: CopyWrite[] = [];
  const unusable = new Map<string, CopyPlan['unusable'][number]>();
  const keep = new Set<string>();
  for (const copy of desiredCopies(inputs)) {
    const source = inputs.sources(copy.source);
    if (source === undefined || source.type !== DOCKER_CONFIG_JSON) {
      unusable.set(copy.source, { source: copy.source, missing: source === undefined, type: source?.type });
      continue;
    }
    const key = `${copy.namespace}/${copy.name}`;
    keep.add(key);
    const existing = inputs.copies.get(key);
    if (existing?.type === DOCKER_CONFIG_JSON && sameData(existing.data, source.data)) continue;
    writes.push({
      op: existing === undefined ? 'create' : 'update',
      copy,
      body: copyBody(copy, inputs.ownNamespace, source.data ?? {}, existing?.metadata.resourceVersion),
    });
  }
  const deletes = [...inputs.copies]
    .filter(([key]) => !keep.has(key))
    .map(([, s]) => ({ namespace: s.metadata.namespace ?? '', name: s.metadata.name }));
  return { writes, deletes, unusable: [...unusable.values()] };
}

/** The copy's Secret: labelled with its source's name so the controller finds its own copies. */
function copyBody(
  copy: PullSecretCopy,
  ownNamespace: string,
  data: Readonly<Record<string, string>>,
  resourceVersion: string | undefined,
): Record<string, unknown> {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: {
      name: copy.name,
      namespace: copy.namespace,
      labels: { [COPY_LABEL]: copy.source, 'app.kubernetes.io/managed-by': 'pullmap' },
      annotations: { 'pullmap.dev/source': `${ownNamespace}/${copy.source}` },
      ...(resourceVersion ? { resourceVersion } : {}),
    },
    type: DOCKER_CONFIG_JSON,
    data,
  };
}

function sameData(
  a: Readonly<Record<string, string>> | undefined,
  b: Readonly<Record<string, string>> | undefined,
): boolean {
  const ka = Object.keys(a ?? {});
  if (ka.length !== Object.keys(b ?? {}).length) return false;
  return ka.every((k) => a?.[k] === b?.[k]);
}
