// List-watch of one resource into an in-memory store, resilient the way client-go's reflector is: resume
// the watch from the last resourceVersion, relist on 410 Gone, retry with capped exponential backoff after
// any error, and a watchdog that restarts a watch which went quiet (a half-open connection after an API
// server restart or a network partition ends no stream by itself). Bookmarks keep healthy watches busy.

import type { Logger } from '../observe/log.ts';
import { isStatus, KubeApiError, type KubeClient } from './client.ts';

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name: string;
    namespace?: string;
    uid?: string;
    resourceVersion?: string;
    generation?: number;
    creationTimestamp?: string;
    [key: string]: unknown;
  };
  [key: string]: unknown;
}

export interface ListWatchTiming {
  /** Restart a watch that delivered nothing (not even a bookmark) for this long. */
  readonly stallTimeoutMs: number;
  /** Asks the server to end each watch after about this long (jittered), as client-go does. */
  readonly watchTimeoutSeconds: number;
  readonly backoffInitialMs: number;
  readonly backoffMaxMs: number;
  /** Objects per list page. */
  readonly pageSize: number;
}

const DEFAULT_LIST_WATCH_TIMING: ListWatchTiming = {
  stallTimeoutMs: 150_000,
  watchTimeoutSeconds: 300,
  backoffInitialMs: 250,
  backoffMaxMs: 30_000,
  pageSize: 500,
};

export type StoreChange =
  | { readonly type: 'replaced' }
  | { readonly type: 'upsert'; readonly key: string; readonly previous: KubeObject | undefined }
  | { readonly type: 'deleted'; readonly key: string; readonly previous: KubeObject | undefined };

export interface ListWatchOptions {
  readonly client: KubeClient;
  /** Collection path, like /apis/pullmap.dev/v1alpha1/imagemaps (all namespaces). */
  readonly path: string;
  readonly timing?: Partial<ListWatchTiming>;
  readonly logger: Logger;
  /** Called after every store change; the first `replaced` marks the first complete list. */
  readonly onChange: (change: StoreChange) => void;
}

export const objectKey = (o: KubeObject): string =>
  o.metadata.namespace ? `${o.metadata.namespace}/${o.metadata.name}` : o.metadata.name;

export class ListWatch {
  readonly store = new Map<string, KubeObject>();
  private readonly options: ListWatchOptions;
  private readonly timing: ListWatchTiming;
  private readonly stopController = new AbortController();
  private running: Promise<void> | undefined;
  private synced = false;
  /** Counters for tests, metrics and the benchmark. */
  readonly stats = { lists: 0, watches: 0, errors: 0, stalls: 0, gone: 0 };

  constructor(options: ListWatchOptions) {
    this.options = options;
    this.timing = { ...DEFAULT_LIST_WATCH_TIMING, ...options.timing };
  }

  hasSynced(): boolean {
    return this.synced;
  }

  start(): void {
    this.running ??= this.run();
  }

  async stop(): Promise<void> {
    this.stopController.abort();
    await this.running;
  }

  private async run(): Promise<void> {
    const stop = this.stopController.signal;
    let resourceVersion: string | undefined;
    let failures = 0;
    /** The watch runs from a list's resourceVersion and has not delivered anything yet. */
    let fresh = false;
    const backoff = async (err: unknown): Promise<void> => {
      const delay = Math.min(
        this.timing.backoffMaxMs,
        this.timing.backoffInitialMs * 2 ** Math.min(failures, 16),
      );
      failures++;
      this.options.logger.warn('list-watch failed; retrying', {
        path: this.options.path,
        error: err instanceof Error ? err.message : String(err),
        code: err instanceof KubeApiError ? err.code : undefined,
        retryInMs: Math.round(delay),
      });
      await sleep(delay * (0.8 + 0.4 * Math.random()), stop);
    };
    while (!stop.aborted) {
      try {
        if (resourceVersion === undefined) {
          resourceVersion = await this.list();
          failures = 0;
          fresh = true;
        }
        const began = performance.now();
        const progressed = await this.watch(resourceVersion, (rv) => {
          resourceVersion = rv;
        });
        if (progressed) {
          failures = 0;
          fresh = false;
        }
        // A server that ends every watch at once must not turn this loop into a busy one.
        else if (performance.now() - began < 1000)
          throw new KubeApiError('KUBE_BAD_RESPONSE', `watch ${this.options.path}: ended at once`);
      } catch (err) {
        if (stop.aborted) break;
        // 410 Gone comes as an ERROR event in the stream, or as the status of the watch request itself.
        if (isStatus(err, 410)) {
          this.stats.gone++;
          this.options.logger.info('watch expired; listing again', { path: this.options.path });
          resourceVersion = undefined;
          // Expired again straight after a list: back off rather than list in a tight loop.
          if (fresh) await backoff(err);
          continue;
        }
        this.stats.errors++;
        await backoff(err);
      }
    }
  }

  /** A complete, paginated list; replaces the store and returns the list's resourceVersion. */
  private async list(): Promise<string> {
    const items: KubeObject[] = [];
    let cont: string | undefined;
    let resourceVersion = '';
    do {
      const page = (await this.options.client.request('GET', this.options.path, {
        query: { limit: this.timing.pageSize, continue: cont },
        signal: this.stopController.signal,
      })) as { items?: KubeObject[]; metadata?: { continue?: string; resourceVersion?: string } };
      items.push(...(page.items ?? []));
      cont = page.metadata?.continue || undefined;
      resourceVersion = page.metadata?.resourceVersion ?? resourceVersion;
    } while (cont !== undefined);
    this.store.clear();
    for (const item of items) this.store.set(objectKey(item), item);
    this.stats.lists++;
    this.synced = true;
    this.options.onChange({ type: 'replaced' });
    return resourceVersion;
  }

  /** One watch until the server ends it; true when it delivered at least one event (bookmarks count). */
  private async watch(resourceVersion: string, advance: (rv: string) => void): Promise<boolean> {
    this.stats.watches++;
    const abort = new AbortController();
    const signal = AbortSignal.any([abort.signal, this.stopController.signal]);
    let stalled = false;
    let timer: NodeJS.Timeout | undefined;
    const arm = (): void => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        stalled = true;
        abort.abort();
      }, this.timing.stallTimeoutMs);
    };
    let events = 0;
    let failure: Error | undefined;
    const jitter = 1 + Math.random();
    arm();
    try {
      await this.options.client.stream(
        this.options.path,
        {
          watch: 1,
          resourceVersion,
          allowWatchBookmarks: true,
          timeoutSeconds: Math.round(this.timing.watchTimeoutSeconds * jitter),
        },
        signal,
        (line) => {
          arm();
          if (failure) return;
          const event = line as { type?: string; object?: KubeObject };
          const object = event.object;
          if (event.type === 'ERROR') {
            const status = object as unknown as { code?: number; reason?: string; message?: string };
            // 410 Gone: the watch resumed from a resourceVersion the server no longer has (list again).
            failure = new KubeApiError(
              'KUBE_HTTP',
              `watch ${this.options.path}: ${status.message ?? 'error event'}`,
              { status: status.code, reason: status.reason },
            );
            abort.abort();
            return;
          }
          if (!object?.metadata) return;
          const rv = object.metadata.resourceVersion;
          if (event.type === 'BOOKMARK') {
            events++;
            if (rv) advance(rv);
            return;
          }
          const key = objectKey(object);
          const previous = this.store.get(key);
          if (event.type === 'DELETED') {
            this.store.delete(key);
            events++;
            if (rv) advance(rv);
            this.options.onChange({ type: 'deleted', key, previous });
          } else if (event.type === 'ADDED' || event.type === 'MODIFIED') {
            this.store.set(key, object);
            events++;
            if (rv) advance(rv);
            this.options.onChange({ type: 'upsert', key, previous });
          }
        },
      );
    } finally {
      clearTimeout(timer);
    }
    if (failure) throw failure;
    if (stalled && !this.stopController.signal.aborted) {
      this.stats.stalls++;
      throw new KubeApiError(
        'KUBE_TIMEOUT',
        `watch ${this.options.path}: nothing for ${this.timing.stallTimeoutMs} ms`,
      );
    }
    return events > 0;
  }
}

export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
