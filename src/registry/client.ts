// The OCI distribution API client: ping, manifest HEAD and GET, and authenticated sessions for a
// transport of the caller's (the cache streams blobs through one: src/cache/transport/). One undici
// Agent per registry host keeps connections alive; a semaphore per host bounds requests in flight;
// every call has a hard timeout (a blob upload: a stall timeout, src/registry/stall-clock.ts) and
// honours the caller's signal; every result is typed.
import { createHash } from 'node:crypto';
import { pipeline, Readable, Transform } from 'node:stream';
import { rootCertificates } from 'node:tls';
import type { ProxyConfig } from '../core/proxy.ts';
import {
  DEFAULT_TAG,
  DIGEST,
  digestAlgorithm,
  type ImageReference,
  parseReference,
} from '../core/reference/index.ts';
import { Agent, type Dispatcher } from '../net/undici.ts';
import { type Authorization, Authorizer } from './auth.ts';
import { type AuthChallenge, parseChallenges } from './challenge.ts';
import type { RegistryCredential } from './credentials.ts';
import { type Endpoint, type EndpointSettings, resolveEndpoint } from './endpoint.ts';
import { classifyNetworkError, QueueFullError, RegistryFailure, type RegistryResult } from './errors.ts';
import {
  abandon,
  discard,
  type Exchange,
  exchange,
  failureFromStatus,
  type Hop,
  type HttpMethod,
  header,
  type RequestBody,
  readBounded,
  undiciHop,
} from './http.ts';
import type { CredentialSource } from './keyring.ts';
import {
  bareMediaType,
  DOCKER_MANIFEST_V1_SIGNED,
  isManifestMediaType,
  MANIFEST_ACCEPT,
} from './media-types.ts';
import { hasProxy, RoutedAgent } from './proxy-agent.ts';
import { type Release, Semaphore } from './semaphore.ts';
import { StallClock, stallWireTimeoutMs } from './stall-clock.ts';

const DEFAULT_MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
const DEFAULT_MAX_QUEUE_PER_HOST = 512;
const MAX_HOSTS = 256;
/** How long a host that refused manifest HEAD is asked with GET before HEAD is tried again. */
export const HEAD_REFUSAL_MEMORY_MS = 60 * 60_000;
const ACCEPT = MANIFEST_ACCEPT.join(', ');

export interface RegistryClientOptions {
  /** Settings per registry host as references name it ("127.0.0.1:5000", "docker.io"). */
  readonly endpoints?: Readonly<Record<string, EndpointSettings>> | undefined;
  /** Settings for hosts not listed in `endpoints`. */
  readonly defaults?: EndpointSettings | undefined;
  readonly credentials?: CredentialSource | undefined;
  /** Wall clock for token expiry and Retry-After dates; injected so tests can move it. */
  readonly now?: (() => number) | undefined;
  readonly maxManifestBytes?: number | undefined;
  /** Requests that may wait for a free slot per host before new ones fail with REG_BUSY. */
  readonly maxQueuePerHost?: number | undefined;
  readonly userAgent?: string | undefined;
  /** HTTP proxies (HTTPS_PROXY, HTTP_PROXY, NO_PROXY as Go reads them); undefined: every request direct. */
  readonly proxy?: ProxyConfig | undefined;
}

export interface CallOptions {
  /** The caller's deadline or cancellation; the call answers REG_DEADLINE as soon as it aborts. */
  readonly signal?: AbortSignal | undefined;
}

interface PingResult {
  readonly status: number;
  readonly authRequired: boolean;
  readonly challenges: readonly AuthChallenge[];
  /** Docker-Distribution-Api-Version, when sent. */
  readonly apiVersion: string | undefined;
}

interface ManifestHead {
  readonly status: number;
  /** Docker-Content-Digest, or the digest asked for when the registry sent none. */
  readonly digest: string | undefined;
  readonly mediaType: string | undefined;
  readonly size: number | undefined;
}

/** What an existence check found, and whether it took a HEAD or (HEAD being refused) a GET. */
interface ManifestCheck extends ManifestHead {
  readonly method: 'HEAD' | 'GET';
}

export interface Manifest {
  readonly status: number;
  readonly bytes: Buffer;
  readonly mediaType: string;
  /** The digest of `bytes`, verified against the reference's digest and Docker-Content-Digest. */
  readonly digest: string;
}

/** A blob's body from `openBlob`: read it to the end or destroy it (it holds a request slot). */
interface SourceBlob {
  /** Content-Length, when sent. */
  readonly size: number | undefined;
  readonly body: Readable;
}

/** An upload session a registry opened (POST /v2/<name>/blobs/uploads/). */
export interface UploadSession {
  readonly registry: string;
  readonly repository: string;
  /** Absolute URL of the session (its Location). */
  readonly location: string;
  /** The token scope the session was opened with, reused for its PATCH and PUT. */
  readonly scope: string;
  /** OCI-Chunk-Min-Length, when the registry sent one. */
  readonly minChunkBytes: number | undefined;
}

type UploadStart =
  | { readonly kind: 'mounted'; readonly digest: string }
  | { readonly kind: 'session'; readonly session: UploadSession };

/** An upload's buffered body goes to the socket in pieces of this size, so a slow socket shows progress. */
const SLICE = 64 * 1024;

interface HostState {
  readonly endpoint: Endpoint;
  readonly dispatcher: Dispatcher;
  /** Requests through the pool. */
  readonly hop: Hop;
  readonly semaphore: Semaphore;
  /** The last challenge this host sent, so later requests can authenticate up front. */
  challenge: AuthChallenge | undefined;
  /** Until when manifest HEAD is known to be refused here (405/501), so checks use GET. */
  headRefusedUntil: number;
}

interface CallContext {
  readonly state: HostState;
  readonly signal: AbortSignal;
  readonly timeoutMs: number;
  readonly what: string;
  /** An upload's clock, told as the transport takes body bytes; undefined for other calls. */
  readonly clock: StallClock | undefined;
  /** Stops the call's timer and hands its request slot to the caller (for streamed bodies). */
  detach(): Release;
}

interface SendRequest {
  readonly method: HttpMethod;
  /** A path on the registry ("/v2/team/app/blobs/sha256:..."), or an absolute URL an upload session's Location gave. */
  readonly path: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body?: RequestBody | undefined;
  /** Token scope; default pull of the request's repository. */
  readonly scope?: string | undefined;
}

/**
 * One call to a registry for a transport of the caller's: the host's request slot and timeout, and
 * authentication as for manifests (each matching credential, challenges, cached tokens).
 */
interface RegistrySession {
  readonly endpoint: Endpoint;
  /**
   * One authenticated request (redirects followed without Authorization) through `hop`, or the host's
   * pool without one. A hop runs on connections the pools do not own: closing the client ends them
   * through their signal.
   */
  send<E extends Exchange = Exchange>(repository: string, request: SendRequest, hop?: Hop<E>): Promise<E>;
  /** Stops the call's timer and hands its request slot to the caller (for streamed bodies). */
  detach(): Release;
}

/** The normalised repository of a blob request, or why the request is unusable. */
export function blobRepository(
  registry: string,
  repository: string,
  digest: string,
): string | { reason: string } {
  const parsed = parseReference(`${registry}/${repository}@${digest}`);
  if (!parsed.ok) return { reason: parsed.error.message };
  return DIGEST.test(digest) ? parsed.ref.repository : { reason: 'unsupported digest' };
}

/** A call refused before anything is sent: its input cannot name a blob. */
export const badInput = (what: string, reason: string): RegistryResult<never> => ({
  ok: false,
  error: new RegistryFailure('REG_BAD_INPUT', `${what}: ${reason}`).toError(),
});

const AUTH_FAILURES = new Set(['REG_UNAUTHORIZED', 'REG_FORBIDDEN', 'REG_AUTH_REFUSED']);

export class RegistryClient {
  readonly #endpoints: Readonly<Record<string, EndpointSettings>>;
  readonly #defaults: EndpointSettings;
  readonly #credentials: CredentialSource | undefined;
  readonly #now: () => number;
  readonly #maxManifestBytes: number;
  readonly #maxQueue: number;
  readonly #userAgent: string;
  readonly #proxy: ProxyConfig | undefined;
  readonly #hosts = new Map<string, HostState>();
  readonly #auth: Authorizer;
  /** Aborted by `close`: ends sessions' transfers, which run on connections of their own. */
  readonly #closing = new AbortController();

  constructor(options: RegistryClientOptions = {}) {
    this.#endpoints = options.endpoints ?? {};
    this.#defaults = options.defaults ?? {};
    this.#credentials = options.credentials;
    this.#now = options.now ?? Date.now;
    this.#maxManifestBytes = options.maxManifestBytes ?? DEFAULT_MAX_MANIFEST_BYTES;
    this.#maxQueue = options.maxQueuePerHost ?? DEFAULT_MAX_QUEUE_PER_HOST;
    this.#userAgent = options.userAgent ?? 'pullmap';
    this.#proxy = options.proxy;
    this.#auth = new Authorizer({ now: this.#now, userAgent: this.#userAgent });
  }

  /** Token requests sent so far (all hosts). */
  get tokenRequests(): number {
    return this.#auth.tokenRequests;
  }

  /** GET /v2/: is it a registry, and which authentication does it ask for? */
  ping(registry: string, options: CallOptions = {}): Promise<RegistryResult<PingResult>> {
    return this.#call(registry, `ping ${registry}`, options, async (ctx) => {
      const res = await this.#exchange(
        ctx,
        { method: 'GET', path: '/v2/', headers: {} },
        undefined,
        undefined,
      );
      const apiVersion = header(res.headers, 'docker-distribution-api-version');
      if (res.statusCode === 200 || res.statusCode === 401) {
        await discard(res.body);
        const challenges = parseChallenges(res.headers['www-authenticate']);
        const usable = pickChallenge(challenges);
        if (usable) ctx.state.challenge = usable;
        return { status: res.statusCode, authRequired: res.statusCode === 401, challenges, apiVersion };
      }
      if (res.statusCode === 404) {
        await discard(res.body);
        throw new RegistryFailure('REG_INVALID_RESPONSE', `${ctx.what}: no distribution API at /v2/ (404)`, {
          status: 404,
        });
      }
      throw await failureFromStatus(res, 'GET', ctx.what, this.#now());
    });
  }

  /** HEAD the manifest with every manifest and index type accepted; answers the digest. */
  headManifest(ref: ImageReference, options: CallOptions = {}): Promise<RegistryResult<ManifestHead>> {
    const reference = manifestReference(ref);
    return this.#call(ref.registry, `manifest ${describe(ref)}`, options, async (ctx) => {
      const res = await this.#send(ctx, ref.repository, {
        method: 'HEAD',
        path: `/v2/${ref.repository}/manifests/${reference}`,
        headers: { accept: ACCEPT },
      });
      if (res.statusCode !== 200) throw await failureFromStatus(res, 'HEAD', ctx.what, this.#now());
      await discard(res.body);
      const mediaType = manifestContentType(res, ctx.what);
      const digest = header(res.headers, 'docker-content-digest');
      if (digest !== undefined && !DIGEST.test(digest))
        throw new RegistryFailure('REG_INVALID_RESPONSE', `${ctx.what}: malformed Docker-Content-Digest`, {
          status: 200,
        });
      if (digest !== undefined && ref.digest !== undefined && digest !== ref.digest)
        throw new RegistryFailure('REG_DIGEST_MISMATCH', `${ctx.what}: registry announced ${digest}`, {
          status: 200,
        });
      return { status: 200, digest: digest ?? ref.digest, mediaType, size: contentLength(res) };
    });
  }

  /**
   * Whether the manifest exists: a HEAD, or for a registry that refuses manifest HEAD (405 or 501)
   * a GET whose body is read up to the manifest bound and hashed for the digest. The refusal is
   * remembered per host (the memory lives and is evicted with the host's connection pool) for
   * HEAD_REFUSAL_MEMORY_MS, so later checks go straight to GET.
   */
  async manifestExists(
    ref: ImageReference,
    options: CallOptions = {},
  ): Promise<RegistryResult<ManifestCheck>> {
    const known = this.#hosts.get(ref.registry);
    if (known === undefined || known.headRefusedUntil <= this.#now()) {
      const head = await this.headManifest(ref, options);
      if (head.ok) return { ok: true, value: { ...head.value, method: 'HEAD' } };
      if (head.error.code !== 'REG_METHOD_REFUSED') return head;
      const state = this.#hosts.get(ref.registry);
      if (state !== undefined) state.headRefusedUntil = this.#now() + HEAD_REFUSAL_MEMORY_MS;
    }
    const got = await this.getManifest(ref, options);
    if (!got.ok) return got;
    const { status, digest, mediaType, bytes } = got.value;
    return { ok: true, value: { status, digest, mediaType, size: bytes.length, method: 'GET' } };
  }

  /** GET the manifest bytes (bounded), verified against the digest asked for or announced. */
  getManifest(ref: ImageReference, options: CallOptions = {}): Promise<RegistryResult<Manifest>> {
    const reference = manifestReference(ref);
    return this.#call(ref.registry, `manifest ${describe(ref)}`, options, async (ctx) => {
      const res = await this.#send(ctx, ref.repository, {
        method: 'GET',
        path: `/v2/${ref.repository}/manifests/${reference}`,
        headers: { accept: ACCEPT },
      });
      if (res.statusCode !== 200) throw await failureFromStatus(res, 'GET', ctx.what, this.#now());
      const length = contentLength(res);
      if (length !== undefined && length > this.#maxManifestBytes) {
        abandon(res.body);
        throw new RegistryFailure(
          'REG_TOO_LARGE',
          `${ctx.what}: ${length} bytes is over ${this.#maxManifestBytes}`,
        );
      }
      const bytes = await readBounded(res.body, this.#maxManifestBytes, ctx.what);
      const { digest, mediaType } = checkedManifest(res, bytes, ref, ctx.what);
      return { status: 200, bytes, mediaType, digest };
    });
  }

  /** The HTTP proxies the client was given, for transports of the caller's own (the cache's blobs). */
  get proxy(): ProxyConfig | undefined {
    return this.#proxy;
  }

  /** The wall clock the client was given (for Retry-After dates of a session's failures). */
  now(): number {
    return this.#now();
  }

  /**
   * One call whose requests `work` sends through a transport of its own (`RegistrySession.send`), with
   * the host's slot, timeout and authentication; failures are typed as for every other call.
   */
  session<T>(
    registry: string,
    what: string,
    options: CallOptions,
    work: (session: RegistrySession) => Promise<T>,
  ): Promise<RegistryResult<T>> {
    return this.#call(registry, what, options, (ctx) =>
      work({
        endpoint: ctx.state.endpoint,
        send: (repository, request, hop) => this.#send(ctx, repository, request, hop),
        detach: ctx.detach,
      }),
    );
  }

  // ---- Copying images (src/mirror): source blobs through the pool, typed push operations. ----

  /**
   * Whether the repository has the blob (HEAD; 404 answers false). Follows redirects to blob storage.
   * `scope` lets a push session ask with the token it already holds.
   */
  hasBlob(
    registry: string,
    repository: string,
    digest: string,
    options: CallOptions & { readonly scope?: string | undefined } = {},
  ): Promise<RegistryResult<boolean>> {
    const what = `blob ${registry}/${repository}@${digest}`;
    const repo = blobRepository(registry, repository, digest);
    if (typeof repo !== 'string') return Promise.resolve(badInput(what, repo.reason));
    return this.#call(registry, what, options, async (ctx) => {
      const res = await this.#send(ctx, repo, {
        method: 'HEAD',
        path: `/v2/${repo}/blobs/${digest}`,
        headers: {},
        scope: options.scope,
      });
      if (res.statusCode === 404) {
        await discard(res.body);
        return false;
      }
      if (res.statusCode !== 200) throw await failureFromStatus(res, 'HEAD', ctx.what, this.#now());
      await discard(res.body);
      return true;
    });
  }

  /**
   * GETs a blob through the connection pool as a plain stream of the body (not digest-checked: the
   * copier hashes what it forwards, and the target registry checks the digest again). The body holds
   * one of the host's request slots until it ends, fails or is destroyed; its idle time between chunks
   * is bounded by the host's request timeout.
   */
  openBlob(
    registry: string,
    repository: string,
    digest: string,
    options: CallOptions = {},
  ): Promise<RegistryResult<SourceBlob>> {
    const what = `blob ${registry}/${repository}@${digest}`;
    const repo = blobRepository(registry, repository, digest);
    if (typeof repo !== 'string') return Promise.resolve(badInput(what, repo.reason));
    return this.#call(registry, what, options, async (ctx) => {
      const res = await this.#send(ctx, repo, {
        method: 'GET',
        path: `/v2/${repo}/blobs/${digest}`,
        headers: {},
      });
      if (res.statusCode !== 200) throw await failureFromStatus(res, 'GET', ctx.what, this.#now());
      const release = ctx.detach();
      const body = res.body;
      let released = false;
      const done = () => {
        if (released) return;
        released = true;
        release();
      };
      body.once('end', done);
      body.once('close', done);
      body.once('error', done);
      return { size: contentLength(res), body };
    });
  }

  /**
   * Starts a blob upload (POST /v2/<name>/blobs/uploads/). With `mount`, asks the registry to mount the
   * blob from another repository of the same registry first: `mounted` when it did, else a session
   * (registries that cannot mount answer with an ordinary upload session).
   */
  startUpload(
    registry: string,
    repository: string,
    options: CallOptions & {
      readonly mount?: { readonly digest: string; readonly from: string } | undefined;
    } = {},
  ): Promise<RegistryResult<UploadStart>> {
    const what = `upload to ${registry}/${repository}`;
    const parsed = parseReference(`${registry}/${repository}`);
    if (!parsed.ok) return Promise.resolve(badInput(what, parsed.error.message));
    const repo = parsed.ref.repository;
    const mount = options.mount;
    if (
      mount !== undefined &&
      (!DIGEST.test(mount.digest) || !parseReference(`${registry}/${mount.from}`).ok)
    )
      return Promise.resolve(badInput(what, 'unusable mount digest or repository'));
    const scope =
      mount === undefined
        ? `repository:${repo}:pull,push`
        : `repository:${repo}:pull,push repository:${mount.from}:pull`;
    const query = mount === undefined ? '' : `?mount=${mount.digest}&from=${encodeURIComponent(mount.from)}`;
    return this.#call(registry, what, options, async (ctx) => {
      const res = await this.#send(ctx, repo, {
        method: 'POST',
        path: `/v2/${repo}/blobs/uploads/${query}`,
        headers: { 'content-length': '0' },
        body: '',
        scope,
      });
      if (res.statusCode === 201 && mount !== undefined) {
        await discard(res.body);
        return { kind: 'mounted', digest: mount.digest } satisfies UploadStart;
      }
      if (res.statusCode !== 202) throw await failureFromStatus(res, 'POST', ctx.what, this.#now());
      await discard(res.body);
      const location = header(res.headers, 'location');
      if (location === undefined)
        throw new RegistryFailure('REG_INVALID_RESPONSE', `${ctx.what}: 202 without a Location`, {
          status: 202,
        });
      const minChunk = Number(header(res.headers, 'oci-chunk-min-length'));
      return {
        kind: 'session',
        session: {
          registry,
          repository: repo,
          location: new URL(location, `${ctx.state.endpoint.origin}/v2/${repo}/blobs/uploads/`).href,
          scope,
          minChunkBytes: Number.isSafeInteger(minChunk) && minChunk > 0 ? minChunk : undefined,
        },
      } satisfies UploadStart;
    });
  }

  /**
   * Finishes an upload session with the whole blob in one PUT (monolithic). `body` streams; the call
   * has no total time limit, only the host's stall timeout (`stallTimeoutMs`): it fails when the socket
   * takes no body bytes, or no answer comes after the body, for that long.
   */
  putBlob(
    session: UploadSession,
    digest: string,
    size: number,
    body: Readable | Buffer,
    options: CallOptions = {},
  ): Promise<RegistryResult<void>> {
    const what = `blob upload ${session.registry}/${session.repository}@${digest}`;
    if (!DIGEST.test(digest)) return Promise.resolve(badInput(what, 'unsupported digest'));
    const url = new URL(session.location);
    url.searchParams.set('digest', digest);
    return this.#call(session.registry, what, { ...options, stall: true }, async (ctx) => {
      const res = await this.#send(ctx, session.repository, {
        method: 'PUT',
        path: url.href,
        headers: { 'content-type': 'application/octet-stream', 'content-length': String(size) },
        body,
        scope: session.scope,
      });
      if (res.statusCode !== 201) throw await failureFromStatus(res, 'PUT', ctx.what, this.#now());
      await discard(res.body);
    });
  }

  /**
   * Sends one chunk of a chunked upload (PATCH with Content-Range); answers the session to continue
   * with (the registry may move it). `offset` is the chunk's first byte in the blob. Bounded by the
   * host's stall timeout, as `putBlob`.
   */
  patchBlob(
    session: UploadSession,
    offset: number,
    chunk: Buffer,
    options: CallOptions = {},
  ): Promise<RegistryResult<UploadSession>> {
    const what = `blob upload ${session.registry}/${session.repository} bytes ${offset}+${chunk.length}`;
    return this.#call(session.registry, what, { ...options, stall: true }, async (ctx) => {
      const res = await this.#send(ctx, session.repository, {
        method: 'PATCH',
        path: session.location,
        headers: {
          'content-type': 'application/octet-stream',
          'content-length': String(chunk.length),
          'content-range': `${offset}-${offset + chunk.length - 1}`,
        },
        body: chunk,
        scope: session.scope,
      });
      if (res.statusCode !== 202) throw await failureFromStatus(res, 'PATCH', ctx.what, this.#now());
      await discard(res.body);
      const location = header(res.headers, 'location');
      return location === undefined
        ? session
        : { ...session, location: new URL(location, session.location).href };
    });
  }

  /**
   * PUTs manifest bytes under `reference` (a digest or a tag) exactly as given; checks the registry
   * stored them under the digest they hash to.
   */
  putManifest(
    registry: string,
    repository: string,
    reference: string,
    manifest: { readonly bytes: Buffer; readonly mediaType: string; readonly digest: string },
    options: CallOptions = {},
  ): Promise<RegistryResult<void>> {
    const what = `manifest ${registry}/${repository}${reference.includes(':') ? '@' : ':'}${reference}`;
    const parsed = parseReference(
      `${registry}/${repository}${reference.includes(':') ? '@' : ':'}${reference}`,
    );
    if (!parsed.ok) return Promise.resolve(badInput(what, parsed.error.message));
    const repo = parsed.ref.repository;
    return this.#call(registry, what, options, async (ctx) => {
      const res = await this.#send(ctx, repo, {
        method: 'PUT',
        path: `/v2/${repo}/manifests/${reference}`,
        headers: { 'content-type': manifest.mediaType, 'content-length': String(manifest.bytes.length) },
        body: manifest.bytes,
        scope: `repository:${repo}:pull,push`,
      });
      if (res.statusCode !== 201) throw await failureFromStatus(res, 'PUT', ctx.what, this.#now());
      await discard(res.body);
      const stored = header(res.headers, 'docker-content-digest');
      if (stored?.startsWith(digestAlgorithm(manifest.digest)) && stored !== manifest.digest)
        throw new RegistryFailure(
          'REG_DIGEST_MISMATCH',
          `${ctx.what}: stored as ${stored}, not ${manifest.digest}`,
          {
            status: 201,
          },
        );
    });
  }

  /**
   * Closes every connection, aborting requests still in flight (at shutdown their answers are no use,
   * and a slow registry must not hold the process up). The client must not be used afterwards.
   */
  async close(): Promise<void> {
    this.#closing.abort(new RegistryFailure('REG_CONNECTION_FAILED', 'the registry client was closed'));
    const states = [...this.#hosts.values()];
    this.#hosts.clear();
    await Promise.all(states.map((s) => s.dispatcher.destroy().catch(() => {})));
  }

  #host(registry: string): HostState {
    const existing = this.#hosts.get(registry);
    if (existing) return existing;
    const resolved = resolveEndpoint(registry, this.#endpoints[registry] ?? this.#defaults);
    if (!resolved.ok) throw resolved.error;
    const endpoint = resolved.value;
    // A private CA is trusted in addition to the system roots, as Docker's certs.d does.
    const ca = endpoint.caPem.length > 0 ? [...rootCertificates, ...endpoint.caPem] : undefined;
    // Blob redirects may lead elsewhere, but not to an unbounded number of places.
    const maxOrigins = 16;
    const dispatcher = hasProxy(this.#proxy)
      ? new RoutedAgent({
          proxy: this.#proxy,
          connections: endpoint.maxConcurrent,
          keepAliveTimeout: 30_000,
          connectTimeoutMs: endpoint.connectTimeoutMs,
          ca,
          maxOrigins,
        })
      : new Agent({
          connections: endpoint.maxConcurrent,
          keepAliveTimeout: 30_000,
          connect: { timeout: endpoint.connectTimeoutMs, ...(ca ? { ca } : {}) },
          maxOrigins,
        });
    const state: HostState = {
      endpoint,
      dispatcher,
      hop: undiciHop(dispatcher),
      semaphore: new Semaphore(endpoint.maxConcurrent, this.#maxQueue),
      challenge: undefined,
      headRefusedUntil: 0,
    };
    this.#hosts.set(registry, state);
    if (this.#hosts.size > MAX_HOSTS) this.#evictIdleHost();
    return state;
  }

  #evictIdleHost(): void {
    for (const [name, state] of this.#hosts) {
      if (state.semaphore.active === 0 && state.semaphore.waiting === 0) {
        this.#hosts.delete(name);
        state.dispatcher.close().catch(() => {});
        return;
      }
    }
  }

  async #call<T>(
    registry: string,
    what: string,
    options: CallOptions & { readonly stall?: boolean | undefined },
    work: (ctx: CallContext) => Promise<T>,
  ): Promise<RegistryResult<T>> {
    let state: HostState;
    try {
      state = this.#host(registry);
    } catch (err) {
      return { ok: false, error: classifyNetworkError(err, what).toError() };
    }
    const timer = new AbortController();
    const signal = options.signal ? AbortSignal.any([options.signal, timer.signal]) : timer.signal;
    // An upload may take as long as its link needs: its clock fires only when it stops progressing,
    // and the wire timers below it are loose enough never to fire first.
    const stallMs = state.endpoint.stallTimeoutMs;
    const clock = options.stall === true ? new StallClock(stallMs, () => timer.abort()) : undefined;
    const timeoutMs = clock ? stallWireTimeoutMs(stallMs) : state.endpoint.requestTimeoutMs;
    const handle = clock ? undefined : setTimeout(() => timer.abort(), timeoutMs);
    const stop = (): void => {
      clearTimeout(handle);
      clock?.stop();
    };
    let release: Release | undefined;
    const ctx: CallContext = {
      state,
      signal,
      timeoutMs,
      what,
      clock,
      detach: () => {
        stop();
        const r = release ?? (() => {});
        release = undefined;
        return r;
      },
    };
    try {
      release = await state.semaphore.acquire(signal);
      // Waiting for the slot is bounded by the stall limit too; the upload's own clock starts now.
      clock?.took();
      return { ok: true, value: await work(ctx) };
    } catch (err) {
      const limit = clock ? { stallMs } : { timeoutMs };
      return { ok: false, error: this.#failure(err, what, options.signal, timer.signal, limit).toError() };
    } finally {
      stop();
      release?.();
    }
  }

  #failure(
    err: unknown,
    what: string,
    callerSignal: AbortSignal | undefined,
    timerSignal: AbortSignal,
    limit: { readonly timeoutMs: number } | { readonly stallMs: number },
  ): RegistryFailure {
    if (err instanceof RegistryFailure) return err;
    if (callerSignal?.aborted)
      return new RegistryFailure('REG_DEADLINE', `${what}: the caller's deadline passed`);
    if (timerSignal.aborted)
      return new RegistryFailure(
        'REG_TIMEOUT',
        'stallMs' in limit
          ? `${what}: stalled (no body bytes taken for ${limit.stallMs} ms, or no answer after the body)`
          : `${what}: no answer within ${limit.timeoutMs} ms`,
      );
    if (err instanceof QueueFullError)
      return new RegistryFailure('REG_BUSY', `${what}: too many requests already waiting for this registry`);
    return classifyNetworkError(err, what);
  }

  /** One request with authentication, trying each matching credential while the registry refuses. */
  async #send<E extends Exchange = Exchange>(
    ctx: CallContext,
    repository: string,
    request: SendRequest,
    hop?: Hop<E>,
  ): Promise<E> {
    const found = this.#credentials?.lookup(ctx.state.endpoint.registry, repository) ?? [];
    const attempts: readonly (RegistryCredential | undefined)[] = found.length > 0 ? found : [undefined];
    for (let i = 0; ; i++) {
      try {
        return await this.#sendAs(ctx, repository, request, attempts[i], hop);
      } catch (err) {
        if (err instanceof RegistryFailure && AUTH_FAILURES.has(err.code) && i + 1 < attempts.length)
          continue;
        throw err;
      }
    }
  }

  async #sendAs<E extends Exchange>(
    ctx: CallContext,
    repository: string,
    request: SendRequest,
    credential: RegistryCredential | undefined,
    hop: Hop<E> | undefined,
  ): Promise<E> {
    const scope = request.scope ?? `repository:${repository}:pull`;
    const known = ctx.state.challenge;
    const first = known ? await this.#authorize(ctx, known, credential, scope) : undefined;
    let res = await this.#exchange(ctx, request, first?.header, hop);
    if (res.statusCode !== 401) return this.#refuseForbidden(res, ctx, credential);
    const challenges = parseChallenges(res.headers['www-authenticate']);
    await discard(res.body);
    if (request.body instanceof Readable) {
      // A streamed body is gone: drop the token, and the caller retries the whole upload.
      this.#auth.invalidate(first?.tokenKey);
      throw new RegistryFailure('REG_UPLOAD_RESTART', `${ctx.what}: 401 during a streamed upload`, {
        status: 401,
      });
    }
    const challenge = pickChallenge(challenges);
    if (challenge === undefined) {
      const code = challenges.length > 0 ? 'REG_AUTH_UNSUPPORTED' : 'REG_UNAUTHORIZED';
      const schemes = challenges.map((c) => c.scheme).join(', ');
      throw new RegistryFailure(
        code,
        `${ctx.what}: 401 ${schemes ? `asking for ${schemes}` : 'without a challenge'}`,
        {
          status: 401,
        },
      );
    }
    ctx.state.challenge = challenge;
    if (first !== undefined) {
      // Fresh credentials for the same challenge were just refused: asking again would not help.
      if (first.fresh && known !== undefined && sameChallenge(known, challenge))
        throw refused(ctx, credential);
      this.#auth.invalidate(first.tokenKey);
    }
    const second = await this.#authorize(ctx, challenge, credential, scope);
    if (second === undefined) throw refused(ctx, credential);
    res = await this.#exchange(ctx, request, second.header, hop);
    if (res.statusCode === 401) {
      await discard(res.body);
      this.#auth.invalidate(second.tokenKey);
      throw refused(ctx, credential);
    }
    return this.#refuseForbidden(res, ctx, credential);
  }

  async #refuseForbidden<E extends Exchange>(
    res: E,
    ctx: CallContext,
    credential: RegistryCredential | undefined,
  ): Promise<E> {
    if (res.statusCode !== 403) return res;
    await discard(res.body);
    const who = credential === undefined ? 'anonymous access' : `credentials from ${credential.source}`;
    throw new RegistryFailure('REG_FORBIDDEN', `${ctx.what}: forbidden for ${who}`, { status: 403 });
  }

  #authorize(
    ctx: CallContext,
    challenge: AuthChallenge,
    credential: RegistryCredential | undefined,
    scope: string,
  ): Promise<Authorization | undefined> {
    const realm = challenge.params['realm'];
    let dispatcher = ctx.state.dispatcher;
    if (realm !== undefined) {
      // A realm host with its own settings (say, its own CA) is reached through its own pool.
      const realmHost = safeHost(realm);
      if (realmHost !== undefined && realmHost !== ctx.state.endpoint.registry && this.#endpoints[realmHost])
        dispatcher = this.#host(realmHost).dispatcher;
    }
    return this.#auth.authorize({
      challenge,
      credential,
      scope,
      registryInsecure: ctx.state.endpoint.scheme === 'http',
      signal: ctx.signal,
      timeoutMs: ctx.timeoutMs,
      dispatcher,
    });
  }

  #exchange<E extends Exchange>(
    ctx: CallContext,
    request: SendRequest,
    authorization: string | undefined,
    hop: Hop<E> | undefined,
  ): Promise<E> {
    const { endpoint } = ctx.state;
    // Without a hop of the caller's, through the host's pool (whose answers are plain Exchanges).
    const base = (hop ?? ctx.state.hop) as Hop<E>;
    const clock = ctx.clock;
    const send: Hop<E> =
      clock === undefined ? base : (req) => base({ ...req, body: counted(req.body, clock) });
    return exchange(send, {
      method: request.method,
      url: new URL(request.path, endpoint.origin),
      headers: { 'user-agent': this.#userAgent, ...request.headers },
      body: request.body,
      authorization,
      authOrigin: endpoint.origin,
      // Closing the client destroys the pools; a session's own connection is ended through its signal.
      signal: hop ? AbortSignal.any([ctx.signal, this.#closing.signal]) : ctx.signal,
      timeoutMs: ctx.timeoutMs,
      allowPlainRedirect: endpoint.scheme === 'http',
    });
  }
}

/**
 * One hop's body of an upload, telling `clock` as the transport takes each piece of it: undici pulls a
 * stream only as the socket drains, so a piece taken is one the socket accepted. Bytes are sliced
 * rather than written at once, which would hide a slow socket's progress until the last byte.
 */
function counted(body: RequestBody | undefined, clock: StallClock): RequestBody | undefined {
  clock.began();
  if (body === undefined || typeof body === 'string' || (Buffer.isBuffer(body) && body.length <= SLICE)) {
    clock.sent();
    return body;
  }
  if (Buffer.isBuffer(body)) return Readable.from(slices(body, clock), { objectMode: false });
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      clock.took();
      done(null, chunk);
    },
    flush(done) {
      clock.sent();
      done();
    },
  });
  // Errors travel both ways: a failing source fails the request, an aborted request ends the source.
  pipeline(body, counter, () => {});
  return counter;
}

function* slices(bytes: Buffer, clock: StallClock): Generator<Buffer> {
  for (let start = 0; start < bytes.length; start += SLICE) {
    clock.took();
    yield bytes.subarray(start, start + SLICE);
  }
  clock.sent();
}

function refused(ctx: CallContext, credential: RegistryCredential | undefined): RegistryFailure {
  const message =
    credential === undefined
      ? `${ctx.what}: the registry requires credentials and none are configured for it`
      : `${ctx.what}: the registry refused the credentials from ${credential.source}`;
  return new RegistryFailure('REG_UNAUTHORIZED', message, { status: 401 });
}

/** Bearer is preferred: registries that offer both give finer-grained tokens through it. */
function pickChallenge(challenges: readonly AuthChallenge[]): AuthChallenge | undefined {
  return challenges.find((c) => c.scheme === 'bearer') ?? challenges.find((c) => c.scheme === 'basic');
}

function sameChallenge(a: AuthChallenge, b: AuthChallenge): boolean {
  return (
    a.scheme === b.scheme &&
    a.params['realm'] === b.params['realm'] &&
    a.params['service'] === b.params['service']
  );
}

function safeHost(url: string): string | undefined {
  try {
    return new URL(url).host;
  } catch {
    return undefined;
  }
}

function manifestReference(ref: ImageReference): string {
  return ref.digest ?? ref.tag ?? DEFAULT_TAG;
}

/**
 * A fetched manifest's digest and media type: the content must hash to the digest asked for and to
 * the one the registry announced; the media type comes from the header, else from the document.
 */
function checkedManifest(
  res: Exchange,
  bytes: Buffer,
  ref: ImageReference,
  what: string,
): { digest: string; mediaType: string } {
  const algorithm = ref.digest === undefined ? 'sha256' : digestAlgorithm(ref.digest);
  const digest = `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}`;
  if (ref.digest !== undefined && digest !== ref.digest)
    throw new RegistryFailure('REG_DIGEST_MISMATCH', `${what}: content hashes to ${digest}`, {
      status: 200,
    });
  let mediaType = manifestContentType(res, what);
  const announced = header(res.headers, 'docker-content-digest');
  // Signed schema 1 manifests are announced by the digest of their unsigned form.
  if (
    announced?.startsWith(`${algorithm}:`) &&
    announced !== digest &&
    mediaType !== DOCKER_MANIFEST_V1_SIGNED
  )
    throw new RegistryFailure(
      'REG_DIGEST_MISMATCH',
      `${what}: announced ${announced}, content is ${digest}`,
      {
        status: 200,
      },
    );
  const embedded = manifestDocumentType(bytes, what);
  if (mediaType === undefined || mediaType === 'application/json') mediaType = embedded;
  if (mediaType === undefined)
    throw new RegistryFailure('REG_INVALID_RESPONSE', `${what}: manifest has no media type`, {
      status: 200,
    });
  return { digest, mediaType };
}

function describe(ref: ImageReference): string {
  return `${ref.registry}/${ref.repository}${ref.digest ? `@${ref.digest}` : `:${ref.tag ?? DEFAULT_TAG}`}`;
}

function contentLength(res: Exchange): number | undefined {
  const value = header(res.headers, 'content-length');
  if (value === undefined || !/^\d{1,15}$/.test(value)) return undefined;
  return Number(value);
}

/** The answer's manifest media type; a 200 with, say, text/html is not the distribution API. */
function manifestContentType(res: Exchange, what: string): string | undefined {
  const raw = header(res.headers, 'content-type');
  if (raw === undefined) return undefined;
  const type = bareMediaType(raw);
  if (isManifestMediaType(type) || type === 'application/json') return type;
  throw new RegistryFailure('REG_INVALID_RESPONSE', `${what}: answered 200 with ${type}, not a manifest`, {
    status: res.statusCode,
  });
}

/** Checks the bytes are a manifest document and returns its embedded mediaType, if any. */
function manifestDocumentType(bytes: Buffer, what: string): string | undefined {
  let doc: unknown;
  try {
    doc = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new RegistryFailure('REG_INVALID_RESPONSE', `${what}: manifest is not JSON`, { status: 200 });
  }
  if (
    typeof doc !== 'object' ||
    doc === null ||
    typeof (doc as { schemaVersion?: unknown }).schemaVersion !== 'number'
  )
    throw new RegistryFailure('REG_INVALID_RESPONSE', `${what}: manifest has no schemaVersion`, {
      status: 200,
    });
  const embedded = (doc as { mediaType?: unknown }).mediaType;
  return typeof embedded === 'string' && isManifestMediaType(embedded) ? embedded : undefined;
}
