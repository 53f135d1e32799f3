// List-watch of one resource into an in-memory store, resilient the way client-go's reflector is: resume
// the watch from the last resourceVersion, relist on 410 Gone, retry with capped exponential backoff after
// any error, and a watchdog that restarts a watch which went quiet (a half-open connection after an API
// server restart or a network partition ends no stream by itself). Bookmarks keep healthy watches busy.

import { hasCode, messageOf } from '../core/errors.ts';
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

type StoreChange =
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

/** Where the loop resumes from, and how it has fared since the last progress. */
interface Cursor {
  resourceVersion: string | undefined;
  failures: number;
  /** The watch runs from a list's resourceVersion and has not delivered anything yet. */
  fresh: boolean;
}

/** What one watch line did: applied to the store (a bookmark changes nothing), ignored, or a failure. */
type WatchStep =
  | { readonly kind: 'applied'; readonly resourceVersion: string | undefined; readonly change?: StoreChange }
  | { readonly kind: 'ignored' }
  | { readonly kind: 'failure'; readonly error: KubeApiError };

/** Applies one watch event to `store`. An ERROR event is a failure; 410 Gone means list again. */
export function applyWatchEvent(store: Map<string, KubeObject>, line: unknown, path: string): WatchStep {
  const event = line as { type?: string; object?: KubeObject } | null;
  const object = event?.object;
  if (event?.type === 'ERROR') {
    const status = (object ?? {}) as unknown as { code?: number; reason?: string; message?: string };
    return {
      kind: 'failure',
      error: new KubeApiError('KUBE_HTTP', `watch ${path}: ${status.message ?? 'error event'}`, {
        status: status.code,
        reason: status.reason,
      }),
    };
  }
  if (!object?.metadata) return { kind: 'ignored' };
  const resourceVersion = object.metadata.resourceVersion;
  if (event?.type === 'BOOKMARK') return { kind: 'applied', resourceVersion };
  const key = objectKey(object);
  const previous = store.get(key);
  if (event?.type === 'DELETED') {
    store.delete(key);
    return { kind: 'applied', resourceVersion, change: { type: 'deleted', key, previous } };
  }
  if (event?.type !== 'ADDED' && event?.type !== 'MODIFIED') return { kind: 'ignored' };
  store.set(key, object);
  return { kind: 'applied', resourceVersion, change: { type: 'upsert', key, previous } };
}

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
    const cursor: Cursor = { resourceVersion: undefined, failures: 0, fresh: false };
    while (!stop.aborted) {
      try {
        await this.listAndWatch(cursor);
      } catch (err) {
        if (stop.aborted) break;
        await this.recover(err, cursor);
      }
    }
  }

  /** Lists when there is no resourceVersion to resume from, then watches once. */
  private async listAndWatch(cursor: Cursor): Promise<void> {
    if (cursor.resourceVersion === undefined) {
      cursor.resourceVersion = await this.list();
      cursor.failures = 0;
      cursor.fresh = true;
    }
    const began = performance.now();
    const progressed = await this.watch(cursor.resourceVersion, (rv) => {
      cursor.resourceVersion = rv;
    });
    if (progressed) {
      cursor.failures = 0;
      cursor.fresh = false;
    }
    // A server that ends every watch at once must not turn this loop into a busy one.
    else if (performance.now() - began < 1000)
      throw new KubeApiError('KUBE_BAD_RESPONSE', `watch ${this.options.path}: ended at once`);
  }

  private async recover(err: unknown, cursor: Cursor): Promise<void> {
    // 410 Gone comes as an ERROR event in the stream, or as the status of the watch request itself.
    if (isStatus(err, 410)) {
      this.stats.gone++;
      this.options.logger.info('watch expired; listing again', { path: this.options.path });
      cursor.resourceVersion = undefined;
      // Expired again straight after a list: back off rather than list in a tight loop.
      if (cursor.fresh) await this.backoff(err, cursor);
      return;
    }
    this.stats.errors++;
    await this.backoff(err, cursor);
  }

  private async backoff(err: unknown, cursor: Cursor): Promise<void> {
    const delay = Math.min(
      this.timing.backoffMaxMs,
      this.timing.backoffInitialMs * 2 ** Math.min(cursor.failures, 16),
    );
    cursor.failures++;
    this.options.logger.warn('list-watch failed; retrying', {
      path: this.options.path,
      error: messageOf(err),
      code: hasCode(err) ? err.code : undefined,
      retryInMs: Math.round(delay),
    });
    await sleep(delay * (0.8 + 0.4 * Math.random()), this.stopController.signal);
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
          const step = applyWatchEvent(this.store, line, this.options.path);
          if (step.kind === 'failure') {
            failure = step.error;
            abort.abort();
          } else if (step.kind === 'applied') {
            events++;
            if (step.resourceVersion) advance(step.resourceVersion);
            if (step.change) this.options.onChange(step.change);
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
