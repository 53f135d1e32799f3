// Map objects for core's unit tests: one ClusterImageMap from its spec, and the snapshot its
// analysis accepts, as serve and the CLI build it.
import { analyzeMaps, buildSnapshot, type MapSnapshot } from '../../src/core/mapping/index.ts';

/** The snapshot of one ClusterImageMap named `name` with `spec`. */
export function clusterSnapshot(spec: Record<string, unknown>, name = 'edge'): MapSnapshot {
  return buildSnapshot(
    analyzeMaps([
      { current: { apiVersion: 'pullmap.dev/v1alpha1', kind: 'ClusterImageMap', metadata: { name }, spec } },
    ]).accepted,
  );
}
