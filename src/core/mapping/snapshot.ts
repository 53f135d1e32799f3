// The accepted maps, indexed for the webhook's hot path: every lookup is a handful of hash probes,
// however many maps and mappings there are. Immutable once built.

import { formatName, type ImageReference } from '../reference/index.ts';
import type { CompiledMap, Pattern, Rule } from './rule.ts';
import type { DecisionSettings } from './settings.ts';

export interface ScopeIndex {
  /** Source keys → rules, older maps first. */
  readonly sources: Map<string, Rule[]>;
  /** Target keys → rules: an image under one of these was probably mapped already. */
  readonly targets: Map<string, Rule[]>;
  /** Registries any key names, and whether "*" is present: most images skip a scope in one lookup. */
  readonly registries: Set<string>;
  hasAll: boolean;
}

export interface MapSnapshot {
  readonly maps: readonly CompiledMap[];
  readonly cluster: ScopeIndex;
  readonly namespaces: ReadonlyMap<string, ScopeIndex>;
  /** Cache addresses maps name in spec.cache.address, as embedded first components are matched against them. */
  readonly cacheHosts: ReadonlySet<string>;
  /** Whether a map routes through the cache without an address: the settings' cacheAddress is in use. */
  readonly defaultCacheUsed: boolean;
}

const emptyScope = (): ScopeIndex => ({
  sources: new Map(),
  targets: new Map(),
  registries: new Set(),
  hasAll: false,
});

function add(index: Map<string, Rule[]>, key: string, rule: Rule): void {
  const list = index.get(key);
  if (list) {
    if (!list.includes(rule)) list.push(rule);
  } else index.set(key, [rule]);
}

function note(scope: ScopeIndex, p: Pattern): void {
  if (p.kind === 'all') scope.hasAll = true;
  else scope.registries.add(p.kind === 'prefix' ? p.registry : p.ref.registry);
}

/** Whether any key of the scope can match an image of this registry. */
function scopeMayMatch(scope: ScopeIndex, registry: string): boolean {
  return scope.hasAll || scope.registries.has(registry);
}

function sortByOrder(maps: readonly CompiledMap[]): CompiledMap[] {
  return [...maps].sort((a, b) => (a.order < b.order ? -1 : a.order > b.order ? 1 : 0));
}

/** Adds a map's rules to its scope's index; `sorted` order keeps older maps first in every list. */
function index(scope: ScopeIndex, map: CompiledMap): void {
  for (const rule of map.rules) {
    add(scope.sources, rule.source.key, rule);
    note(scope, rule.source);
    if (rule.identity) continue;
    for (const target of rule.targets) {
      add(scope.targets, target.key, rule);
      note(scope, target);
    }
  }
}

/** The cache addresses the maps name, and whether any routes through the settings' address. */
function cacheHostsOf(maps: readonly CompiledMap[]): Pick<MapSnapshot, 'cacheHosts' | 'defaultCacheUsed'> {
  const cacheHosts = new Set<string>();
  let defaultCacheUsed = false;
  for (const map of maps) {
    const cache = map.spec.cache;
    if (!cache?.enabled) continue;
    if (cache.address === undefined) defaultCacheUsed = true;
    else cacheHosts.add(cache.address);
  }
  return { cacheHosts, defaultCacheUsed };
}

/** Builds the index over maps that the consistency analysis accepted. */
export function buildSnapshot(maps: readonly CompiledMap[]): MapSnapshot {
  const sorted = sortByOrder(maps);
  const cluster = emptyScope();
  const namespaces = new Map<string, ScopeIndex>();
  for (const map of sorted) {
    let scope = cluster;
    if (map.ref.namespace !== undefined) {
      scope = namespaces.get(map.ref.namespace) ?? emptyScope();
      namespaces.set(map.ref.namespace, scope);
    }
    index(scope, map);
  }
  return { maps: sorted, cluster, namespaces, ...cacheHostsOf(sorted) };
}

/**
 * The snapshot of `maps` when, since `previous` was built, only the maps of the `changed` namespaces
 * differ (the cluster's maps and every other namespace's are the same objects): the other scopes are
 * taken over as they are, which a snapshot never changes once built. Equal to buildSnapshot(maps);
 * what a change in one namespace costs no longer grows with all the others (about
 * 3 MiB per change at 2,000 maps, kept until the next change, was most of the controller's garbage).
 */
export function updateSnapshot(
  previous: MapSnapshot,
  maps: readonly CompiledMap[],
  changed: ReadonlySet<string>,
): MapSnapshot {
  const sorted = sortByOrder(maps);
  const namespaces = new Map<string, ScopeIndex>();
  for (const map of sorted) {
    const ns = map.ref.namespace;
    if (ns === undefined) continue;
    if (!changed.has(ns)) {
      const kept = previous.namespaces.get(ns);
      if (kept) {
        namespaces.set(ns, kept);
        continue;
      }
    }
    let scope = namespaces.get(ns);
    if (!scope) {
      scope = emptyScope();
      namespaces.set(ns, scope);
    }
    index(scope, map);
  }
  return { maps: sorted, cluster: previous.cluster, namespaces, ...cacheHostsOf(sorted) };
}

/**
 * Index keys an image can match, most specific first: exact digest, exact tag (a missing tag is
 * "latest"), repository, each repository prefix on path-segment boundaries, registry, "*".
 */
export function lookupKeys(ref: ImageReference, tag: string | undefined): string[] {
  const name = formatName(ref);
  const keys: string[] = [];
  if (ref.digest !== undefined) keys.push(`${name}@${ref.digest}`);
  if (tag !== undefined) keys.push(`${name}:${tag}`);
  keys.push(name);
  for (let i = ref.repository.lastIndexOf('/'); i > 0; i = ref.repository.lastIndexOf('/', i - 1)) {
    keys.push(`${ref.registry}/${ref.repository.slice(0, i)}/`);
  }
  keys.push(`${ref.registry}/`);
  keys.push('');
  return keys;
}

/** Whether the image's first component is a cache address in use (the image went through stage 2). */
export function isCacheRouted(
  snapshot: MapSnapshot,
  settings: DecisionSettings,
  ref: ImageReference,
): boolean {
  return (
    snapshot.cacheHosts.has(ref.registry) ||
    (snapshot.defaultCacheUsed && ref.registry === settings.cacheAddress)
  );
}

/** The scopes whose index can match an image of `registry` in `namespace`: namespaced first. */
export function scopesFor(
  snapshot: MapSnapshot,
  namespace: string | undefined,
  registry: string,
): ScopeIndex[] {
  const scopes: ScopeIndex[] = [];
  const ns = namespace === undefined ? undefined : snapshot.namespaces.get(namespace);
  if (ns && scopeMayMatch(ns, registry)) scopes.push(ns);
  if (scopeMayMatch(snapshot.cluster, registry)) scopes.push(snapshot.cluster);
  return scopes;
}
