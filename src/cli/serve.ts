// `pullmap serve`: the admission webhook. Wires the map source, the existence oracle, metrics and logs
// to the HTTPS server, and shuts down gracefully on SIGTERM/SIGINT (readiness first, then in-flight
// reviews finish).

import { access } from 'node:fs/promises';
import type { Writable } from 'node:stream';
import {
  type CompiledMap,
  type DecisionSettings,
  type Labels,
  mapRefName,
  selectorLabelKeys,
} from '../core/mapping/index.ts';
import { isLoopbackName } from '../core/net.ts';
import { createLogger, type Level, type Logger } from '../observe/log.ts';
import { MetricsRegistry } from '../observe/metrics.ts';
import { DEFAULT_MAPS_TEXT } from '../serve/default-maps.ts';
import { ConfigError } from '../serve/errors.ts';
import { existenceMetrics } from '../serve/existence-metrics.ts';
import { startFileSource } from '../serve/file-source.ts';
import { type ReviewHandler, startHttp } from '../serve/http.ts';
import { type NamespaceLabels, watchNamespaceLabels } from '../serve/namespaces.ts';
import { createPodWebhook, type FailurePolicy } from '../serve/webhook.ts';
import type { MapSource, MapState } from '../sources/map-source.ts';
import { UsageError } from './errors.ts';
import { existenceFromFlags, type RegistryFlags } from './existence.ts';

const MUTATE_PODS_PATH = '/mutate-pods';
const VALIDATE_MAPS_PATH = '/validate-maps';

interface ClusterOptions {
  /** A kubeconfig file; undefined: in-cluster service account, else $KUBECONFIG or ~/.kube/config. */
  readonly kubeconfig: string | undefined;
  /** Namespace of the leader-election Lease (pullmap's own). */
  readonly leaseNamespace: string;
  /** This replica's name in the Lease (the pod name). */
  readonly identity: string;
  readonly leaderElect: boolean;
  readonly recheckIntervalMs: number;
  readonly onRejectedUpdate: 'KeepLastAccepted' | 'Undeploy';
  /** Copy ClusterImageMap pull secrets into the namespaces they apply to (needs Secret access cluster-wide). */
  readonly pullSecretCopy: boolean;
  /** The cache's upstream hosts: maps routed through the cache to other hosts get a warning condition. */
  readonly cacheUpstreams: readonly string[] | undefined;
}

interface ServeOptions {
  /** The --config values (files, directories); undefined: the embedded default maps. */
  readonly config: readonly string[] | undefined;
  /** The cluster: its maps (cluster mode), or namespace labels for namespaceSelector (file mode). */
  readonly kubeconfig: string | undefined;
  /** The process environment (in-cluster detection). */
  readonly env: NodeJS.ProcessEnv;
  readonly host: string;
  readonly port: number;
  /** A plain-HTTP listener for /healthz and /readyz alone (the probes). */
  readonly health: { readonly host: string; readonly port: number } | undefined;
  readonly tls: { readonly certFile: string; readonly keyFile: string } | undefined;
  readonly deadlineMs: number;
  readonly failurePolicy: FailurePolicy;
  /** --cache-address and --exclude-namespaces: the webhook, the fill loop and the pull secret copies read them. */
  readonly settings: DecisionSettings;
  readonly logLevel: Level;
  readonly shutdownDelayMs: number;
  readonly shutdownGraceMs: number;
  readonly maxRequestBytes: number;
  readonly maxInflightBytes: number;
  readonly reloadIntervalMs: number;
  readonly registry: RegistryFlags;
  /** Maps from the cluster's ImageMap/ClusterImageMap objects instead of a file. */
  readonly cluster: ClusterOptions | undefined;
}

interface ServeIO {
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
  const metrics = new MetricsRegistry();
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

  // Finished fills refresh the webhook's existence answers (bound once the existence source exists).
  let onFilled: (target: string) => void = () => {};
  const maps = options.cluster
    ? await clusterMaps(options.cluster, options, { logger, metrics, onSwap }, (target) => onFilled(target))
    : await fileMaps(options, { logger, metrics, onSwap });
  const { source, reviews, closers } = maps;
  closers.push(() => source.close());
  const existence = await existenceFromFlags(options.registry, existenceMetrics(metrics));
  onFilled = (target) => existence.invalidate(target);
  const webhook = createPodWebhook({
    source,
    existence: existence.source,
    // Read at each review: file mode starts the namespace watch when a map first needs it.
    namespaceLabels: (ns) => maps.namespaceLabels(ns),
    settings: options.settings,
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
      maxInflightBytes: options.maxInflightBytes,
      health: options.health,
      ready: () => source.current() !== undefined && maps.ready(),
      metrics,
      logger,
    });
  } catch (err) {
    await Promise.all([...closers.map((c) => c()), existence.close()]);
    throw listenError(err, options);
  }
  logger.info('serving', {
    url: server.url,
    healthUrl: server.healthUrl,
    paths: [...reviews.keys(), '/healthz', '/readyz', '/metrics'],
    maps: options.cluster ? 'cluster' : (options.config ?? ['embedded default']),
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

/** Where the webhook's maps and namespace labels come from, with the review paths and closers they add. */
interface Maps {
  readonly source: MapSource;
  /** Read at each review: file mode starts the namespace watch when a map first needs it. */
  namespaceLabels: (namespace: string) => Labels;
  /** Whether the namespace labels are known (their watch synced). */
  ready: () => boolean;
  readonly reviews: Map<string, ReviewHandler>;
  readonly closers: Array<() => Promise<void>>;
}

interface MapsContext {
  readonly logger: Logger;
  readonly metrics: MetricsRegistry;
  readonly onSwap: (state: MapState) => void;
}

/** Cluster mode: maps, namespace labels and map validation from the cluster, with the fill loop. */
async function clusterMaps(
  clusterOptions: ClusterOptions,
  options: ServeOptions,
  { logger, metrics, onSwap }: MapsContext,
  onFilled: (target: string) => void,
): Promise<Maps> {
  const cluster = await startCluster(clusterOptions, options.settings, logger, metrics, onSwap, onFilled);
  const { startClusterFill } = await import('./fill.ts');
  const fill = await startClusterFill({
    cluster: clusterOptions,
    source: cluster.source,
    namespaceLabels: (ns) => cluster.namespaces.labels(ns),
    settings: options.settings,
    registry: options.registry,
    logger,
    metrics,
    onFilled,
  });
  const { copier } = cluster;
  return {
    source: cluster.source,
    namespaceLabels: (ns) => cluster.namespaces.labels(ns),
    ready: () => cluster.namespaces.synced(),
    reviews: new Map([[VALIDATE_MAPS_PATH, cluster.validate]]),
    closers: [() => fill.close(), () => cluster.namespaces.stop(), ...(copier ? [() => copier.close()] : [])],
  };
}

/**
 * File mode: namespace labels come from the cluster when one is reachable (--kubeconfig, or the pod's
 * service account), watched from the first map that selects on other labels; without one, such a map
 * is a start-up error (it would silently select nothing) and an error log on reload.
 */
async function fileMaps(options: ServeOptions, { logger, metrics, onSwap }: MapsContext): Promise<Maps> {
  const namespaceWatch = await fileModeNamespaces(options, logger);
  let starting = true;
  let unanswerable: CompiledMap[] = [];
  const maps: Omit<Maps, 'source'> = {
    // The apiserver sets kubernetes.io/metadata.name on every namespace: known without a cluster.
    namespaceLabels: (ns) => ({ 'kubernetes.io/metadata.name': ns }),
    ready: () => true,
    reviews: new Map(),
    closers: namespaceWatch ? [() => namespaceWatch.stop()] : [],
  };
  const onFileSwap = (state: MapState) => {
    onSwap(state);
    const needing = state.analysis.accepted.filter(needsNamespaceLabels);
    if (needing.length === 0) return;
    if (namespaceWatch) {
      const watch = namespaceWatch.start();
      maps.namespaceLabels = (ns) => watch.labels(ns);
      maps.ready = () => watch.synced();
    } else if (starting) unanswerable = needing;
    else
      logger.error('map selects namespaces by labels, but serve has no cluster to read them from', {
        maps: needing.map((m) => mapRefName(m.ref)),
        fix: 'give --kubeconfig FILE, run in a pod, or select by kubernetes.io/metadata.name',
      });
  };
  let source: MapSource;
  try {
    source = await startFileSource({
      paths: options.config ?? [],
      defaultText: DEFAULT_MAPS_TEXT,
      reloadIntervalMs: options.reloadIntervalMs,
      logger,
      metrics,
      onSwap: onFileSwap,
    });
  } catch (err) {
    await namespaceWatch?.stop();
    if (err instanceof ConfigError) throw new UsageError(err.message, { cause: err });
    throw err;
  }
  starting = false;
  if (unanswerable.length > 0) {
    await source.close();
    throw new UsageError(
      `${unanswerable.map((m) => mapRefName(m.ref)).join(', ')}: spec.namespaceSelector reads namespace labels (${[
        ...new Set(unanswerable.flatMap((m) => selectorLabelKeys(m.spec.namespaceSelector))),
      ].join(
        ', ',
      )}), but serve --config has no cluster to read them from; give --kubeconfig FILE, run serve in a pod, or select namespaces by kubernetes.io/metadata.name only`,
    );
  }
  if (options.config === undefined)
    logger.warn('no --config given: serving the embedded default maps (examples/default.yaml)', {});
  return Object.assign(maps, { source });
}

/** A listener that could not start, as the flag to fix when the cause is the operator's. */
function listenError(err: unknown, options: ServeOptions): unknown {
  const code = (err as NodeJS.ErrnoException).code;
  const failed = err as { port?: number; syscall?: string };
  const unusable = code === 'EADDRINUSE' || code === 'EACCES' || code === 'EADDRNOTAVAIL';
  if (options.health && unusable && failed.syscall === 'listen' && failed.port === options.health.port)
    return new UsageError(`--health-listen ${options.health.host}:${options.health.port}: ${code}`);
  if (unusable) return new UsageError(`--listen ${options.host}:${options.port}: ${code}`);
  if (code === 'ENOENT') return new UsageError(`--tls-cert/--tls-key: cannot read: ${code}`);
  if (options.tls)
    return new UsageError(
      `--tls-cert/--tls-key: not a usable certificate and key: ${(err as Error).message}`,
    );
  return err;
}

/** A ClusterImageMap whose namespaceSelector reads labels only a cluster knows. */
const needsNamespaceLabels = (map: CompiledMap): boolean =>
  map.ref.kind === 'ClusterImageMap' &&
  selectorLabelKeys(map.spec.namespaceSelector).some((k) => k !== 'kubernetes.io/metadata.name');

/** A namespace watch started on first need, or undefined when no cluster is reachable in file mode. */
async function fileModeNamespaces(
  options: ServeOptions,
  logger: Logger,
): Promise<{ start(): NamespaceLabels; stop(): Promise<void> } | undefined> {
  const { loadKubeConfig, SERVICE_ACCOUNT_DIR } = await import('../kube/config.ts');
  const env = options.env;
  let kubeConfig: Awaited<ReturnType<typeof loadKubeConfig>>;
  try {
    if (options.kubeconfig !== undefined)
      kubeConfig = await loadKubeConfig({ path: options.kubeconfig, env });
    else {
      // Only the pod's own service account counts here, never a developer's ~/.kube/config.
      const inCluster =
        env.KUBERNETES_SERVICE_HOST !== undefined &&
        (await access(`${SERVICE_ACCOUNT_DIR}/token`).then(
          () => true,
          () => false,
        ));
      if (!inCluster) return undefined;
      kubeConfig = await loadKubeConfig({
        env: {
          KUBERNETES_SERVICE_HOST: env.KUBERNETES_SERVICE_HOST,
          KUBERNETES_SERVICE_PORT: env.KUBERNETES_SERVICE_PORT,
          HOME: SERVICE_ACCOUNT_DIR, // holds no .kube/config: the service account is what is read
        },
      });
    }
  } catch (err) {
    throw new UsageError(
      `--kubeconfig${options.kubeconfig ? ` ${options.kubeconfig}` : ''}: cannot use it: ${(err as Error).message}`,
    );
  }
  const { kubeClient } = await import('../kube/client.ts');
  let watch: NamespaceLabels | undefined;
  return {
    start() {
      if (!watch) {
        watch = watchNamespaceLabels(kubeClient(kubeConfig), logger);
        logger.info('watching namespace labels for namespaceSelector', {});
      }
      return watch;
    },
    stop: async () => watch?.stop(),
  };
}

/**
 * Maps from the cluster: the controller's list-watch source (status written by the Lease holder),
 * namespace labels from their own watch, and the validating webhook for map objects. Loaded only in
 * this mode, so the file mode never loads the Kubernetes client.
 */
async function startCluster(
  options: ClusterOptions,
  settings: DecisionSettings,
  logger: Logger,
  metrics: MetricsRegistry,
  onSwap: (state: MapState) => void,
  onFilled: (target: string) => void,
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
    recheckIntervalMs: options.recheckIntervalMs,
    onRejectedUpdate: options.onRejectedUpdate,
    pullSecretCopy: options.pullSecretCopy,
    cacheUpstreams: options.cacheUpstreams,
    ...(options.leaderElect
      ? { leaderElection: { namespace: options.leaseNamespace, identity: options.identity } }
      : {}),
    logger: logger.with({ component: 'controller' }),
    // Fills the leader finished, seen by every replica in the maps' status.
    onFilled,
  });
  source.subscribe(onSwap);
  const namespaces = watchNamespaceLabels(kubeClient(kubeConfig), logger);
  // ClusterImageMaps' pull secrets live in pullmap's namespace (the Lease's); copies go where they apply.
  // Switched off, no Secret is watched or written (the chart then grants no access to Secrets), and
  // the maps naming one say so in their status.
  const copier = options.pullSecretCopy
    ? startPullSecretCopier({
        client: kubeClient(kubeConfig),
        namespace: options.leaseNamespace,
        source,
        settings,
        logger: logger.with({ component: 'pull-secrets' }),
      })
    : undefined;
  if (copier)
    metrics
      .counter('pullmap_pull_secret_copies_written_total', 'Pull secret copies created, updated or deleted.')
      .collect(() => copier.stats.created + copier.stats.updated + copier.stats.deleted);
  metrics
    .gauge('pullmap_controller_leader', '1 when this replica holds the Lease and writes status.')
    .collect(() => (source.mayWrite() ? 1 : 0));
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
