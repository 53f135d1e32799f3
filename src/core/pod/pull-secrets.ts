// Pull credentials for mapped images: which Secret a pod must name in imagePullSecrets when a mapping
// with a pullSecret rewrote one of its images, and which copies of ClusterImageMap secrets the
// controller keeps. A map may only hand out credentials its author already controls: an ImageMap names
// a Secret of its own namespace; a ClusterImageMap one of pullmap's namespace, copied by pullmap.

import type { MapKind, MapSpec } from '../api/v1alpha1.ts';
import { type Labels, podPullSecretName, selects } from '../mapping/index.ts';

/** Label on every Secret pullmap copies; its value is the source Secret's name. */
export const COPY_LABEL = 'pullmap.dev/copy-of';
export const DOCKER_CONFIG_JSON = 'kubernetes.io/dockerconfigjson';

export interface PullSecretCopy {
  readonly namespace: string;
  /** The copy's name (pullmap-<source>). */
  readonly name: string;
  /** The Secret in pullmap's namespace it copies. */
  readonly source: string;
}

export interface CopyInputs {
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
  for (const map of inputs.maps) {
    if (map.kind !== 'ClusterImageMap') continue;
    const sources = new Set(
      map.spec.mappings.flatMap((m) => (m.pullSecret === undefined ? [] : [m.pullSecret])),
    );
    if (sources.size === 0) continue;
    for (const [namespace, labels] of inputs.namespaces) {
      if (namespace === inputs.ownNamespace || inputs.excludedNamespaces.includes(namespace)) continue;
      if (!selects(map.spec.namespaceSelector, labels)) continue;
      for (const source of sources) {
        const name = podPullSecretName('ClusterImageMap', source);
        out.set(`${namespace}/${name}`, { namespace, name, source });
      }
    }
  }
  return [...out.values()].sort((a, b) =>
    a.namespace === b.namespace ? a.name.localeCompare(b.name) : a.namespace.localeCompare(b.namespace),
  );
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
