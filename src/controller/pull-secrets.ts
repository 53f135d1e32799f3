// Copies of ClusterImageMap pull secrets: a ClusterImageMap names a kubernetes.io/dockerconfigjson Secret
// in pullmap's own namespace; the webhook makes pods refer to "pullmap-<name>" in their namespace, and
// this keeps that copy in every namespace the map selects (made as soon as the namespace or the map
// appears, so it is there before the kubelet pulls), in sync with its source, and removed when no map
// in force needs it any more. Only the Lease holder writes; a Secret of that name that pullmap did not
// make is never overwritten.

import type { Labels } from '../core/mapping/index.ts';
import {
  COPY_LABEL,
  DOCKER_CONFIG_JSON,
  desiredCopies,
  type PullSecretCopy,
} from '../core/pod/pull-secrets.ts';
import { isStatus, type KubeClient } from '../kube/client.ts';
import { type KubeObject, ListWatch, type ListWatchTiming } from '../kube/list-watch.ts';
import type { Logger } from '../observe/log.ts';
import type { ClusterMapSource } from './map-source.ts';

export interface PullSecretCopierOptions {
  /** Owned by the copier: closed by close(). */
  readonly client: KubeClient;
  /** pullmap's own namespace: where ClusterImageMaps' Secrets live. */
  readonly namespace: string;
  readonly source: Pick<ClusterMapSource, 'current' | 'subscribe' | 'isLeader'>;
  readonly logger: Logger;
  readonly watch?: Partial<ListWatchTiming>;
  /** Full reconcile this often, which also retries failed writes and picks up new leadership (default 30 s). */
  readonly resyncIntervalMs?: number;
}

export interface PullSecretCopier {
  readonly stats: { reconciles: number; created: number; updated: number; deleted: number; errors: number };
  /** Resolves after the next reconcile that saw every watch synced (tests). */
  settled(): Promise<void>;
  close(): Promise<void>;
}

type SecretObject = KubeObject & { type?: string; data?: Record<string, string> };

const sameData = (a: Record<string, string> | undefined, b: Record<string, string> | undefined): boolean => {
  const ka = Object.keys(a ?? {});
  if (ka.length !== Object.keys(b ?? {}).length) return false;
  return ka.every((k) => a?.[k] === b?.[k]);
};

export function startPullSecretCopier(options: PullSecretCopierOptions): PullSecretCopier {
  const { client, logger, namespace: own } = options;
  const stats: PullSecretCopier['stats'] = { reconciles: 0, created: 0, updated: 0, deleted: 0, errors: 0 };
  let closed = false;
  let running: Promise<void> | undefined;
  let dirty = false;
  let waiters: Array<() => void> = [];
  /** Warnings already logged (missing source, foreign Secret), so a resync does not repeat them. */
  const warned = new Set<string>();
  /** Copies this replica created: a 409 for one of them is its own write not yet seen by the watch. */
  const made = new Set<string>();

  const watch = (path: string, name: string): ListWatch =>
    new ListWatch({
      client,
      path,
      logger: logger.with({ watch: name }),
      ...(options.watch ? { timing: options.watch } : {}),
      onChange: () => schedule(),
    });
  const sources = watch(`/api/v1/namespaces/${encodeURIComponent(own)}/secrets`, 'pull-secret-sources');
  const copies = watch(
    `/api/v1/secrets?labelSelector=${encodeURIComponent(COPY_LABEL)}`,
    'pull-secret-copies',
  );
  const namespaces = watch('/api/v1/namespaces', 'namespaces');
  const watches = [sources, copies, namespaces];

  function schedule(): void {
    dirty = true;
    if (running || closed) return;
    running = (async () => {
      try {
        while (dirty && !closed) {
          dirty = false;
          await reconcile();
        }
      } finally {
        running = undefined;
      }
    })();
  }

  const warnOnce = (key: string, message: string, fields: Record<string, unknown>): void => {
    if (warned.has(key)) return;
    warned.add(key);
    logger.warn(message, fields);
  };

  async function write(copy: PullSecretCopy, source: SecretObject): Promise<void> {
    const key = `${copy.namespace}/${copy.name}`;
    const existing = copies.store.get(key) as SecretObject | undefined;
    const body = {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: {
        name: copy.name,
        namespace: copy.namespace,
        labels: { [COPY_LABEL]: copy.source, 'app.kubernetes.io/managed-by': 'pullmap' },
        annotations: { 'pullmap.dev/source': `${own}/${copy.source}` },
        ...(existing?.metadata.resourceVersion ? { resourceVersion: existing.metadata.resourceVersion } : {}),
      },
      type: DOCKER_CONFIG_JSON,
      data: source.data ?? {},
    };
    const base = `/api/v1/namespaces/${encodeURIComponent(copy.namespace)}/secrets`;
    if (existing === undefined) {
      try {
        await client.request('POST', base, { body });
        stats.created++;
        made.add(key);
      } catch (err) {
        if (!isStatus(err, 409)) throw err;
        if (made.has(key)) return;
        // Not in the labelled watch: someone else's Secret has this name. Never take it over.
        warnOnce(
          `foreign ${key}`,
          'a Secret that pullmap did not make has the name of its copy; left alone',
          {
            namespace: copy.namespace,
            secret: copy.name,
          },
        );
      }
      return;
    }
    if (existing.type === DOCKER_CONFIG_JSON && sameData(existing.data, source.data)) return;
    await client.request('PUT', `${base}/${encodeURIComponent(copy.name)}`, { body });
    stats.updated++;
  }

  async function reconcile(): Promise<void> {
    const state = options.source.current();
    if (!state || !options.source.isLeader() || !watches.every((w) => w.hasSynced())) return;
    stats.reconciles++;
    const labels = new Map<string, Labels>();
    for (const ns of namespaces.store.values()) {
      const l = ns.metadata['labels'];
      labels.set(ns.metadata.name, l && typeof l === 'object' ? (l as Labels) : {});
    }
    const wanted = desiredCopies({
      maps: state.analysis.accepted.map((m) => ({ kind: m.ref.kind, spec: m.spec })),
      namespaces: labels,
      excludedNamespaces: state.snapshot.options.excludedNamespaces,
      ownNamespace: own,
    });
    const keep = new Set<string>();
    for (const copy of wanted) {
      if (closed) return;
      const source = sources.store.get(`${own}/${copy.source}`) as SecretObject | undefined;
      if (source === undefined || source.type !== DOCKER_CONFIG_JSON) {
        warnOnce(
          `source ${copy.source} ${source?.type}`,
          source === undefined
            ? "a ClusterImageMap names a pullSecret that does not exist in pullmap's namespace; no copies made"
            : `a ClusterImageMap's pullSecret is not of type ${DOCKER_CONFIG_JSON}; no copies made`,
          { namespace: own, secret: copy.source },
        );
        continue;
      }
      keep.add(`${copy.namespace}/${copy.name}`);
      try {
        await write(copy, source);
      } catch (err) {
        stats.errors++;
        logger.warn('could not write a pull secret copy; retrying at the next resync', {
          namespace: copy.namespace,
          secret: copy.name,
          error: err instanceof Error ? err.message : String(err),
        });
      }
    }
    for (const [key, copy] of copies.store) {
      if (closed) return;
      if (keep.has(key)) continue;
      const { namespace, name } = copy.metadata;
      try {
        await client.request(
          'DELETE',
          `/api/v1/namespaces/${encodeURIComponent(namespace ?? '')}/secrets/${encodeURIComponent(name)}`,
        );
        stats.deleted++;
      } catch (err) {
        if (isStatus(err, 404)) continue;
        stats.errors++;
        logger.warn('could not delete an unused pull secret copy', {
          namespace,
          secret: name,
          error: err instanceof Error ? err.message : String(err),
        });
      }
    }
    const done = waiters;
    waiters = [];
    for (const w of done) w();
  }

  const unsubscribe = options.source.subscribe(() => schedule());
  for (const w of watches) w.start();
  const resync = setInterval(() => {
    warned.clear();
    schedule();
  }, options.resyncIntervalMs ?? 30_000);

  return {
    stats,
    settled: () =>
      new Promise<void>((resolve) => {
        waiters.push(resolve);
        schedule();
      }),
    async close() {
      closed = true;
      clearInterval(resync);
      unsubscribe();
      await Promise.all(watches.map((w) => w.stop()));
      await running;
      await client.close();
    },
  };
}
