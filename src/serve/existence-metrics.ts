// The existence oracle's events as Prometheus metrics.
import type { Registry } from '../observe/metrics.ts';
import type { OracleObserver } from '../registry/existence-oracle.ts';

export function existenceMetrics(metrics: Registry): OracleObserver {
  const lookups = metrics.counter(
    'pullmap_existence_lookups_total',
    'Existence questions by how they were answered: hit (cache), miss (probed), coalesced (joined a probe in flight).',
    ['result'],
  );
  const probes = metrics.counter('pullmap_existence_probes_total', 'Registry probes by outcome.', [
    'outcome',
  ]);
  const latency = metrics.histogram('pullmap_existence_probe_duration_seconds', 'Registry probe latency.');
  const deadlines = metrics.counter(
    'pullmap_existence_deadline_exceeded_total',
    'Questions answered Timeout because the admission deadline came first.',
  );
  const evictions = metrics.counter(
    'pullmap_existence_cache_evictions_total',
    'Answers evicted from the LRU.',
  );
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
      case 'probe':
        probes.inc({ outcome: event.outcome });
        latency.observe(event.latencyMs / 1000);
        break;
      case 'deadline':
        deadlines.inc();
        break;
      case 'eviction':
        evictions.inc();
        break;
    }
  };
}
