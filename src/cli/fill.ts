// Wiring of the controller's fill loop for `pullmap serve --maps-from cluster`: its own Kubernetes
// client (closed with the loop) and registry settings from the same flags as the existence probes.

import type { FillLoop } from '../controller/fill.ts';
import type { ClusterMapSource } from '../controller/map-source.ts';
import type { DecisionSettings, Labels } from '../core/mapping/index.ts';
import type { Logger } from '../observe/log.ts';
import type { MetricsRegistry } from '../observe/metrics.ts';
import { type RegistryFlags, registryClientOptions } from './existence.ts';

interface ClusterFillOptions {
  /** From `serve --maps-from cluster`: the kubeconfig, and pullmap's own namespace (the Lease's). */
  readonly cluster: { readonly kubeconfig: string | undefined; readonly leaseNamespace: string };
  readonly source: ClusterMapSource;
  readonly namespaceLabels: (namespace: string) => Labels;
  readonly settings: DecisionSettings;
  readonly registry: RegistryFlags;
  readonly logger: Logger;
  readonly metrics: MetricsRegistry;
  readonly onFilled: (target: string) => void;
}

/** Copies (blobs of any size) need longer than a probe: each registry request may take 60 s. */
const FILL_REQUEST_TIMEOUT_MS = 60_000;

export async function startClusterFill(options: ClusterFillOptions): Promise<FillLoop> {
  const [{ loadKubeConfig }, { kubeClient }, { startFillLoop }] = await Promise.all([
    import('../kube/config.ts'),
    import('../kube/client.ts'),
    import('../controller/fill.ts'),
  ]);
  const kubeConfig = await loadKubeConfig({ path: options.cluster.kubeconfig });
  const loop = startFillLoop({
    client: kubeClient(kubeConfig),
    namespace: options.cluster.leaseNamespace,
    source: options.source,
    namespaceLabels: options.namespaceLabels,
    settings: options.settings,
    registry: await registryClientOptions(options.registry, FILL_REQUEST_TIMEOUT_MS),
    onFilled: options.onFilled,
    logger: options.logger.with({ component: 'fill' }),
    metrics: options.metrics,
  });
  return loop;
}
