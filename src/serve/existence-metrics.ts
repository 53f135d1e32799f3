// The existence oracle's events as Prometheus metrics. Probe series carry the candidate's registry:
// hosts come from the maps' targets, but a regex or identity mapping could take one from a pod, so
// the label keeps the first MAX_REGISTRIES hosts seen and counts the rest as "other".
import type { MetricsRegistry } from '../observe/metrics.ts';
import type { OracleObserver } from '../registry/existence-oracle.ts';

export const MAX_REGISTRIES = 32;

/** The registry host of a normalized candidate ("registry.local/team/app:1" → "registry.local"). */
export function registryOf(candidate: string): string {
  const slash = candidate.indexOf('/');
  return slash < 0 ? candidate : candidate.slice(0, slash);
}

export function existenceMetrics(metrics: MetricsRegistry): OracleObserver {
  const lookups = metrics.counter(
    'pullmap_existence_lookups_total',
    'Existence questions by how they were answered: hit (cache), miss (probed), coalesced (joined a probe in flight).',
    ['result'],
  );
  const probes = metrics.counter(
    'pullmap_existence_probes_total',
    'Registry probes by registry and outcome.',
    ['registry', 'outcome'],
  );
  const latency = metrics.histogram('pullmap_existence_probe_duration_seconds', 'Registry probe latency.', [
    'registry',
  ]);
  const deadlines = metrics.counter(
    'pullmap_existence_deadline_exceeded_total',
    'Questions answered Timeout because the admission deadline came first, by registry.',
    ['registry'],
  );
  const evictions = metrics.counter(
    'pullmap_existence_cache_evictions_total',
    'Answers evicted from the LRU.',
  );
  const seen = new Set<string>();
  const label = (candidate: string): string => {
    const host = registryOf(candidate);
    if (seen.has(host)) return host;
    if (seen.size >= MAX_REGISTRIES) return 'other';
    seen.add(host);
    return host;
  };
  // Every cached answer a review uses is a hit: that series is bound once.
  const hits = lookups.bind({ result: 'hit' });
  return (event) => {
    switch (event.kind) {
      case 'hit':
        hits.inc();
        break;
      case 'miss':
      case 'coalesced':
        lookups.inc({ result: event.kind });
        break;
      case 'probe': {
        const registry = label(event.candidate);
        probes.inc({ registry, outcome: event.outcome });
        latency.observe(event.latencyMs / 1000, { registry });
        break;
      }
      case 'deadline':
        deadlines.inc({ registry: label(event.candidate) });
        break;
      case 'eviction':
        evictions.inc();
        break;
    }
  };
}
