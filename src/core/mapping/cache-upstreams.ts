// Maps that route through the pullmap cache to a registry the cache does not proxy: the cache answers
// such pulls NAME_UNKNOWN (it is not an open proxy), so the pod fails at pull time with nothing said
// earlier. `pullmap check --cache-upstreams` reports them; the controller can call the same function
// once the chart hands it the cache's upstreams.

import { canonicalRegistry, checkDomainAndPort } from '../reference/index.ts';
import { type CompiledMap, mapRefName } from './rule.ts';

export interface UpstreamFinding {
  /** "ClusterImageMap/hub". */
  readonly map: string;
  /** The field: "spec.mappings[0].to", or "spec.mappings[0].to[1]" for a list of candidates. */
  readonly path: string;
  readonly registry: string;
  readonly message: string;
}

/**
 * A --cache-upstreams value ("docker.io,quay.io"): the hosts, or the first one that is not a registry
 * host[:port] as image references and the cache config write it. `check` and `serve` share this parse.
 */
export function parseCacheUpstreams(
  text: string,
): { readonly hosts: readonly string[] } | { readonly error: string } {
  const hosts = text
    .split(',')
    .map((h) => h.trim())
    .filter(Boolean);
  if (hosts.length === 0)
    return { error: "names no host; give the cache's upstream hosts, e.g. docker.io,quay.io" };
  for (const host of hosts) {
    if (host !== host.toLowerCase())
      return { error: `${JSON.stringify(host)} must be lowercase, as image references write registry hosts` };
    const bad = checkDomainAndPort(host);
    if (bad)
      return {
        error: `${JSON.stringify(host)} is not a registry host[:port] (${bad.message}); write hosts as the cache config's upstreams[].host, e.g. docker.io,127.0.0.1:5000`,
      };
  }
  return { hosts };
}

/**
 * Targets of maps with cache.enabled (at the default cache address: a map with its own
 * cache.address names another cache) whose registry is not one of `upstreams`.
 */
export function cacheUpstreamFindings(
  maps: readonly CompiledMap[],
  upstreams: readonly string[],
): UpstreamFinding[] {
  const known = new Set(upstreams.map(canonicalRegistry));
  const list = [...known].join(', ') || 'none';
  const findings: UpstreamFinding[] = [];
  for (const map of maps) {
    if (!map.spec.cache?.enabled || map.spec.cache.address !== undefined) continue;
    for (const rule of map.rules) {
      rule.targets.forEach((target, j) => {
        const registry =
          target.kind === 'prefix'
            ? target.registry
            : target.kind === 'all'
              ? undefined
              : target.ref.registry;
        if (registry === undefined || known.has(registry)) return;
        const path = `spec.mappings[${rule.index}].to${rule.targets.length > 1 ? `[${j}]` : ''}`;
        findings.push({
          map: mapRefName(map.ref),
          path,
          registry,
          message: `${registry} is not an upstream of the cache (its upstreams: ${list}), so pulls routed through it would fail with NAME_UNKNOWN: add ${registry} to the cache's upstreams, or disable cache for this map`,
        });
      });
    }
  }
  return findings;
}
