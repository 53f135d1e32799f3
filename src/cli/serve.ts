// `pullmap serve`: the admission webhook. Wires the map source, the existence oracle, metrics and logs
// to the HTTPS server, and shuts down gracefully on SIGTERM/SIGINT (readiness first, then in-flight
// reviews finish).

import type { Writable } from 'node:stream';
import type { Labels } from '../core/mapping/index.ts';
import { DEFAULT_SNAPSHOT_OPTIONS, type SnapshotOptions } from '../core/mapping/index.ts';
import { isLoopbackName } from '../core/net.ts';
import type { MapSource, MapState } from '../decision/map-source.ts';
import { createLogger, type Level, type Logger } from '../observe/log.ts';
import { Registry } from '../observe/metrics.ts';
import { DEFAULT_MAPS_TEXT } from '../serve/default-maps.ts';
import { existenceMetrics } from '../serve/existence-metrics.ts';
import { ConfigError, startFileSource } from '../serve/file-source.ts';
import { type ReviewHandler, startHttp } from '../serve/http.ts';
import { watchNamespaceLabels } from '../serve/namespaces.ts';
import { createPodWebhook, type FailurePolicy } from '../serve/webhook.ts';
import { existenceFromFlags, type RegistryFlags } from './existence.ts';
import { UsageError } from './maps.ts';

export const MUTATE_PODS_PATH = '/mutate-pods';
export const VALIDATE_MAPS_PATH = '/validate-maps';

export interface ClusterOptions {
  /** A kubeconfig file; undefined: in-cluster service account, else $KUBECONFIG or ~/.kube/config. */
  readonly kubeconfig: string | undefined;
  /** Namespace of the leader-election Lease (pullmap's own). */
  readonly leaseNamespace: string;
  /** This replica's name in the Lease (the pod name). */
  readonly identity: string;
  readonly leaderElect: boolean;
  readonly recheckIntervalMs: number;
  readonly onRejectedUpdate: 'KeepLastAccepted' | 'Undeploy';
}

export interface ServeOptions {
  readonly config: string | undefined;
  readonly host: string;
  readonly port: number;
  readonly tls: { readonly certFile: string; readonly keyFile: string } | undefined;
  readonly deadlineMs: number;
  readonly failurePolicy: FailurePolicy;
  readonly cacheAddress: string;
  readonly excludedNamespaces: readonly string[];
  readonly logLevel: Level;
  readonly shutdownDelayMs: number;
  readonly shutdownGraceMs: number;
  readonly maxRequestBytes: number;
  readonly reloadIntervalMs: number;
  readonly registry: RegistryFlags;
  /** Maps from the cluster's ImageMap/ClusterImageMap objects instead of a file. */
  readonly cluster: ClusterOptions | undefined;
}

export interface ServeIO {
  readonly stderr: Writable;
  /** Resolves when the process is asked to stop (SIGTERM/SIGINT in the real command). */
  readonly stopped: Promise<string>;
}

export async function serve(options: ServeOptions, io: ServeIO): Promise<number> {
  if (!options.tls && !isLoopbackName(options.host))
    throw new UsageError(
      `--no-tls serves plain HTTP, allowed only on a loopback address; use --listen 127.0.0.1:${options.port} or give --tls-cert and --tls-key`,
    );
  const logger = createLogger({ level: options.logLevel, out: io.stderr, base: { component: 'webhook' } });
  const metrics = new Registry();
  metrics.processMetrics(Date.now(), Date.now);
  const mapsVersion = metrics.gauge(
    'pullmap_maps_version',
    'Version of the maps in force (bumps on every change).',
  );
  const mapsByVerdict = metrics.gauge('pullmap_maps', 'Map objects by verdict.', ['verdict']);
  const onSwap = (state: MapState) => {
    mapsVersion.set(state.version);
    for (const verdict of ['Accepted', 'Conflict', 'Invalid'])
      mapsByVerdict.set(state.analysis.verdicts.filter((v) => v.verdict === verdict).length, { verdict });
  };

  const snapshotOptions = {
    ...DEFAULT_SNAPSHOT_OPTIONS,
    cacheAddress: options.cacheAddress,
    excludedNamespaces: options.excludedNamespaces,
  };
  let source: MapSource;
  let namespaceLabels: (namespace: string) => Labels = () => ({});
  let clusterReady = () => true;
  const reviews = new Map<string, ReviewHandler>();
  const closers: Array<() => Promise<void>> = [];
  if (options.cluster) {
    const cluster = await startCluster(options.cluster, snapshotOptions, logger, metrics, onSwap);
    source = cluster.source;
    namespaceLabels = (ns) => cluster.namespaces.labels(ns);
    clusterReady = () => cluster.namespaces.synced();
    reviews.set(VALIDATE_MAPS_PATH, cluster.validate);
    closers.push(
      () => cluster.namespaces.stop(),
      () => cluster.copier.close(),
    );
  } else {
    try {
      source = await startFileSource({
        path: options.config,
        defaultText: DEFAULT_MAPS_TEXT,
        snapshotOptions,
        reloadIntervalMs: options.reloadIntervalMs,
        logger,
        onSwap,
      });
    } catch (err) {
      if (err instanceof ConfigError) throw new UsageError(err.message);
      throw err;
    }
  }
  closers.push(() => source.close());
  const existence = await existenceFromFlags(options.registry, existenceMetrics(metrics));
  const webhook = createPodWebhook({
    source,
    existence: existence.source,
    namespaceLabels,
    deadlineMs: options.deadlineMs,
    failurePolicy: options.failurePolicy,
    metrics,
    logger,
    now: () => performance.now(),
  });

  let server: Awaited<ReturnType<typeof startHttp>>;
  try {
    server = await startHttp({
      host: options.host,
      port: options.port,
      tls: options.tls && { ...options.tls, reloadIntervalMs: options.reloadIntervalMs },
      reviews: reviews.set(MUTATE_PODS_PATH, webhook),
      maxBodyBytes: options.maxRequestBytes,
      ready: () => source.current() !== undefined && clusterReady(),
      metrics,
      logger,
    });
  } catch (err) {
    await Promise.all([...closers.map((c) => c()), existence.close()]);
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE' || code === 'EACCES' || code === 'EADDRNOTAVAIL')
      throw new UsageError(`--listen ${options.host}:${options.port}: ${code}`);
    if (code === 'ENOENT' || code === 'EACCES')
      throw new UsageError(`--tls-cert/--tls-key: cannot read: ${code}`);
    if (options.tls)
      throw new UsageError(
        `--tls-cert/--tls-key: not a usable certificate and key: ${(err as Error).message}`,
      );
    throw err;
  }
  logger.info('serving', {
    url: server.url,
    paths: [...reviews.keys(), '/healthz', '/readyz', '/metrics'],
    maps: options.cluster ? 'cluster' : (options.config ?? 'embedded default'),
    failurePolicy: options.failurePolicy,
    deadlineMs: options.deadlineMs,
  });

  const signal = await io.stopped;
  logger.info('shutting down', { signal, inflight: server.inflight() });
  await server.shutdown({ delayMs: options.shutdownDelayMs, graceMs: options.shutdownGraceMs });
  await Promise.all([...closers.map((c) => c()), existence.close()]);
  logger.info('stopped');
  return 0;
}

/**
 * Maps from the cluster: the controller's list-watch source (status written by the Lease holder),
 * namespace labels from their own watch, and the validating webhook for map objects. Loaded only in
 * this mode, so the file mode never loads the Kubernetes client.
 */
async function startCluster(
  options: ClusterOptions,
  snapshotOptions: SnapshotOptions,
  logger: Logger,
  metrics: Registry,
  onSwap: (state: MapState) => void,
) {
  const [
    { loadKubeConfig },
    { startClusterMapSource },
    { reviewMapAdmission },
    { kubeClient },
    { startPullSecretCopier },
  ] = await Promise.all([
    import('../kube/config.ts'),
    import('../controller/map-source.ts'),
    import('../controller/validate.ts'),
    import('../kube/client.ts'),
    import('../controller/pull-secrets.ts'),
  ]);
  let kubeConfig: Awaited<ReturnType<typeof loadKubeConfig>>;
  try {
    kubeConfig = await loadKubeConfig({ path: options.kubeconfig });
  } catch (err) {
    throw new UsageError(
      `--maps-from cluster: cannot use the kubeconfig${options.kubeconfig ? ` ${options.kubeconfig}` : ''}: ${(err as Error).message}; give --kubeconfig FILE or run in a pod`,
    );
  }
  const source = startClusterMapSource({
    kubeConfig,
    snapshotOptions,
    recheckIntervalMs: options.recheckIntervalMs,
    onRejectedUpdate: options.onRejectedUpdate,
    ...(options.leaderElect
      ? { leaderElection: { namespace: options.leaseNamespace, identity: options.identity } }
      : {}),
    logger: logger.with({ component: 'controller' }),
  });
  source.subscribe(onSwap);
  const namespaces = watchNamespaceLabels(kubeClient(kubeConfig), logger);
  // ClusterImageMaps' pull secrets live in pullmap's namespace (the Lease's); copies go where they apply.
  const copier = startPullSecretCopier({
    client: kubeClient(kubeConfig),
    namespace: options.leaseNamespace,
    source,
    logger: logger.with({ component: 'pull-secrets' }),
  });
  metrics
    .counter('pullmap_pull_secret_copies_written_total', 'Pull secret copies created, updated or deleted.')
    .collect(() => copier.stats.created + copier.stats.updated + copier.stats.deleted);
  metrics
    .gauge('pullmap_controller_leader', '1 when this replica holds the Lease and writes status.')
    .collect(() => (source.isLeader() ? 1 : 0));
  metrics
    .counter('pullmap_controller_analyses_total', 'Consistency analyses run.')
    .collect(() => source.stats.analyses);
  metrics
    .counter('pullmap_controller_status_writes_total', 'Status writes made.')
    .collect(() => source.stats.statusWrites);
  metrics
    .counter('pullmap_controller_events_total', 'Events recorded on map objects.')
    .collect(() => source.stats.events);
  const validate: ReviewHandler = (request) => {
    const inputs = source.inputs();
    const state = source.current();
    return reviewMapAdmission(
      request,
      inputs && state ? { inputs, verdicts: state.analysis.verdicts } : undefined,
    );
  };
  return { source, namespaces, validate, copier };
}
