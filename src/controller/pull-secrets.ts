// Copies of ClusterImageMap pull secrets: a ClusterImageMap names a kubernetes.io/dockerconfigjson Secret
// in pullmap's own namespace; the webhook makes pods refer to "pullmap-<name>" in their namespace, and
// this keeps that copy in every namespace the map selects (made as soon as the namespace or the map
// appears, so it is there before the kubelet pulls), in sync with its source, and removed when no map
// in force needs it any more. Only the Lease holder writes; a Secret of that name that pullmap did not
// make is never overwritten.

import type { DecisionSettings, Labels } from '../core/mapping/index.ts';
import {
  COPY_LABEL,
  type CopyPlan,
  type CopyWrite,
  DOCKER_CONFIG_JSON,
  planCopies,
  type SecretState,
} from '../core/pod/pull-secrets.ts';
import { isStatus, type KubeClient } from '../kube/client.ts';
import { type KubeObject, ListWatch, type ListWatchTiming } from '../kube/list-watch.ts';
import type { Logger } from '../observe/log.ts';
import type { ClusterMapSource } from './map-source.ts';

interface PullSecretCopierOptions {
  /** Owned by the copier: closed by close(). */
  readonly client: KubeClient;
  /** pullmap's own namespace: where ClusterImageMaps' Secrets live. */
  readonly namespace: string;
  readonly source: Pick<ClusterMapSource, 'current' | 'subscribe' | 'mayWrite'>;
  /** The webhook's settings: no copy goes to a namespace whose pods it leaves alone. */
  readonly settings: Pick<DecisionSettings, 'excludedNamespaces'>;
  readonly logger: Logger;
  readonly watch?: Partial<ListWatchTiming>;
  /** Full reconcile this often, which also retries failed writes and picks up new leadership (default 30 s). */
  readonly resyncIntervalMs?: number;
}

interface PullSecretCopier {
  readonly stats: { reconciles: number; created: number; updated: number; deleted: number; errors: number };
  /** Resolves after the next reconcile that saw every watch synced (tests). */
  settled(): Promise<void>;
  close(): Promise<void>;
}

export function startPullSecretCopier(options: PullSecretCopierOptions): PullSecretCopier {
  const { client, logger, namespace: own } = options;
  const writer = new CopyWriter(client, logger, own);
  let closed = false;
  let running: Promise<void> | undefined;
  let dirty = false;
  const waiters: Array<() => void> = [];

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

  /** Runs reconciles one at a time until nothing changed during the last one. */
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

  async function reconcile(): Promise<void> {
    const state = options.source.current();
    if (!state || !options.source.mayWrite() || !watches.every((w) => w.hasSynced())) return;
    writer.stats.reconciles++;
    const plan = planCopies({
      maps: state.analysis.accepted.map((m) => ({ kind: m.ref.kind, spec: m.spec })),
      namespaces: namespaceLabels(namespaces.store.values()),
      excludedNamespaces: options.settings.excludedNamespaces,
      ownNamespace: own,
      // The stores hold Secrets as the API serves them; SecretState reads only their type and data.
      sources: (name) => sources.store.get(`${own}/${name}`) as SecretState | undefined,
      copies: copies.store as ReadonlyMap<string, SecretState>,
    });
    if (await writer.apply(plan, () => closed)) for (const w of waiters.splice(0)) w();
  }

  const unsubscribe = options.source.subscribe(() => schedule());
  for (const w of watches) w.start();
  const resync = setInterval(() => {
    writer.warned.clear();
    schedule();
  }, options.resyncIntervalMs ?? 30_000);

  return {
    stats: writer.stats,
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

/** Carries out a copy plan against the API server, counting and logging each outcome. */
class CopyWriter {
  readonly stats: PullSecretCopier['stats'] = {
    reconciles: 0,
    created: 0,
    updated: 0,
    deleted: 0,
    errors: 0,
  };
  /** Warnings already logged (missing source, foreign Secret), so a resync does not repeat them. */
  readonly warned = new Set<string>();
  /** Copies this replica created: a 409 for one of them is its own write not yet seen by the watch. */
  private readonly made = new Set<string>();
  private readonly client: KubeClient;
  private readonly logger: Logger;
  private readonly own: string;

  constructor(client: KubeClient, logger: Logger, own: string) {
    this.client = client;
    this.logger = logger;
    this.own = own;
  }

  /** Writes, then deletes; false when `closed` stopped it part way. A failed write waits for the next resync. */
  async apply(plan: CopyPlan, closed: () => boolean): Promise<boolean> {
    for (const unusable of plan.unusable) this.warnUnusable(unusable);
    for (const w of plan.writes) {
      if (closed()) return false;
      await this.write(w);
    }
    for (const { namespace, name } of plan.deletes) {
      if (closed()) return false;
      await this.remove(namespace, name);
    }
    return true;
  }

  private async write(w: CopyWrite): Promise<void> {
    try {
      await this.put(w);
    } catch (err) {
      this.stats.errors++;
      this.logger.warn('could not write a pull secret copy; retrying at the next resync', {
        namespace: w.copy.namespace,
        secret: w.copy.name,
        error: text(err),
      });
    }
  }

  /** Creates or updates one copy; a 409 on create is its own unseen write or someone else's Secret. */
  private async put({ op, copy, body }: CopyWrite): Promise<void> {
    const key = `${copy.namespace}/${copy.name}`;
    const base = `/api/v1/namespaces/${encodeURIComponent(copy.namespace)}/secrets`;
    if (op === 'update') {
      await this.client.request('PUT', `${base}/${encodeURIComponent(copy.name)}`, { body });
      this.stats.updated++;
      return;
    }
    try {
      await this.client.request('POST', base, { body });
      this.stats.created++;
      this.made.add(key);
    } catch (err) {
      if (!isStatus(err, 409)) throw err;
      if (this.made.has(key)) return;
      // Not in the labelled watch: someone else's Secret has this name. Never take it over.
      this.warnOnce(
        `foreign ${key}`,
        'a Secret that pullmap did not make has the name of its copy; left alone',
        {
          namespace: copy.namespace,
          secret: copy.name,
        },
      );
    }
  }

  private async remove(namespace: string, name: string): Promise<void> {
    try {
      await this.client.request(
        'DELETE',
        `/api/v1/namespaces/${encodeURIComponent(namespace)}/secrets/${encodeURIComponent(name)}`,
      );
      this.stats.deleted++;
    } catch (err) {
      if (isStatus(err, 404)) return;
      this.stats.errors++;
      this.logger.warn('could not delete an unused pull secret copy', {
        namespace,
        secret: name,
        error: text(err),
      });
    }
  }

  private warnUnusable({ source, type, missing }: CopyPlan['unusable'][number]): void {
    this.warnOnce(
      `source ${source} ${type}`,
      missing
        ? "a ClusterImageMap names a pullSecret that does not exist in pullmap's namespace; no copies made"
        : `a ClusterImageMap's pullSecret is not of type ${DOCKER_CONFIG_JSON}; no copies made`,
      { namespace: this.own, secret: source },
    );
  }

  private warnOnce(key: string, message: string, fields: Record<string, unknown>): void {
    if (this.warned.has(key)) return;
    this.warned.add(key);
    this.logger.warn(message, fields);
  }
}

const text = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/** Every namespace's labels, from the namespaces watch. */
function namespaceLabels(objects: Iterable<KubeObject>): Map<string, Labels> {
  const labels = new Map<string, Labels>();
  for (const ns of objects) {
    const l = ns.metadata['labels'];
    labels.set(ns.metadata.name, l && typeof l === 'object' ? (l as Labels) : {});
  }
  return labels;
}
