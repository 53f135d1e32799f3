// Blobs from upstream registries: HEAD and streamed GET on the blob transport (wire.ts), each GET on a
// connection of its own, authenticated through the registry client's sessions (same credentials, tokens,
// request slots and timeouts as its manifest calls). Only the cache fetches blobs; the control plane's
// registry client is manifests and auth.
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { rootCertificates } from 'node:tls';
import { type ProxyConfig, proxyFor } from '../../core/proxy.ts';
import { digestAlgorithm } from '../../core/reference/index.ts';
import { badInput, blobRepository, type CallOptions, type RegistryClient } from '../../registry/client.ts';
import type { Endpoint } from '../../registry/endpoint.ts';
import { classifyNetworkError, RegistryFailure, type RegistryResult } from '../../registry/errors.ts';
import {
  discard,
  ERROR_BODY_LIMIT,
  type Exchange,
  failureFromStatus,
  type Hop,
  header,
} from '../../registry/http.ts';
import { type BodySink, readableOf, type WireResponse, wireGet } from './wire.ts';

/**
 * A blob's body on its way. It holds one of the host's request slots until it is read to the end or
 * cancelled, so one of `pipeTo`, `stream` or `cancel` must be called, once.
 */
export interface BlobStream {
  /** 200 for the whole blob, 206 for a range. */
  readonly status: 200 | 206;
  /**
   * Hands the body to `sink` chunk by chunk (views valid during the call, or until the promise it
   * returns settles; the connection waits for that). Resolves once the body is whole and, for a whole
   * blob (unless `checkDigest: false`), hashes to its digest; rejects with a RegistryFailure, or with
   * the sink's own error.
   */
  pipeTo(sink: BodySink): Promise<void>;
  /** The body as a stream of copies (same checks), for consumers that want one. */
  stream(): Readable;
  /** Closes the connection without reading the rest. */
  cancel(): void;
  /** Content-Length of this answer, when sent. */
  readonly size: number | undefined;
  readonly digest: string;
  /** Content-Range of a 206 answer. */
  readonly contentRange: string | undefined;
}

export interface BlobHead {
  /** Content-Length of the blob, when the registry (or the storage it redirects to) sent one. */
  readonly size: number | undefined;
  readonly digest: string;
}

export interface BlobOptions extends CallOptions {
  /** Passed through as the Range header ("bytes=0-99"); a range answer is not digest-verified. */
  readonly range?: string | undefined;
  /** false: the caller checks the digest of what it receives (the cache does, off the main thread). */
  readonly checkDigest?: boolean | undefined;
}

/** An answer of the blob transport: a success keeps its body on the connection (`wire`). */
interface WireExchange extends Exchange {
  readonly wire?: WireResponse | undefined;
}

function contentLength(res: Exchange): number | undefined {
  const value = header(res.headers, 'content-length');
  if (value === undefined || !/^\d{1,15}$/.test(value)) return undefined;
  return Number(value);
}

export class BlobClient {
  readonly #registry: RegistryClient;
  /** The blob transport's hop per endpoint (an endpoint lives as long as its host's pool). */
  readonly #hops = new WeakMap<Endpoint, Hop<WireExchange>>();

  constructor(registry: RegistryClient) {
    this.#registry = registry;
  }

  #hop(endpoint: Endpoint): Hop<WireExchange> {
    let hop = this.#hops.get(endpoint);
    if (hop === undefined) {
      // A private CA is trusted in addition to the system roots, as Docker's certs.d does.
      const ca = endpoint.caPem.length > 0 ? [...rootCertificates, ...endpoint.caPem] : undefined;
      hop = wireHop({ connectTimeoutMs: endpoint.connectTimeoutMs, ca, proxy: this.#registry.proxy });
      this.#hops.set(endpoint, hop);
    }
    return hop;
  }

  /** HEAD a blob: whether the repository has it, and its size; follows redirects like `getBlob`. */
  headBlob(
    registry: string,
    repository: string,
    digest: string,
    options: CallOptions = {},
  ): Promise<RegistryResult<BlobHead>> {
    const what = `blob ${registry}/${repository}@${digest}`;
    const repo = blobRepository(registry, repository, digest);
    if (typeof repo !== 'string') return Promise.resolve(badInput(what, repo.reason));
    return this.#registry.session(registry, what, options, async (session) => {
      // Through the host's pool: a HEAD has no body to stream.
      const res = await session.send(repo, {
        method: 'HEAD',
        path: `/v2/${repo}/blobs/${digest}`,
        headers: {},
      });
      if (res.statusCode !== 200) throw await failureFromStatus(res, 'HEAD', what, this.#registry.now());
      await discard(res.body);
      const announced = header(res.headers, 'docker-content-digest');
      if (announced !== undefined && announced !== digest)
        throw new RegistryFailure('REG_DIGEST_MISMATCH', `${what}: registry announced ${announced}`, {
          status: 200,
        });
      return { size: contentLength(res), digest };
    });
  }

  /** GET a blob as a stream; follows redirects to blob storage without sending Authorization there. */
  getBlob(
    registry: string,
    repository: string,
    digest: string,
    options: BlobOptions = {},
  ): Promise<RegistryResult<BlobStream>> {
    const what = `blob ${registry}/${repository}@${digest}`;
    const repo = blobRepository(registry, repository, digest);
    if (typeof repo !== 'string') return Promise.resolve(badInput(what, repo.reason));
    return this.#registry.session(registry, what, options, async (session) => {
      const headers: Record<string, string> = {};
      if (options.range !== undefined) headers['range'] = options.range;
      const res = await session.send(
        repo,
        { method: 'GET', path: `/v2/${repo}/blobs/${digest}`, headers },
        this.#hop(session.endpoint),
      );
      if (res.wire === undefined) throw await failureFromStatus(res, 'GET', what, this.#registry.now());
      const wire = res.wire;
      const whole = res.statusCode === 200;
      const check = whole && options.checkDigest !== false;
      const detached = session.detach();
      let released = false;
      const release = () => {
        if (released) return;
        released = true;
        detached();
      };
      const pipeTo = async (sink: BodySink): Promise<void> => {
        const hash = check ? createHash(digestAlgorithm(digest)) : undefined;
        // The sink's own failure is passed on as it is; everything else is the registry's.
        let sinkError: { error: unknown } | undefined;
        const take = (chunk: Buffer): Promise<void> | undefined => {
          hash?.update(chunk);
          try {
            return sink(chunk)?.catch((error: unknown) => {
              sinkError = { error };
              throw error;
            });
          } catch (error) {
            sinkError = { error };
            throw error;
          }
        };
        try {
          await wire.pipeTo(take);
        } catch (err) {
          if (sinkError) throw sinkError.error;
          if (err instanceof RegistryFailure) throw err;
          throw options.signal?.aborted
            ? new RegistryFailure('REG_DEADLINE', `${what}: the caller's deadline passed while streaming`)
            : classifyNetworkError(err, what);
        } finally {
          release();
        }
        if (hash === undefined) return;
        const actual = `${digestAlgorithm(digest)}:${hash.digest('hex')}`;
        if (actual !== digest)
          throw new RegistryFailure('REG_DIGEST_MISMATCH', `${what}: content hashes to ${actual}`);
      };
      const cancel = () => {
        wire.cancel();
        release();
      };
      return {
        status: whole ? 200 : 206,
        pipeTo,
        stream: () => readableOf(pipeTo, cancel),
        cancel,
        size: contentLength(res),
        digest,
        contentRange: header(res.headers, 'content-range'),
      } satisfies BlobStream;
    });
  }
}

/**
 * GETs through the blob transport. A success (200, 206) keeps its body on the connection for
 * `WireExchange.wire`; any other answer's body is read (up to ERROR_BODY_LIMIT) so the usual handling of
 * errors, challenges and redirects applies to it.
 */
function wireHop(options: {
  connectTimeoutMs: number;
  ca: readonly string[] | undefined;
  proxy: ProxyConfig | undefined;
}): Hop<WireExchange> {
  return async (request) => {
    if (request.method !== 'GET' || request.body !== undefined)
      throw new Error(`the blob transport only sends GET without a body (asked for ${request.method})`);
    const res = await wireGet({
      url: request.url,
      headers: request.headers,
      signal: request.signal,
      connectTimeoutMs: options.connectTimeoutMs,
      timeoutMs: request.timeoutMs,
      ca: options.ca,
      // Decided per hop: a redirect may lead to storage that NO_PROXY lists.
      proxy: options.proxy && proxyFor(options.proxy, request.url),
    });
    const base = { statusCode: res.statusCode, headers: res.headers, url: request.url };
    if (res.statusCode === 200 || res.statusCode === 206) {
      let body: Exchange['body'] | undefined;
      return {
        ...base,
        wire: res,
        // As a stream only for a consumer that asks (a copy per chunk).
        get body() {
          body ??= Object.assign(res.stream(), { dump: async () => res.cancel() });
          return body;
        },
      };
    }
    const bytes = await readSmall(res);
    return { ...base, body: Object.assign(Readable.from([bytes]), { dump: async () => {} }) };
  };
}

/** The first ERROR_BODY_LIMIT bytes of a body; the connection is closed at that point. */
async function readSmall(res: WireResponse): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    await res.pipeTo((chunk) => {
      const n = Math.min(chunk.length, ERROR_BODY_LIMIT - size);
      chunks.push(Buffer.from(chunk.subarray(0, n)));
      size += n;
      if (size >= ERROR_BODY_LIMIT) res.cancel();
      return undefined;
    });
  } catch {
    // What arrived is enough to explain the answer; the connection is closed either way.
  }
  return Buffer.concat(chunks, size);
}
