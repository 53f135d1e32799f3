// `pullmap serve`: the admission webhook. Wires the map source, the existence oracle, metrics and logs
// to the HTTPS server, and shuts down gracefully on SIGTERM/SIGINT (readiness first, then in-flight
// reviews finish).

import type { Writable } from 'node:stream';
import { existenceFromFlags, type RegistryFlags } from '../cli/existence.ts';
import { UsageError } from '../cli/maps.ts';
import { DEFAULT_SNAPSHOT_OPTIONS } from '../core/mapping/index.ts';
import { createLogger, type Level } from '../observe/log.ts';
import { Registry } from '../observe/metrics.ts';
import { DEFAULT_MAPS_TEXT } from './default-maps.ts';
import { existenceMetrics } from './existence-metrics.ts';
import { ConfigError, startFileSource } from './file-source.ts';
import { startHttp } from './http.ts';
import type { MapState } from './map-source.ts';
import { createPodWebhook, type FailurePolicy } from './webhook.ts';

export const MUTATE_PODS_PATH = '/mutate-pods';

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
}

export interface ServeIO {
  readonly stderr: Writable;
  /** Resolves when the process is asked to stop (SIGTERM/SIGINT in the real command). */
  readonly stopped: Promise<string>;
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/;

export async function serve(options: ServeOptions, io: ServeIO): Promise<number> {
  if (!options.tls && !LOOPBACK.test(options.host))
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

  let source: Awaited<ReturnType<typeof startFileSource>>;
  try {
    source = await startFileSource({
      path: options.config,
      defaultText: DEFAULT_MAPS_TEXT,
      snapshotOptions: {
        ...DEFAULT_SNAPSHOT_OPTIONS,
        cacheAddress: options.cacheAddress,
        excludedNamespaces: options.excludedNamespaces,
      },
      reloadIntervalMs: options.reloadIntervalMs,
      logger,
      onSwap,
    });
  } catch (err) {
    if (err instanceof ConfigError) throw new UsageError(err.message);
    throw err;
  }
  const existence = await existenceFromFlags(options.registry, existenceMetrics(metrics));
  const webhook = createPodWebhook({
    source,
    existence: existence.source,
    namespaceLabels: () => ({}),
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
      reviews: new Map([[MUTATE_PODS_PATH, webhook]]),
      maxBodyBytes: options.maxRequestBytes,
      ready: () => source.current() !== undefined,
      metrics,
      logger,
    });
  } catch (err) {
    await Promise.all([source.close(), existence.close()]);
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
    paths: [MUTATE_PODS_PATH, '/healthz', '/readyz', '/metrics'],
    failurePolicy: options.failurePolicy,
    deadlineMs: options.deadlineMs,
  });

  const signal = await io.stopped;
  logger.info('shutting down', { signal, inflight: server.inflight() });
  await server.shutdown({ delayMs: options.shutdownDelayMs, graceMs: options.shutdownGraceMs });
  await Promise.all([source.close(), existence.close()]);
  logger.info('stopped');
  return 0;
}
