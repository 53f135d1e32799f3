// The cache's HTTP server: the read-only half of the OCI distribution API, plus /metrics and health.
// Every answer that is not content is the distribution error JSON; pushes are UNSUPPORTED.
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { hasCode } from '../core/errors.ts';
import { DEFAULT_TAG, embedRegistry } from '../core/reference/index.ts';
import { http } from '../net/node-http.ts';
import type { Logger } from '../observe/log.ts';
import { LATENCY_BUCKETS, METRICS_CONTENT_TYPE, type MetricsRegistry } from '../observe/metrics.ts';
import type { RegistryClient } from '../registry/client.ts';
import { type RegistryError, RegistryFailure, type RegistryResult } from '../registry/errors.ts';
import { BlobFetcher } from './blob-fetch.ts';
import type { ClientAuth } from './client-auth.ts';
import type { CacheConfig } from './config.ts';
import { type ByteSource, copyRange } from './copy.ts';
import { CACHE_ERRORS, type CacheErrorCode, StoreUnavailableError, StoreWriteError } from './errors.ts';
import { type ManifestAnswer, ManifestResolver, staleKindOf } from './manifests.ts';
import { type ObjectRoute, type Page, paginate, routeOf, type TagsRoute } from './route.ts';
import { ROOM_MARGIN } from './store/spool.ts';
import type { CacheStore, StoredBlob } from './store/types.ts';
import { StreamThrough } from './through.ts';
import { BlobClient, type BlobStream } from './transport/blobs.ts';
import { listTags } from './transport/tags.ts';

export const STALE_HEADER = 'x-pullmap-stale';
const API_VERSION = { 'docker-distribution-api-version': 'registry/2.0' };
const CACHE_CODES = Object.keys(CACHE_ERRORS) as CacheErrorCode[];

export interface CacheServerOptions {
  readonly config: CacheConfig;
  readonly store: CacheStore;
  readonly client: RegistryClient;
  readonly metrics: MetricsRegistry;
  readonly log: Logger;
  readonly clientAuth?: ClientAuth | undefined;
  readonly now?: (() => number) | undefined;
}

export interface RunningCache {
  readonly server: Server;
  /** "127.0.0.1:PORT" as clients address it. */
  readonly address: string;
  readonly port: number;
  close(): Promise<void>;
}

type Source = 'cache' | 'upstream';

function sendError(
  res: ServerResponse,
  status: number,
  code: string,
  message: string,
  extra: Record<string, string> = {},
): void {
  const body = JSON.stringify({ errors: [{ code, message, detail: null }] });
  res.writeHead(status, {
    ...API_VERSION,
    ...extra,
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
  });
  res.end(body);
}

/** An answer in the distribution API's error format. */
interface ErrorAnswer {
  readonly status: number;
  readonly code: string;
  readonly message: string;
}

/**
 * The cache server's one mapping from a failure to its answer: the status and distribution code it
 * stands for. The cache's own failures (its store) are 503s: nothing is wrong
 * upstream and a retry may pass; upstream's say upstream; `unknownCode` is the 404's code (what the
 * request named); anything else is a 500 whose details stay in the log.
 */
export function answerOf(error: RegistryError | Error, unknownCode = 'NAME_UNKNOWN'): ErrorAnswer {
  if (error instanceof RegistryFailure) return answerOf(error.toError(), unknownCode);
  if (hasCode(error, ...CACHE_CODES)) return { status: 503, code: 'UNAVAILABLE', message: error.message };
  if (error instanceof Error)
    return { status: 500, code: 'UNKNOWN', message: 'internal error; see the cache log' };
  const message = `upstream: ${error.message}`;
  if (error.code === 'REG_NOT_FOUND') return { status: 404, code: unknownCode, message };
  if (error.code === 'REG_RATE_LIMITED') return { status: 429, code: 'TOOMANYREQUESTS', message };
  // The cache's own credentials were refused upstream; the client's would not help, so not a 401.
  if (error.outcome === 'Unauthorized') return { status: 403, code: 'DENIED', message };
  if (error.outcome === 'Timeout') return { status: 504, code: 'UNAVAILABLE', message };
  return { status: 502, code: 'UNAVAILABLE', message };
}

/** Answers `error` as answerOf maps it. */
function sendFailure(res: ServerResponse, error: RegistryError | Error, unknownCode?: string): void {
  const f = answerOf(error, unknownCode);
  sendError(res, f.status, f.code, f.message);
}

/** How long one reading of the cached repositories answers /v2/_catalog. */
const CATALOG_MEMO_MS = 10_000;

/** Callers asking for one key while its work runs share that work's answer. */
class SingleFlight<T> {
  readonly #running = new Map<string, Promise<T>>();

  once(key: string, work: () => Promise<T>): Promise<T> {
    let pending = this.#running.get(key);
    if (pending === undefined) {
      pending = work().finally(() => this.#running.delete(key));
      this.#running.set(key, pending);
    }
    return pending;
  }
}

/** The source behind a HEAD answered from upstream: headers only, never read. */
const NO_BYTES: ByteSource = {
  available: () => 0,
  complete: () => true,
  read: () => Promise.reject(new Error('a HEAD answer has no bytes')),
  more: () => Promise.reject(new Error('a HEAD answer has no bytes')),
};

/** One range "bytes=a-b", "bytes=a-" or "bytes=-n" against `size`; null: unsatisfiable; undefined: whole. */
function parseRange(
  header: string | undefined,
  size: number,
): { start: number; end: number } | null | undefined {
  if (header === undefined) return undefined;
  const m = /^bytes=(\d{0,15})-(\d{0,15})$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return undefined;
  if (m[1] === '') {
    const n = Number(m[2]);
    if (n === 0) return null;
    return { start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (start >= size || end < start) return null;
  return { start, end };
}

class CacheService {
  readonly #store: CacheStore;
  readonly #client: BlobClient;
  readonly #registry: RegistryClient;
  readonly #config: CacheConfig;
  /** One upstream tags/list per repository at a time; others wait for its answer. */
  readonly #tagLists = new SingleFlight<RegistryResult<string[]>>();
  readonly #now: () => number;
  #catalogMemo: { readonly at: number; readonly names: Promise<string[]> } | undefined;
  readonly #log: Logger;
  readonly #auth: ClientAuth | undefined;
  readonly #upstreams: ReadonlySet<string>;
  readonly #manifests: ManifestResolver;
  readonly #blobs: BlobFetcher;
  readonly #metrics: MetricsRegistry;
  readonly #m;
  /**
   * Set while the store has no room for the last thing it could not keep: the bytes that needed, and
   * why. Cleared once a blob at least as large is kept, or the free space has room for it.
   */
  #full: { readonly needed: number; readonly reason: string } | undefined;

  constructor(options: CacheServerOptions) {
    const now = options.now ?? Date.now;
    this.#store = options.store;
    this.#client = new BlobClient(options.client);
    this.#registry = options.client;
    this.#config = options.config;
    this.#now = now;
    this.#log = options.log;
    this.#auth = options.clientAuth;
    this.#upstreams = new Set(options.config.upstreams.map((u) => u.host));
    const r = options.metrics;
    this.#metrics = r;
    this.#m = {
      requests: r.counter(
        'pullmap_cache_requests_total',
        'Manifest and blob requests by upstream and result.',
        ['kind', 'upstream', 'result'],
      ),
      // Until the response is complete; an upstream label only from the configured hosts ("other" else).
      latency: r.histogram(
        'pullmap_cache_request_duration_seconds',
        'Time to answer a manifest or blob request, to its last byte.',
        ['kind', 'upstream'],
        [...LATENCY_BUCKETS, 30, 60, 300],
      ),
      bytes: r.counter(
        'pullmap_cache_served_bytes_total',
        'Blob and manifest bytes sent, by where they came from.',
        ['source'],
      ),
      stale: r.counter(
        'pullmap_cache_stale_responses_total',
        'Cached manifests served because upstream could not be asked.',
        ['upstream', 'reason'],
      ),
      refreshes: r.counter(
        'pullmap_cache_refreshes_total',
        'Revalidations of cached tags upstream, by result.',
        ['result'],
      ),
      fetches: r.counter(
        'pullmap_cache_upstream_fetches_total',
        'Manifest and blob downloads started upstream.',
        ['kind'],
      ),
      failedDownloads: r.counter(
        'pullmap_cache_download_failures_total',
        'Blob downloads that failed (nothing was stored).',
      ),
      evictions: r.counter(
        'pullmap_cache_evictions_total',
        'Objects and tag records removed by garbage collection.',
        ['kind'],
      ),
      evictedBytes: r.counter('pullmap_cache_evicted_bytes_total', 'Bytes removed by garbage collection.'),
      notKept: r.counter(
        'pullmap_cache_not_kept_total',
        'Blobs streamed through and manifests served without being stored, because the store was full.',
        ['kind'],
      ),
      diskWait: r.counter(
        'pullmap_cache_download_disk_wait_seconds_total',
        'Time blob downloads held upstream back because every unit of their ring was still being written (or hashed).',
      ),
    };
    r.gauge('pullmap_cache_store_bytes', 'Bytes held in the store.').collect(() => this.#store.usedBytes);
    r.gauge(
      'pullmap_cache_store_full',
      '1 while the store has no room for what it was last asked to keep (blobs stream through, /readyz fails).',
    ).collect(() => (this.#full === undefined ? 0 : 1));
    // With the bytes held, what "store near full" alerts divide by.
    if (this.#store.maxSize !== undefined)
      r.gauge(
        'pullmap_cache_store_max_bytes',
        'storage.maxSize: above it, garbage collection evicts.',
      ).collect(() => this.#store.maxSize ?? Number.NaN);
    r.gauge('pullmap_cache_downloads_in_flight', 'Blob downloads under way.').collect(
      () => this.#blobs.inFlight,
    );
    this.#store.onEvict = (e) => {
      this.#m.evictions.inc({ kind: 'blob' }, e.blobs);
      this.#m.evictions.inc({ kind: 'manifest' }, e.manifests);
      this.#m.evictions.inc({ kind: 'tag' }, e.tags);
      this.#m.evictedBytes.inc(undefined, e.bytes);
      this.#log.info('evicted', { ...e, usedBytes: this.#store.usedBytes });
    };
    this.#manifests = new ManifestResolver(options.store, options.client, options.config, now, {
      refreshed: (result) => this.#m.refreshes.inc({ result }),
      fetched: () => this.#m.fetches.inc({ kind: 'manifest' }),
      notKept: (what, error) => {
        if (error.noSpace) this.#storeFull(0, error);
        if (what === 'manifest') this.#m.notKept.inc({ kind: 'manifest' });
        this.#log.warn(`${what} served without being stored`, { error: error.message });
      },
    });
    this.#blobs = new BlobFetcher(options.store, this.#client, {
      started: () => this.#m.fetches.inc({ kind: 'blob' }),
      noRoom: (digest, size, error) => {
        this.#storeFull(size ?? 0, error);
        this.#m.notKept.inc({ kind: 'blob' });
        this.#log.warn('store full: blob streamed through without being kept', {
          digest,
          size,
          error: error?.message,
        });
      },
      finished: (digest, bytes, error, diskWaitSeconds) => {
        this.#m.diskWait.inc(undefined, diskWaitSeconds);
        if (error instanceof StoreWriteError && error.noSpace) this.#storeFull(bytes, error);
        // A blob as large as the one that did not fit was kept: there is room again.
        else if (!error && this.#full !== undefined && bytes >= this.#full.needed) this.#full = undefined;
        if (!error) return;
        this.#m.failedDownloads.inc();
        this.#log.warn('blob download failed; nothing stored', { digest, bytes, error });
      },
    });
  }

  #storeFull(needed: number, error: StoreWriteError | undefined): void {
    const reason = error?.message ?? `no room for a blob of ${needed} bytes`;
    this.#full = { needed, reason };
  }

  /** Why the store is full, or undefined; looks again at the free space (it may have been freed). */
  async #fullReason(): Promise<string | undefined> {
    const full = this.#full;
    if (full === undefined) return undefined;
    const free = await this.#store.spool.freeBytes().catch(() => 0);
    if (free >= full.needed + ROOM_MARGIN) {
      this.#full = undefined;
      return undefined;
    }
    return `store full (${free} bytes free on ${this.#store.spool.dir}): ${full.reason}; blobs stream through without being kept`;
  }

  handle(req: IncomingMessage, res: ServerResponse): void {
    const started = performance.now();
    res.once('close', () => this.#timed(req.url ?? '/', started));
    this.#handle(req, res).catch((err: unknown) => {
      if (err instanceof StoreUnavailableError)
        this.#log.warn('store unavailable', { url: req.url, error: err.message });
      else this.#log.error('request failed', { url: req.url, error: err });
      if (!res.headersSent) sendFailure(res, err instanceof Error ? err : new Error(String(err)));
      else res.destroy();
    });
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const target = req.url ?? '/';
    if (target === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      return;
    }
    if (target === '/readyz') {
      // Not ready while the store is full: pulls still work (streamed through), but nothing is cached.
      const full = await this.#fullReason();
      res.writeHead(full ? 503 : 200, { 'content-type': 'text/plain' }).end(`${full ?? 'ok'}\n`);
      return;
    }
    if (target === '/metrics') {
      res.writeHead(200, { 'content-type': METRICS_CONTENT_TYPE }).end(this.#metrics.render());
      return;
    }
    const store = target === '/store' || target.startsWith('/store?');
    if (!target.startsWith('/v2') && !store) {
      sendError(res, 404, 'NOT_FOUND', 'not a distribution API path; the API is under /v2/');
      return;
    }
    if (this.#auth) {
      const denied = this.#auth.check(req.headers.authorization);
      if (denied) {
        sendError(res, 401, 'UNAUTHORIZED', denied, { 'www-authenticate': this.#auth.challenge });
        return;
      }
    }
    if (store) return this.#listing(req, res);
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      sendError(
        res,
        405,
        'UNSUPPORTED',
        `${req.method} is not supported: this cache is read-only (pull only)`,
      );
      return;
    }
    const route = routeOf(target, this.#upstreams);
    switch (route.kind) {
      case 'base': {
        res.writeHead(200, { ...API_VERSION, 'content-type': 'application/json', 'content-length': 2 });
        res.end(req.method === 'HEAD' ? undefined : '{}');
        return;
      }
      case 'error':
        sendError(res, route.status, route.code, route.message);
        return;
      case 'manifest':
        return this.#manifest(req, res, route);
      case 'blob':
        return this.#blob(req, res, route);
      case 'tags':
        return this.#tags(req, res, route);
      case 'catalog':
        return this.#catalog(req, res, route);
    }
  }

  /** A list answer as the distribution API writes it, with a Link to the next page when there is one. */
  #sendList(
    req: IncomingMessage,
    res: ServerResponse,
    body: Record<string, unknown>,
    next: string | undefined,
    extra: Record<string, string> = {},
  ): void {
    const text = JSON.stringify(body);
    const headers: Record<string, string | number> = {
      ...API_VERSION,
      ...extra,
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(text),
    };
    if (next !== undefined) headers['link'] = `<${next}>; rel="next"`;
    res.writeHead(200, headers);
    res.end(req.method === 'HEAD' ? undefined : text);
  }

  /**
   * The repository's tags from upstream; when upstream cannot answer and the staleIfError switch for
   * that failure is on, the tags the cache holds records of, marked stale like a manifest.
   */
  async #tags(req: IncomingMessage, res: ServerResponse, route: TagsRoute): Promise<void> {
    const name = `${route.registry}/${route.repository}`;
    const upstream = await this.#tagLists.once(name, () =>
      listTags(this.#registry, route.registry, route.repository),
    );
    let tags: string[];
    const extra: Record<string, string> = {};
    if (upstream.ok) {
      tags = upstream.value;
      this.#m.requests.inc({ kind: 'tags', upstream: route.registry, result: 'miss' });
    } else {
      const kind = staleKindOf(upstream.error.code);
      const held =
        kind !== undefined && this.#config.staleIfError[kind]
          ? (await this.#store.allTags()).filter((t) => t.name === name).map((t) => t.tag)
          : [];
      if (held.length === 0 || kind === undefined) {
        this.#m.requests.inc({ kind: 'tags', upstream: route.registry, result: 'error' });
        sendFailure(res, upstream.error, 'NAME_UNKNOWN');
        return;
      }
      tags = held;
      this.#m.requests.inc({ kind: 'tags', upstream: route.registry, result: 'stale' });
      this.#m.stale.inc({ upstream: route.registry, reason: kind });
      extra[STALE_HEADER] = kind;
      extra['warning'] = '110 pullmap-cache "Response is Stale"';
      this.#log.warn('served cached tags', { name, reason: kind, error: upstream.error.message });
    }
    const sorted = [...new Set(tags)].sort();
    const { items, more } = paginate(sorted, route);
    const query = (last: string) =>
      new URLSearchParams({
        ...(route.n === undefined ? {} : { n: String(route.n) }),
        last,
        ...(route.ns === undefined ? {} : { ns: route.ns }),
      }).toString();
    const last = items.at(-1);
    const next = more && last !== undefined ? `/v2/${route.name}/tags/list?${query(last)}` : undefined;
    this.#sendList(req, res, { name: route.name, tags: items }, next, extra);
  }

  /** The repositories the cache holds tags of, as path-prefixed names. */
  async #catalog(req: IncomingMessage, res: ServerResponse, page: Page): Promise<void> {
    if (!this.#config.listing) {
      sendError(res, 404, 'UNSUPPORTED', 'the catalog is turned off (listing: false in the cache config)');
      return;
    }
    const { items, more } = paginate(await this.#repositories(), page);
    const n = page.n === undefined ? '' : `n=${page.n}&`;
    const last = items.at(-1);
    const next = more && last !== undefined ? `/v2/_catalog?${n}last=${encodeURIComponent(last)}` : undefined;
    this.#sendList(req, res, { repositories: items }, next);
  }

  /** The cached repositories, sorted, path-prefixed; read at most every CATALOG_MEMO_MS (each read reads every tag record). */
  #repositories(): Promise<string[]> {
    const memo = this.#catalogMemo;
    if (memo !== undefined && this.#now() - memo.at < CATALOG_MEMO_MS) return memo.names;
    const names = this.#store.allTags().then((tags) => {
      const out = new Set<string>();
      for (const t of tags) {
        const slash = t.name.indexOf('/');
        const host = embedRegistry(t.name.slice(0, slash));
        if (host !== undefined) out.add(`${host}/${t.name.slice(slash + 1)}`);
      }
      return [...out].sort();
    });
    this.#catalogMemo = { at: this.#now(), names };
    names.catch(() => {
      if (this.#catalogMemo?.names === names) this.#catalogMemo = undefined;
    });
    return names;
  }

  /** What the store holds, per tag, with sizes and last use: what `pullmap cache ls` prints. */
  async #listing(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (!this.#config.listing) {
      sendError(res, 404, 'UNSUPPORTED', 'listing is turned off (listing: false in the cache config)');
      return;
    }
    const listing = await this.#store.list();
    const body = { ...listing, maxSize: listing.maxSize ?? null, storeFull: this.#full !== undefined };
    this.#sendList(req, res, body, undefined);
  }

  /** Records an API request's duration by kind and upstream (routed again: it is pure and cheap). */
  #timed(target: string, started: number): void {
    if (!target.startsWith('/v2/')) return;
    const route = routeOf(target, this.#upstreams);
    const object = route.kind === 'manifest' || route.kind === 'blob' || route.kind === 'tags';
    this.#m.latency.observe((performance.now() - started) / 1000, {
      kind: object ? route.kind : 'other',
      upstream: object ? route.registry : 'other',
    });
  }

  /** Counts a request that failed upstream or in the store and answers with the matching error. */
  #failed(res: ServerResponse, route: ObjectRoute, error: RegistryError | Error): void {
    const kind = route.kind;
    this.#m.requests.inc({ kind, upstream: route.registry, result: 'error' });
    sendFailure(res, error, kind === 'manifest' ? 'MANIFEST_UNKNOWN' : 'BLOB_UNKNOWN');
  }

  async #manifest(req: IncomingMessage, res: ServerResponse, route: ObjectRoute): Promise<void> {
    const answer =
      route.digest !== undefined
        ? await this.#manifests.byDigest(route.registry, route.repository, route.digest)
        : await this.#manifests.byTag(route.registry, route.repository, route.tag ?? DEFAULT_TAG);
    if (!answer.ok) {
      this.#failed(res, route, answer.error);
      return;
    }
    const { manifest, source, stale } = answer.value as ManifestAnswer;
    this.#m.requests.inc({
      kind: 'manifest',
      upstream: route.registry,
      result: stale ? 'stale' : source === 'cache' ? 'hit' : 'miss',
    });
    const headers: Record<string, string | number> = {
      ...API_VERSION,
      'content-type': manifest.mediaType,
      'content-length': manifest.bytes.length,
      'docker-content-digest': manifest.digest,
      etag: `"${manifest.digest}"`,
    };
    if (stale) {
      this.#m.stale.inc({ upstream: route.registry, reason: stale });
      headers[STALE_HEADER] = stale;
      headers['warning'] = '110 pullmap-cache "Response is Stale"';
      this.#log.warn('served a stale manifest', {
        name: `${route.registry}/${route.repository}`,
        tag: route.tag,
        reason: stale,
        error: answer.value.staleError?.message,
      });
    }
    if (req.headers['if-none-match'] === headers['etag']) {
      res.writeHead(304, headers).end();
      return;
    }
    res.writeHead(200, headers);
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    this.#m.bytes.inc({ source }, manifest.bytes.length);
    res.end(manifest.bytes);
  }

  async #blob(req: IncomingMessage, res: ServerResponse, route: ObjectRoute): Promise<void> {
    const digest = route.digest as string;
    // A stored blob is served whichever repository (or configured upstream) asks for it: the digest
    // names verified bytes, and every client already reaches, through the cache's own credentials, the
    // repository the blob came from, so this grants no new access (README: "Blobs").
    const stored = await this.#store.useBlob(digest);
    if (stored) {
      this.#m.requests.inc({ kind: 'blob', upstream: route.registry, result: 'hit' });
      return this.#sendStored(req, res, digest, stored);
    }
    // A HEAD of a blob nobody is downloading is answered from upstream's HEAD: checking that a blob
    // exists should not cost fetching it whole.
    if (req.method === 'HEAD' && !this.#blobs.downloading(digest)) {
      const head = await this.#client.headBlob(route.registry, route.repository, digest);
      if (!head.ok) {
        this.#failed(res, route, head.error);
        return;
      }
      if (head.value.size !== undefined) {
        this.#m.requests.inc({ kind: 'blob', upstream: route.registry, result: 'miss' });
        return this.#send(req, res, digest, head.value.size, NO_BYTES, 'upstream');
      }
      // Without a length upstream, the HEAD is answered from a download, as a GET would be.
    }
    const fetched = await this.#blobs.fetch(route.registry, route.repository, digest);
    if (!fetched.ok) {
      this.#failed(res, route, fetched.error);
      return;
    }
    if ('stored' in fetched.value) {
      // Another replica sharing the store fetched it while this one waited.
      this.#m.requests.inc({ kind: 'blob', upstream: route.registry, result: 'hit' });
      return this.#sendStored(req, res, digest, fetched.value.stored);
    }
    if ('through' in fetched.value) return this.#streamThrough(req, res, route, fetched.value.through());
    this.#m.requests.inc({ kind: 'blob', upstream: route.registry, result: 'miss' });
    const download = fetched.value;
    if (!download.acquire()) {
      // Finished between the answer and now: it is in the store, or it failed.
      const now = download.state === 'done' ? await this.#store.useBlob(digest) : undefined;
      if (now) return this.#sendStored(req, res, digest, now);
      const { error } = download;
      if (error === undefined) sendError(res, 503, 'UNAVAILABLE', 'the blob was just evicted; retry');
      else sendFailure(res, error, 'BLOB_UNKNOWN');
      return;
    }
    try {
      await this.#send(req, res, digest, download.size, download, 'upstream');
    } finally {
      download.release();
    }
  }

  /** The store has no room: upstream's blob goes to this client without being kept. */
  async #streamThrough(
    req: IncomingMessage,
    res: ServerResponse,
    route: ObjectRoute,
    taken: BlobStream | undefined,
  ): Promise<void> {
    const digest = route.digest as string;
    let blob = taken;
    if (blob === undefined) {
      const own = await this.#client.getBlob(route.registry, route.repository, digest, {
        checkDigest: false,
      });
      if (!own.ok) {
        this.#failed(res, route, own.error);
        return;
      }
      blob = own.value;
    }
    this.#m.requests.inc({ kind: 'blob', upstream: route.registry, result: 'through' });
    const range = blob.size === undefined ? undefined : parseRange(req.headers.range, blob.size);
    const source = new StreamThrough(blob, range?.start ?? 0);
    try {
      await this.#send(req, res, digest, blob.size, source, 'upstream');
    } finally {
      source.close();
    }
  }

  async #sendStored(
    req: IncomingMessage,
    res: ServerResponse,
    digest: string,
    blob: StoredBlob,
  ): Promise<void> {
    if (req.method === 'GET' && this.#store.blobUrl) {
      // serve: redirect; the client fetches the bytes from the bucket itself (Range included).
      const location = await this.#store.blobUrl(digest);
      res.writeHead(307, { ...API_VERSION, location, 'docker-content-digest': digest, 'content-length': 0 });
      res.end();
      return;
    }
    if (req.method === 'HEAD') return this.#send(req, res, digest, blob.size, NO_BYTES, 'cache');
    const reader = await this.#store.openBlob(digest, blob);
    if (reader === undefined) {
      // Evicted between the look-up and now.
      sendError(res, 503, 'UNAVAILABLE', 'the blob was just evicted; retry');
      return;
    }
    try {
      await this.#send(req, res, digest, blob.size, reader, 'cache');
    } finally {
      await reader.close();
    }
  }

  /** Headers, then the bytes asked for; a failure mid-way cuts the response short (never completes it). */
  async #send(
    req: IncomingMessage,
    res: ServerResponse,
    digest: string,
    size: number | undefined,
    source: ByteSource,
    from: Source,
  ): Promise<void> {
    const headers: Record<string, string | number> = {
      ...API_VERSION,
      'content-type': 'application/octet-stream',
      'docker-content-digest': digest,
      etag: `"${digest}"`,
    };
    let start = 0;
    let end: number | undefined;
    let status = 200;
    if (size !== undefined) {
      // Without a length announced upstream, the blob is streamed whole (chunked) and ranges are ignored.
      headers['accept-ranges'] = 'bytes';
      const range = parseRange(req.headers.range, size);
      if (range === null) {
        res.writeHead(416, { ...headers, 'content-range': `bytes */${size}` }).end();
        return;
      }
      start = range?.start ?? 0;
      end = range?.end ?? size - 1;
      headers['content-length'] = end - start + 1;
      if (range) {
        status = 206;
        headers['content-range'] = `bytes ${start}-${end}/${size}`;
      }
    }
    if (req.method !== 'HEAD' && size !== 0) await source.prepare?.(start);
    res.writeHead(status, headers);
    if (req.method === 'HEAD' || size === 0) {
      res.end();
      return;
    }
    try {
      await copyRange(source, start, end, res, (n) => this.#m.bytes.inc({ source: from }, n));
      res.end();
    } catch {
      // The client went away, or the upstream download failed.
      res.destroy();
    }
  }
}

/** Starts serving; resolves once listening. */
export async function startCacheServer(options: CacheServerOptions): Promise<RunningCache> {
  const service = new CacheService(options);
  const server = http.createServer(
    {
      requestTimeout: options.config.requestTimeoutMs,
      headersTimeout: Math.min(options.config.requestTimeoutMs, 60_000),
      keepAliveTimeout: 30_000,
      maxHeaderSize: 16 * 1024,
    },
    (req, res) => service.handle(req, res),
  );
  // Blobs can take long to stream; the request timeout only bounds receiving the request. A connection
  // on which nothing moves for the idle timeout (a client that stopped reading, holding buffers and a
  // file handle) is destroyed, which ends the copy to it.
  server.setTimeout(options.config.idleTimeoutMs, (socket) => socket.destroy());
  server.maxConnections = options.config.maxConnections;
  const { host, port } = options.config.listen;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = (server.address() as AddressInfo).port;
  const shown = host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host;
  return {
    server,
    address: `${shown}:${bound}`,
    port: bound,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
