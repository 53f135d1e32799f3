// What the operator sets by flag beside the maps: where the cache is, which namespaces are left alone.
// A value of its own, not part of the map index: built once from flags (serve) or the defaults (the CLI),
// never changed while maps come and go, and passed to every decision next to the snapshot.

export interface DecisionSettings {
  /** host:port of the pullmap cache, for maps with cache.enabled and no address of their own. */
  readonly cacheAddress: string;
  /** Namespaces whose pods are never changed (pullmap's own, kube-system). */
  readonly excludedNamespaces: readonly string[];
}

/** Settings from flags: whatever is not given keeps the flags' defaults. Frozen: settings never change. */
export function decisionSettings(given: Partial<DecisionSettings> = {}): DecisionSettings {
  return Object.freeze({
    cacheAddress: given.cacheAddress ?? 'localhost:7439',
    excludedNamespaces: Object.freeze([...(given.excludedNamespaces ?? ['kube-system', 'pullmap-system'])]),
  });
}

/** The flags' defaults: what `pullmap serve` uses without --cache-address and --exclude-namespaces. */
export const DEFAULT_DECISION_SETTINGS: DecisionSettings = decisionSettings();
