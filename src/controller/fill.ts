// The fill loop: the Lease holder copies the images that pods in a map's scope use into the first target
// of mappings with `fill.enabled`, so later pods pull them from there. Never in the admission path: the
// trigger is the pod itself (a pod admitted with its original image, or routed, appears in the pod
// watch at once), re-derived from all pods on every resync, so a copy cut short by a leader change is
// started again by the next leader, and the copy engine never tags what it did not finish.

import { resourcePath } from '../core/api/crd.ts';
import type { MapKind } from '../core/api/v1alpha1.ts';
import {
  type DecisionSettings,
  type FillPlan,
  fillTarget,
  type Labels,
  type MapSnapshot,
} from '../core/mapping/index.ts';
import { containerImages } from '../core/pod/locate.ts';
import { ANNOTATION_ORIGINAL_IMAGES, jsonAnnotation, podSkipReason, recordedFor } from '../core/pod/plan.ts';
import { formatReference, type ImageReference } from '../core/reference/index.ts';
import type { KubeClient } from '../kube/client.ts';
import { type KubeObject, ListWatch, type ListWatchTiming } from '../kube/list-watch.ts';
import { Copier, type CopyOutcome, type CopyResult } from '../mirror/copy.ts';
import { CopyFailure } from '../mirror/errors.ts';
import { type Platform, parsePlatform } from '../mirror/manifest.ts';
import { PushLedger } from '../mirror/push-ledger.ts';
import type { Logger } from '../observe/log.ts';
import type { MetricsRegistry } from '../observe/metrics.ts';
import {
  CredentialKeyring,
  type CredentialSource,
  parsePullSecret,
  RegistryClient,
  type RegistryClientOptions,
} from '../registry/index.ts';
import type { ClusterMapSource } from './map-source.ts';

interface FillLoopOptions {
  /** Owned by the loop: closed by close(). */
  readonly client: KubeClient;
  /** pullmap's own namespace: where a ClusterImageMap's fill.secret lives. */
  readonly namespace: string;
  readonly source: Pick<ClusterMapSource, 'current' | 'subscribe' | 'mayWrite'>;
  readonly namespaceLabels: (namespace: string) => Labels;
  /** The webhook's settings: what it maps is what is filled, where it maps it. */
  readonly settings: DecisionSettings;
  /** How registries are reached (plain HTTP hosts, CAs, timeouts) and pullmap's own credentials. */
  readonly registry: Pick<RegistryClientOptions, 'endpoints' | 'defaults'> & {
    readonly credentials?: CredentialSource | undefined;
  };
  /** Called with the target (normalised name) of every finished copy: the existence cache forgets it. */
  readonly onFilled?: ((target: string) => void) | undefined;
  readonly logger: Logger;
  readonly metrics?: MetricsRegistry | undefined;
  readonly watch?: Partial<ListWatchTiming> | undefined;
  /** Re-derive the images from all pods this often (default 60 s); also retries failures that are due. */
  readonly resyncIntervalMs?: number | undefined;
  /** Images copied at once (default 2); blobs per target registry are bounded by the copy engine. */
  readonly concurrency?: number | undefined;
  /** First wait before a failed image is tried again; doubles up to 30 minutes (default 30 s). */
  readonly retryMs?: number | undefined;
  readonly now?: (() => Date) | undefined;
}

export type FillState = 'Pending' | 'Copying' | 'Filled' | 'Partial' | 'Failed';

export interface FillItem {
  readonly key: string;
  readonly source: ImageReference;
  readonly target: ImageReference;
  readonly sourceName: string;
  readonly targetName: string;
  readonly platforms: readonly Platform[];
  /** Pull secrets of the pods using the image (ImageMaps only: they are the map's own namespace's). */
  readonly sourceSecrets: Set<string>;
  readonly sourceNamespace: string;
  /** The Secret with push credentials, already scoped (own namespace or the map's). */
  readonly secret: { readonly namespace: string; readonly name: string } | undefined;
  /** Without `secret`: whether the target is written with pullmap's own credentials (ClusterImageMaps). */
  readonly ownPush: boolean;
  /** The maps whose mappings asked for this copy (status goes to each). */
  readonly maps: Map<string, MapTarget>;
  state: FillState;
  digest: string | undefined;
  lastError: string | undefined;
  time: string;
  failures: number;
  retryAt: number;
}

interface MapTarget {
  readonly kind: MapKind;
  readonly namespace: string | undefined;
  readonly name: string;
}

export interface FillLoop {
  readonly stats: { copies: number; failures: number; bytes: number; statusWrites: number };
  /** The loop's view of one image (tests, debugging). */
  item(source: string): FillItem | undefined;
  /** Resolves once no copy is queued or running after a reconcile (tests). */
  idle(): Promise<void>;
  close(): Promise<void>;
}

const MAX_ITEMS = 5000;
const MAX_STATUS_IMAGES = 50;
const MAX_RETRY_MS = 30 * 60_000;
const STATUS_DELAY_MS = 1000;
/** How long a filled image is trusted before the loop checks the target still has it. */
const RECHECK_MS = 60 * 60_000;

const timestamp = (d: Date): string => d.toISOString().replace(/\.\d+Z$/, 'Z');

/** What a pod runs: its spec's images, or the originals the webhook recorded for images it routed. */
function podImages(pod: KubeObject): { image: string; pullPolicy: string | undefined }[] {
  const spec = (pod as { spec?: unknown }).spec;
  if (typeof spec !== 'object' || spec === null) return [];
  const originals = jsonAnnotation(pod.metadata['annotations'], ANNOTATION_ORIGINAL_IMAGES);
  return containerImages(spec as Parameters<typeof containerImages>[0]).map((c) => {
    return {
      image: recordedFor(originals, c.name) ?? c.image,
      pullPolicy: c.pullPolicy,
    };
  });
}

const MAX_SOURCE_SECRETS = 8;

function pullSecretNames(pod: KubeObject): string[] {
  const list = (pod as { spec?: { imagePullSecrets?: unknown } }).spec?.imagePullSecrets;
  if (!Array.isArray(list)) return [];
  return list.flatMap((s) => {
    const name = (s as { name?: unknown } | null)?.name;
    return typeof name === 'string' && name !== '' ? [name] : [];
  });
}

/** The pod's namespace and labels for fillTarget, or undefined when the webhook leaves the pod alone. */
function fillContext(
  pod: KubeObject,
  settings: DecisionSettings,
  labelsOf: (namespace: string) => Labels,
): { namespace: string; namespaceLabels: Labels; podLabels: Labels } | undefined {
  if (terminal(pod)) return undefined;
  const namespace = pod.metadata.namespace ?? 'default';
  const podLabels = (pod.metadata['labels'] as Labels | undefined) ?? {};
  const annotations = (pod.metadata['annotations'] as Record<string, string> | undefined) ?? {};
  // What the webhook leaves alone is not filled either.
  if (podSkipReason(settings, namespace, podLabels, annotations) !== undefined) return undefined;
  return {
    namespace,
    namespaceLabels: { 'kubernetes.io/metadata.name': namespace, ...labelsOf(namespace) },
    podLabels,
  };
}

/** The images each map asked for, by "kind/namespace/name". */
function itemsByMap(items: Iterable<FillItem>): Map<string, { map: MapTarget; items: FillItem[] }> {
  const perMap = new Map<string, { map: MapTarget; items: FillItem[] }>();
  for (const item of items)
    for (const [key, map] of item.maps) {
      const entry = perMap.get(key) ?? { map, items: [] };
      entry.items.push(item);
      perMap.set(key, entry);
    }
  return perMap;
}

/** A copy that threw (credentials unreadable, a client that could not be made) as a failed result. */
function thrownCopy(err: unknown): CopyResult {
  if (err instanceof CopyFailure) return { ok: false, error: err.error };
  return {
    ok: false,
    error: { code: 'TARGET_REFUSED', message: err instanceof Error ? err.message : String(err) },
  };
}

const terminal = (pod: KubeObject): boolean => {
  const phase = (pod as { status?: { phase?: unknown } }).status?.phase;
  return phase === 'Succeeded' || phase === 'Failed';
};

export function startFillLoop(options: FillLoopOptions): FillLoop {
  const { client, logger } = options;
  const now = options.now ?? (() => new Date());
  const concurrency = Math.max(1, options.concurrency ?? 2);
  const retryMs = options.retryMs ?? 30_000;
  const stats: FillLoop['stats'] = { copies: 0, failures: 0, bytes: 0, statusWrites: 0 };
  const items = new Map<string, FillItem>();
  const queue: string[] = [];
  const running = new Map<string, AbortController>();
  let closed = false;
  let scheduled = false;
  let idleWaiters: Array<() => void> = [];

  const copies = options.metrics?.counter(
    'pullmap_fill_copies_total',
    'Image copies the fill loop finished, by target registry and result (copied, present, partial, failed).',
    ['registry', 'result'],
  );
  const bytes = options.metrics?.counter(
    'pullmap_fill_bytes_total',
    'Blob bytes the fill loop uploaded, by target registry.',
    ['registry'],
  );
  const failures = options.metrics?.counter(
    'pullmap_fill_failures_total',
    'Failed image copies, by target registry and error code.',
    ['registry', 'code'],
  );
  options.metrics
    ?.gauge('pullmap_fill_pending', 'Images waiting for or in a copy.')
    .collect(() => [...items.values()].filter((i) => i.state === 'Pending' || i.state === 'Copying').length);

  // Reads use pullmap's own credentials (and, for an ImageMap, its pods' pull secrets); writes use the
  // map's fill.secret when it names one, else pullmap's own for a ClusterImageMap and none for an
  // ImageMap. One client per distinct set of Secret versions, kept while used.
  const own = options.registry.credentials;
  const clients = new Map<string, { client: RegistryClient; used: number }>();
  const copiers = new Map<string, Copier>();
  // One set of blob slots per target registry, and one push at a time of each object, for every copier
  // whatever credentials it writes with.
  const ledger = new PushLedger();
  const clientFor = (key: string, credentials: CredentialSource | undefined): RegistryClient => {
    const known = clients.get(key);
    if (known) {
      known.used = Date.now();
      return known.client;
    }
    const made = new RegistryClient({ ...options.registry, credentials, userAgent: 'pullmap-fill' });
    clients.set(key, { client: made, used: Date.now() });
    closeUnusedClients();
    return made;
  };
  /** Clients of Secret versions nobody asked for in an hour are closed (pullmap's own are kept). */
  const closeUnusedClients = (): void => {
    for (const [k, c] of clients) {
      if (k === 'src:' || k === 'dst:' || Date.now() - c.used <= 60 * 60_000) continue;
      clients.delete(k);
      for (const ck of copiers.keys()) if (ck.includes(k)) copiers.delete(ck);
      void c.client.close();
    }
  };

  const pods = new ListWatch({
    client,
    path: '/api/v1/pods',
    logger: logger.with({ watch: 'fill-pods' }),
    ...(options.watch ? { timing: options.watch } : {}),
    onChange: () => schedule(),
  });

  /** Reconciles on the next turn of the event loop; many changes at once make one reconcile. */
  function schedule(): void {
    if (scheduled || closed) return;
    scheduled = true;
    setImmediate(() => {
      scheduled = false;
      if (closed) return;
      try {
        reconcile();
        pump();
      } catch (err) {
        logger.warn('fill reconcile failed', { error: err instanceof Error ? err.message : String(err) });
      }
      checkIdle();
    });
  }

  function itemFor(plan: FillPlan, podNamespace: string): FillItem | undefined {
    const sourceName = formatReference(plan.source);
    const targetName = formatReference(plan.target);
    const key = `${sourceName} ${targetName}`;
    let item = items.get(key);
    const map: MapTarget = {
      kind: plan.rule.map.kind,
      namespace: plan.rule.map.namespace,
      name: plan.rule.map.name,
    };
    if (item === undefined) {
      if (items.size >= MAX_ITEMS) evictOne();
      if (items.size >= MAX_ITEMS) return undefined;
      const secretName = plan.fill?.secret;
      item = {
        key,
        source: plan.source,
        target: plan.target,
        sourceName,
        targetName,
        platforms: (plan.fill?.platforms ?? []).flatMap((p) => parsePlatform(p) ?? []),
        // No confused deputy: a ClusterImageMap's Secret only from pullmap's namespace, an ImageMap's only
        // from its own.
        secret:
          secretName === undefined
            ? undefined
            : { namespace: plan.rule.map.namespace ?? options.namespace, name: secretName },
        // Nor may a tenant's map push with pullmap's own credentials to a target the tenant chose.
        ownPush: plan.rule.map.kind === 'ClusterImageMap',
        sourceSecrets: new Set(),
        sourceNamespace: plan.rule.map.namespace ?? podNamespace,
        maps: new Map(),
        state: 'Pending',
        digest: undefined,
        lastError: undefined,
        time: timestamp(now()),
        failures: 0,
        retryAt: 0,
      };
      items.set(key, item);
    }
    item.maps.set(`${map.kind}/${map.namespace ?? ''}/${map.name}`, map);
    return item;
  }

  /** Drops the oldest finished image (Filled first) to keep the bookkeeping bounded. */
  function evictOne(): void {
    for (const wanted of ['Filled', 'Partial', 'Failed'] as const)
      for (const [key, item] of items)
        if (item.state === wanted) {
          items.delete(key);
          return;
        }
  }

  function reconcile(): void {
    const state = options.source.current();
    if (!state || !options.source.mayWrite() || !pods.hasSynced()) {
      if (!options.source.mayWrite()) stopAll();
      return;
    }
    const clock = now().getTime();
    for (const pod of pods.store.values()) reconcilePod(pod, state.snapshot, clock);
    if (queue.length > 0) logger.debug('fill reconcile', { pods: pods.store.size, queued: queue.length });
    flushStatusSoon();
  }

  /** Queues the copies one pod's images need, unless pullmap leaves the pod alone. */
  function reconcilePod(pod: KubeObject, snapshot: MapSnapshot, clock: number): void {
    const context = fillContext(pod, options.settings, options.namespaceLabels);
    if (context === undefined) return;
    for (const { image, pullPolicy } of podImages(pod)) {
      const decision = fillTarget(snapshot, options.settings, image, { ...context, pullPolicy });
      if (!decision.ok || decision.plan.fill?.enabled !== true) continue;
      const item = itemFor(decision.plan, context.namespace);
      if (item !== undefined) enqueue(item, decision.plan.rule.map.kind, pod, clock);
    }
  }

  /** Queues `item` when its copy is due, and notes the tenant's pull secrets it may read with. */
  function enqueue(item: FillItem, kind: MapKind, pod: KubeObject, clock: number): void {
    // A tenant's pull secrets read its images only for its own ImageMap's target: a ClusterImageMap's
    // mirror is shared, and must not receive what only that tenant may pull.
    if (kind === 'ImageMap' && item.sourceSecrets.size < MAX_SOURCE_SECRETS)
      for (const name of pullSecretNames(pod)) item.sourceSecrets.add(name);
    // Failures are retried when due; filled images are checked again now and then (someone may
    // have deleted them from the target), which costs a manifest GET and HEAD when they are there.
    const due = item.state === 'Pending' || (item.state !== 'Copying' && item.retryAt <= clock);
    if (due && !running.has(item.key) && !queue.includes(item.key)) queue.push(item.key);
  }

  function pump(): void {
    while (!closed && running.size < concurrency && queue.length > 0) {
      const key = queue.shift()!;
      const item = items.get(key);
      if (item === undefined || running.has(key)) continue;
      const abort = new AbortController();
      running.set(key, abort);
      item.state = 'Copying';
      void copyItem(item, abort.signal).finally(() => {
        running.delete(key);
        pump();
        checkIdle();
      });
    }
  }

  /** Credentials of dockerconfigjson Secrets of one namespace, and a key naming their versions. */
  async function secretsKeyring(
    namespace: string,
    names: readonly string[],
    field: string,
  ): Promise<{ key: string; keyring: CredentialKeyring }> {
    const keyring = new CredentialKeyring();
    const versions: string[] = [];
    for (const name of names) {
      const secret = (await client
        .request(
          'GET',
          `/api/v1/namespaces/${encodeURIComponent(namespace)}/secrets/${encodeURIComponent(name)}`,
        )
        .catch((err: unknown) => {
          throw new CopyFailure({
            code: 'CREDENTIALS_UNREADABLE',
            message: `${field} ${namespace}/${name}: cannot read it: ${err instanceof Error ? err.message : String(err)}`,
          });
        })) as KubeObject & { type?: string; data?: Record<string, string> };
      const parsed = parsePullSecret(secret);
      if (!parsed.ok)
        throw new CopyFailure({
          code: 'CREDENTIALS_UNREADABLE',
          message: `${field} ${namespace}/${name}: ${parsed.error.field}: ${parsed.error.message}`,
        });
      keyring.add(parsed.value);
      versions.push(`${namespace}/${name}@${secret.metadata.resourceVersion ?? ''}`);
    }
    return { key: versions.join(','), keyring };
  }

  async function copierFor(item: FillItem): Promise<Copier> {
    let sourceKey = 'src:';
    let sourceCredentials = own;
    if (item.sourceSecrets.size > 0) {
      const found = await secretsKeyring(item.sourceNamespace, [...item.sourceSecrets], 'imagePullSecrets');
      sourceKey = `src:${found.key}`;
      // The pod's secrets first, then pullmap's own, as the kubelet would try them.
      sourceCredentials = {
        lookup: (registry, repository) => [
          ...found.keyring.lookup(registry, repository),
          ...(own?.lookup(registry, repository) ?? []),
        ],
      };
    }
    let targetKey = 'dst:';
    let targetCredentials = own;
    if (item.secret !== undefined) {
      const found = await secretsKeyring(item.secret.namespace, [item.secret.name], 'fill.secret');
      targetKey = `dst:${found.key}`;
      targetCredentials = found.keyring;
    } else if (!item.ownPush) {
      targetKey = 'dst:none';
      targetCredentials = undefined;
    }
    const key = `${sourceKey}|${targetKey}`;
    let copier = copiers.get(key);
    if (copier === undefined) {
      copier = new Copier({
        source: clientFor(sourceKey, sourceCredentials),
        target: clientFor(targetKey, targetCredentials),
        ledger,
      });
      copiers.set(key, copier);
    }
    return copier;
  }

  async function copyItem(item: FillItem, signal: AbortSignal): Promise<void> {
    let result: CopyResult;
    try {
      const copier = await copierFor(item);
      result = await copier.copy({
        source: item.source,
        target: item.target,
        platforms: item.platforms,
        signal,
        onEvent: (e) => {
          if (e.kind === 'retry')
            logger.info('fill copy retrying', {
              source: item.sourceName,
              target: item.targetName,
              side: e.side,
              code: e.code,
              error: e.message,
              attempt: e.attempt,
              attempts: e.attempts,
              waitMs: e.waitMs,
            });
        },
      });
    } catch (err) {
      result = thrownCopy(err);
    }
    if (closed) return;
    if (result.ok) copied(item, result.value);
    else if (result.error.code === 'CANCELLED')
      // Leadership lost or shutting down: the next leader derives the same work from the pods.
      item.state = 'Pending';
    else failed(item, result.error);
  }

  function failed(item: FillItem, error: { code: string; message: string }): void {
    const registry = item.target.registry;
    stats.failures++;
    item.failures++;
    item.retryAt = now().getTime() + Math.min(MAX_RETRY_MS, retryMs * 2 ** (item.failures - 1));
    copies?.inc({ registry, result: 'failed' });
    failures?.inc({ registry, code: error.code });
    logger.warn('fill copy failed', {
      source: item.sourceName,
      target: item.targetName,
      code: error.code,
      error: error.message,
    });
    const firstFailure = item.state !== 'Failed';
    finish(item, 'Failed', undefined, `${error.code}: ${error.message}`);
    if (firstFailure) void failureEvents(item);
  }

  function copied(item: FillItem, v: CopyOutcome): void {
    const registry = item.target.registry;
    stats.copies++;
    stats.bytes += v.bytesUploaded;
    copies?.inc({ registry, result: v.state });
    bytes?.inc({ registry }, v.bytesUploaded);
    item.failures = 0;
    item.retryAt = now().getTime() + RECHECK_MS;
    logger.info('fill copy finished', {
      source: item.sourceName,
      target: item.targetName,
      state: v.state,
      digest: v.digest,
      bytesUploaded: v.bytesUploaded,
      blobsUploaded: v.blobsUploaded,
      blobsPresent: v.blobsPresent + v.blobsMounted,
    });
    finish(item, v.state === 'partial' ? 'Partial' : 'Filled', v.digest, undefined);
    // The next admission asks the registry again instead of trusting a cached "missing".
    options.onFilled?.(item.targetName);
  }

  function finish(
    item: FillItem,
    state: FillState,
    digest: string | undefined,
    error: string | undefined,
  ): void {
    item.state = state;
    if (digest !== undefined) item.digest = digest;
    item.lastError = error;
    item.time = timestamp(now());
    flushStatusSoon();
  }

  // ---- status on the maps: a merge patch of status.fill, coalesced and written only when it changes.
  let statusTimer: NodeJS.Timeout | undefined;
  let statusRunning: Promise<void> | undefined;
  const written = new Map<string, string>();

  function flushStatusSoon(): void {
    if (statusTimer || closed) return;
    statusTimer = setTimeout(() => {
      statusTimer = undefined;
      statusRunning = (statusRunning ?? Promise.resolve()).then(writeStatus).catch(() => {});
    }, STATUS_DELAY_MS);
  }

  async function writeStatus(): Promise<void> {
    if (!options.source.mayWrite()) return;
    for (const [key, { map, items: list }] of itemsByMap(items.values())) {
      const fill = fillStatus(list);
      const text = JSON.stringify(fill);
      if (written.get(key) === text) continue;
      try {
        await client.request('PATCH', `${resourcePath(map.kind, map.namespace, map.name)}/status`, {
          body: { status: { fill } },
          contentType: 'application/merge-patch+json',
        });
        written.set(key, text);
        stats.statusWrites++;
      } catch (err) {
        logger.warn('fill status not written', {
          map: key,
          error: err instanceof Error ? err.message : String(err),
        });
      }
    }
  }

  async function failureEvents(item: FillItem): Promise<void> {
    for (const map of item.maps.values()) {
      const namespace = map.namespace ?? 'default';
      const time = timestamp(now());
      try {
        await client.request('POST', `/api/v1/namespaces/${encodeURIComponent(namespace)}/events`, {
          body: {
            apiVersion: 'v1',
            kind: 'Event',
            metadata: { generateName: `${map.name}.`, namespace },
            involvedObject: {
              apiVersion: 'pullmap.dev/v1alpha1',
              kind: map.kind,
              name: map.name,
              ...(map.namespace ? { namespace: map.namespace } : {}),
            },
            reason: 'FillFailed',
            type: 'Warning',
            message: `${item.sourceName} -> ${item.targetName}: ${item.lastError ?? ''}`.slice(0, 1024),
            source: { component: 'pullmap-controller' },
            firstTimestamp: time,
            lastTimestamp: time,
            count: 1,
          },
        });
      } catch (err) {
        logger.warn('event not recorded', { error: err instanceof Error ? err.message : String(err) });
      }
    }
  }

  function stopAll(): void {
    for (const abort of running.values()) abort.abort();
    queue.length = 0;
  }

  function checkIdle(): void {
    if (scheduled || running.size > 0 || queue.length > 0) return;
    const done = idleWaiters;
    idleWaiters = [];
    for (const w of done) w();
  }

  const unsubscribe = options.source.subscribe(() => schedule());
  pods.start();
  const resync = setInterval(() => schedule(), options.resyncIntervalMs ?? 60_000);
  // A new leader starts (a lost one stops) without waiting for the resync.
  let leading = options.source.mayWrite();
  const leadership = setInterval(() => {
    if (options.source.mayWrite() === leading) return;
    leading = !leading;
    schedule();
  }, 2000);

  return {
    stats,
    item: (source) => [...items.values()].find((i) => i.sourceName === source),
    idle: () =>
      new Promise<void>((resolve) => {
        idleWaiters.push(resolve);
        schedule();
      }),
    async close() {
      closed = true;
      clearInterval(resync);
      clearInterval(leadership);
      if (statusTimer) clearTimeout(statusTimer);
      unsubscribe();
      stopAll();
      await pods.stop();
      await statusRunning;
      await Promise.all([...clients.values()].map((c) => c.client.close()));
      await client.close();
    },
  };
}

/** status.fill of one map: counts and the most recent images, failures first. */
export function fillStatus(list: readonly FillItem[]): {
  filled: number;
  pending: number;
  failed: number;
  images: Record<string, string>[];
} {
  const rank = (s: FillState): number => (s === 'Failed' ? 0 : s === 'Copying' || s === 'Pending' ? 1 : 2);
  const sorted = [...list].sort((a, b) => rank(a.state) - rank(b.state) || (a.time < b.time ? 1 : -1));
  return {
    filled: list.filter((i) => i.state === 'Filled' || i.state === 'Partial').length,
    pending: list.filter((i) => i.state === 'Pending' || i.state === 'Copying').length,
    failed: list.filter((i) => i.state === 'Failed').length,
    images: sorted.slice(0, MAX_STATUS_IMAGES).map((i) => ({
      image: i.sourceName,
      target: i.targetName,
      state: i.state === 'Copying' ? 'Pending' : i.state,
      ...(i.digest ? { digest: i.digest } : {}),
      ...(i.lastError ? { lastError: i.lastError.slice(0, 1024) } : {}),
      time: i.time,
    })),
  };
}
