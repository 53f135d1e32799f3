// Copies one image from a source registry to a target registry exactly: manifests byte for byte and by
// digest, blobs streamed from source to target through a bounded buffer. Order is what keeps a target
// consistent for pods that pull by digest or tag at any moment: blobs first, then each manifest by
// digest, the index after its children, the tag last. Nothing half-pushed is ever tagged, so a copy
// cut short (crash, leader change) is simply started again.
import { createHash } from 'node:crypto';
import { type Readable, Transform, type TransformCallback } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Result } from '../core/errors.ts';
import { DEFAULT_TAG, type ImageReference } from '../core/reference/index.ts';
import type {
  Manifest,
  RegistryClient,
  RegistryError,
  RegistryErrorCode,
  RegistryResult,
  UploadSession,
} from '../registry/index.ts';
import { type CopyError, type CopyErrorCode, CopyFailure } from './errors.ts';
import {
  type Descriptor,
  formatPlatform,
  type Platform,
  parseManifest,
  platformMatches,
} from './manifest.ts';
import { PushLedger } from './push-ledger.ts';

/** copied: pushed now; present: the target had it (tag set if needed); partial: see `CopyOutcome`. */
type CopyState = 'copied' | 'present' | 'partial';

export interface CopyOutcome {
  readonly state: CopyState;
  /** The digest of the source's top manifest (the index, for a multi-arch image). */
  readonly digest: string;
  readonly mediaType: string;
  /** The tag set at the target, if the target reference has one and the copy is complete. */
  readonly tagged: string | undefined;
  /**
   * With a platform filter that leaves out some of an index's manifests, only the selected manifests
   * are pushed (by digest) and the index is not (its digest names content the target does not have),
   * nor the tag: pods pinned to the index digest, or using the tag, keep pulling from the source.
   */
  readonly platforms: readonly string[];
  readonly manifestsPushed: number;
  readonly blobsUploaded: number;
  readonly blobsMounted: number;
  readonly blobsPresent: number;
  readonly bytesUploaded: number;
}

export type CopyResult = Result<CopyOutcome, CopyError>;

export type CopyEvent =
  | {
      readonly kind: 'manifest';
      readonly digest: string;
      readonly mediaType: string;
      readonly pushed: boolean;
    }
  | {
      readonly kind: 'blob';
      readonly digest: string;
      readonly size: number;
      readonly state: 'present' | 'mounted' | 'uploaded';
    }
  | { readonly kind: 'bytes'; readonly digest: string; readonly bytes: number }
  | {
      /** A registry operation failed in a way that may pass; it is tried again after `waitMs`. */
      readonly kind: 'retry';
      readonly side: 'source' | 'target';
      /** The registry's error code (REG_TIMEOUT, REG_SERVER_ERROR, …) and message. */
      readonly code: string;
      readonly message: string;
      /** The attempt that failed, of `attempts`. */
      readonly attempt: number;
      readonly attempts: number;
      readonly waitMs: number;
    };

interface CopyRequest {
  readonly source: ImageReference;
  readonly target: ImageReference;
  /** Copy only these platforms of an index (see CopyOutcome.platforms); empty or absent: all. */
  readonly platforms?: readonly Platform[] | undefined;
  readonly signal?: AbortSignal | undefined;
  readonly onEvent?: ((event: CopyEvent) => void) | undefined;
}

interface CopierOptions {
  /** Reads the source (its credentials). */
  readonly source: RegistryClient;
  /** Writes the target (its credentials); may be the same client. */
  readonly target: RegistryClient;
  /** Blobs in transfer at once per target registry, across all copies of this copier. Default 4. */
  readonly blobsPerRegistry?: number | undefined;
  /**
   * Shared between copiers (one per set of credentials) so the slot bound holds per target registry
   * whatever the credentials, and copies do not race on one repository's writes; default: its own.
   */
  readonly ledger?: PushLedger | undefined;
  /** Attempts per registry operation for failures that may pass (5xx, network, 429). Default 4. */
  readonly attempts?: number | undefined;
  readonly backoffMs?: number | undefined;
  readonly maxBackoffMs?: number | undefined;
  /** Chunk size for registries that refuse a monolithic upload (halved while they refuse it). Default 8 MiB. */
  readonly chunkBytes?: number | undefined;
  /** auto: one PUT, chunks for a registry that refuses it; chunked: always chunks. */
  readonly upload?: 'auto' | 'chunked' | undefined;
}

const RETRYABLE: ReadonlySet<RegistryErrorCode> = new Set([
  'REG_TIMEOUT',
  'REG_CONNECTION_FAILED',
  'REG_SERVER_ERROR',
  'REG_RATE_LIMITED',
  'REG_BUSY',
  'REG_UPLOAD_RESTART',
]);
const MAX_INDEX_DEPTH = 2;
/** The smallest chunk tried for a target that answers 413 (ingress-nginx's default limit is 1 MiB). */
const MIN_CHUNK_BYTES = 64 * 1024;

interface Totals {
  manifestsPushed: number;
  blobsUploaded: number;
  blobsMounted: number;
  blobsPresent: number;
  bytesUploaded: number;
}

/** One copy's state: the blobs it already handled (layers shared between platforms go once). */
interface Run {
  readonly request: CopyRequest;
  readonly signal: AbortSignal;
  readonly totals: Totals;
  readonly blobs: Map<string, Promise<void>>;
  readonly pushScope: string;
}

export class Copier {
  readonly #source: RegistryClient;
  readonly #target: RegistryClient;
  readonly #perRegistry: number;
  readonly #attempts: number;
  readonly #backoffMs: number;
  readonly #maxBackoffMs: number;
  readonly #chunkBytes: number;
  readonly #ledger: PushLedger;
  /**
   * Target registries that refused a monolithic upload get chunks from then on, of the size here: halved
   * each time a chunk is refused as too large (413, a proxy's body limit).
   */
  readonly #chunkSizes = new Map<string, number>();
  readonly #alwaysChunked: boolean;

  constructor(options: CopierOptions) {
    this.#source = options.source;
    this.#target = options.target;
    this.#perRegistry = options.blobsPerRegistry ?? 4;
    this.#ledger = options.ledger ?? new PushLedger();
    this.#attempts = Math.max(1, options.attempts ?? 4);
    this.#backoffMs = options.backoffMs ?? 500;
    this.#maxBackoffMs = options.maxBackoffMs ?? 10_000;
    this.#chunkBytes = options.chunkBytes ?? 8 * 1024 * 1024;
    this.#alwaysChunked = options.upload === 'chunked';
  }

  async copy(request: CopyRequest): Promise<CopyResult> {
    // Ends the blobs still in transfer when one part of the copy fails.
    const stop = new AbortController();
    const run: Run = {
      request,
      signal: request.signal ? AbortSignal.any([request.signal, stop.signal]) : stop.signal,
      totals: { manifestsPushed: 0, blobsUploaded: 0, blobsMounted: 0, blobsPresent: 0, bytesUploaded: 0 },
      blobs: new Map(),
      pushScope: `repository:${request.target.repository}:pull,push`,
    };
    try {
      return { ok: true, value: await this.#copy(run) };
    } catch (err) {
      stop.abort();
      if (err instanceof CopyFailure) return { ok: false, error: err.error };
      if (run.signal.aborted) return { ok: false, error: cancelled().error };
      throw err;
    }
  }

  async #copy(run: Run): Promise<CopyOutcome> {
    const { source } = run.request;
    const top = await this.#retry(
      'source',
      () => this.#source.getManifest(source, { signal: run.signal }),
      run,
    );
    const parsed = parseManifest(top.bytes, top.mediaType);
    if (parsed.kind === 'unsupported') throw unsupported(source, parsed.reason);
    let copied: { state: CopyState; platforms: string[] };
    if (await this.#targetHas(run, top.digest))
      copied = {
        state: 'present',
        platforms: parsed.kind === 'index' ? platformNames(parsed.manifests) : [],
      };
    else if (parsed.kind === 'index') copied = await this.#copyIndex(run, top, parsed.manifests);
    else {
      await Promise.all(parsed.blobs.map((b) => this.#blob(run, b)));
      await this.#pushManifest(run, top);
      copied = { state: 'copied', platforms: [] };
    }
    // The tag last, and only for a complete copy.
    const tagged = copied.state === 'partial' ? undefined : await this.#tag(run, top);
    return {
      state: copied.state,
      digest: top.digest,
      mediaType: top.mediaType,
      tagged,
      platforms: copied.platforms,
      ...run.totals,
    };
  }

  /**
   * The top index's manifests for the platforms asked for (all when none is), then the index itself
   * unless some were left out: a partial copy is reachable by its manifests' digests only.
   */
  async #copyIndex(
    run: Run,
    top: Manifest,
    manifests: readonly Descriptor[],
  ): Promise<{ state: CopyState; platforms: string[] }> {
    const { source } = run.request;
    const platforms = run.request.platforms ?? [];
    const selected =
      platforms.length === 0
        ? manifests
        : manifests.filter((m) => platforms.some((p) => platformMatches(p, m.platform)));
    if (selected.length === 0)
      throw new CopyFailure({
        code: 'NO_PLATFORM',
        message: `${describe(source)}: the index has no manifest for ${platforms.map(formatPlatform).join(', ')}`,
      });
    await Promise.all(selected.map((m) => this.#copyManifest(run, m.digest, 1)));
    const copiedPlatforms = platformNames(selected);
    if (selected.length < manifests.length) return { state: 'partial', platforms: copiedPlatforms };
    await this.#pushManifest(run, top);
    return { state: 'copied', platforms: copiedPlatforms };
  }

  /** Tags the target with the copied manifest; a digest reference needs no tag. */
  async #tag(run: Run, top: Manifest): Promise<string | undefined> {
    const { target } = run.request;
    if (target.digest !== undefined || target.tag === undefined) return undefined;
    const tag = target.tag;
    await this.#retry(
      'target',
      () =>
        this.#manifestsAlone(run, () =>
          this.#target.putManifest(target.registry, target.repository, tag, top, { signal: run.signal }),
        ),
      run,
    );
    return tag;
  }

  /** One manifest an index lists: its blobs (or, for a nested index, its manifests), then itself. */
  async #copyManifest(run: Run, digest: string, depth: number): Promise<void> {
    if (await this.#targetHas(run, digest)) return;
    const ref = { ...run.request.source, tag: undefined, digest };
    const manifest = await this.#retry(
      'source',
      () => this.#source.getManifest(ref, { signal: run.signal }),
      run,
    );
    const parsed = parseManifest(manifest.bytes, manifest.mediaType);
    if (parsed.kind === 'unsupported') throw unsupported(ref, parsed.reason);
    if (parsed.kind === 'index') {
      if (depth >= MAX_INDEX_DEPTH) throw unsupported(ref, 'indexes nested more than two deep');
      await Promise.all(parsed.manifests.map((m) => this.#copyManifest(run, m.digest, depth + 1)));
    } else {
      await Promise.all(parsed.blobs.map((b) => this.#blob(run, b)));
    }
    await this.#pushManifest(run, manifest);
  }

  async #targetHas(run: Run, digest: string): Promise<boolean> {
    const { target } = run.request;
    const ref = { ...target, tag: undefined, digest };
    const head = await this.#target.headManifest(ref, { signal: run.signal });
    if (head.ok) return true;
    if (head.error.code === 'REG_NOT_FOUND') return false;
    // Anything else (a registry refusing HEAD, a transient failure) is found out by the push itself.
    return false;
  }

  /**
   * Pushes a manifest by digest unless the target has it: the check and the put are one step under the
   * repository's manifest lock, so a manifest is never put again where it is (see push-ledger.ts).
   */
  async #pushManifest(run: Run, manifest: Manifest): Promise<void> {
    const { target } = run.request;
    const pushed = await this.#retry(
      'target',
      () =>
        this.#manifestsAlone(run, async (): Promise<RegistryResult<boolean>> => {
          if (await this.#targetHas(run, manifest.digest)) return { ok: true, value: false };
          const put = await this.#target.putManifest(
            target.registry,
            target.repository,
            manifest.digest,
            manifest,
            { signal: run.signal },
          );
          return put.ok ? { ok: true, value: true } : put;
        }),
      run,
    );
    if (!pushed) return;
    run.totals.manifestsPushed++;
    run.request.onEvent?.({
      kind: 'manifest',
      digest: manifest.digest,
      mediaType: manifest.mediaType,
      pushed: true,
    });
  }

  /** One manifest write (an attempt, not its retries) at a time per target repository, across copies. */
  #manifestsAlone<T>(run: Run, put: () => Promise<T>): Promise<T> {
    const { target } = run.request;
    return this.#ledger.alone(
      `manifests ${target.registry}/${target.repository}`,
      run.signal,
      cancelled,
      put,
    );
  }

  /** Each blob once per copy, and once at a time per target repository across copies. */
  #blob(run: Run, blob: Descriptor): Promise<void> {
    const known = run.blobs.get(blob.digest);
    if (known) return known;
    const { target, onEvent } = run.request;
    const key = `blob ${target.registry}/${target.repository}@${blob.digest}`;
    const work = this.#ledger
      .once(key, run.signal, cancelled, () => this.#withSlot(run, () => this.#copyBlob(run, blob)))
      .then((share) => {
        if (share === 'mine') return;
        run.totals.blobsPresent++;
        onEvent?.({ kind: 'blob', digest: blob.digest, size: blob.size, state: 'present' });
      });
    run.blobs.set(blob.digest, work);
    return work;
  }

  async #withSlot<T>(run: Run, work: () => Promise<T>): Promise<T> {
    const slots = this.#ledger.slots(run.request.target.registry, this.#perRegistry);
    const release = await slots.acquire(run.signal).catch(() => {
      throw cancelled();
    });
    try {
      return await work();
    } finally {
      release();
    }
  }

  /** HEAD at the target; else mount (same registry); else upload, the whole attempt retried. */
  async #copyBlob(run: Run, blob: Descriptor): Promise<void> {
    const { source, target, onEvent } = run.request;
    const has = await this.#retry(
      'target',
      () =>
        this.#target.hasBlob(target.registry, target.repository, blob.digest, {
          signal: run.signal,
          scope: run.pushScope,
        }),
      run,
    );
    if (has) {
      run.totals.blobsPresent++;
      onEvent?.({ kind: 'blob', digest: blob.digest, size: blob.size, state: 'present' });
      return;
    }
    const mount =
      source.registry === target.registry && source.repository !== target.repository
        ? { digest: blob.digest, from: source.repository }
        : undefined;
    for (let attempt = 1; ; attempt++) {
      const started = await this.#retry(
        'target',
        () => this.#target.startUpload(target.registry, target.repository, { signal: run.signal, mount }),
        run,
      );
      if (started.kind === 'mounted') {
        run.totals.blobsMounted++;
        onEvent?.({ kind: 'blob', digest: blob.digest, size: blob.size, state: 'mounted' });
        return;
      }
      const sent = await this.#upload(run, blob, started.session);
      if (sent.ok) break;
      if (sent.chunkBytes !== undefined) {
        // Smaller than what failed: a new attempt that is not a retry (the size goes down each time).
        const known = this.#chunkSizes.get(target.registry) ?? Number.POSITIVE_INFINITY;
        this.#chunkSizes.set(target.registry, Math.min(known, sent.chunkBytes));
        continue;
      }
      if (!sent.retryable || attempt >= this.#attempts) throw sent.error;
      await this.#backoff(run, attempt, sent.side, sent.cause);
    }
    run.totals.blobsUploaded++;
    run.totals.bytesUploaded += blob.size;
    onEvent?.({ kind: 'blob', digest: blob.digest, size: blob.size, state: 'uploaded' });
  }

  /** One upload attempt: the source blob streamed into the session, whole or in chunks. */
  async #upload(
    run: Run,
    blob: Descriptor,
    session: UploadSession,
  ): Promise<
    | { readonly ok: true }
    | {
        readonly ok: false;
        readonly error: CopyFailure;
        /** Which side failed, and its registry's error (for the retry event). */
        readonly side: 'source' | 'target';
        readonly cause: RegistryError | CopyError;
        readonly retryable: boolean;
        /** The target refused the body as too large: try again in chunks of this size. */
        readonly chunkBytes: number | undefined;
      }
  > {
    const { source } = run.request;
    const opened = await this.#retry(
      'source',
      () => this.#source.openBlob(source.registry, source.repository, blob.digest, { signal: run.signal }),
      run,
    );
    if (opened.size !== undefined && opened.size !== blob.size) {
      opened.body.destroy();
      throw new CopyFailure({
        code: 'CONTENT_MISMATCH',
        message: `${describe(source)}: blob ${blob.digest} is ${opened.size} bytes, its descriptor says ${blob.size}`,
      });
    }
    const meter = new Meter(blob, (bytes) =>
      run.request.onEvent?.({ kind: 'bytes', digest: blob.digest, bytes }),
    );
    opened.body.on('error', (err) => {
      meter.sourceBroken = true;
      meter.destroy(err);
    });
    const body = opened.body.pipe(meter);
    const learned = this.#chunkSizes.get(session.registry);
    const chunked = this.#alwaysChunked || learned !== undefined;
    const size = Math.max(learned ?? this.#chunkBytes, session.minChunkBytes ?? 0);
    const result = chunked
      ? await this.#uploadChunks(run, blob, session, body, size)
      : await this.#target.putBlob(session, blob.digest, blob.size, body, { signal: run.signal });
    if (!body.destroyed && !body.readableEnded) body.destroy();
    if (!opened.body.destroyed) opened.body.destroy();
    if (meter.failure !== undefined)
      return {
        ok: false,
        error: new CopyFailure(meter.failure),
        side: 'source',
        cause: meter.failure,
        retryable: false,
        chunkBytes: undefined,
      };
    if (result.ok) return { ok: true };
    const e = result.error;
    const chunkBytes = this.#nextChunkBytes(chunked ? size : undefined, e, session);
    // A body that broke on the source side is the source's failure.
    const side = meter.sourceBroken ? 'source' : 'target';
    return {
      ok: false,
      error: failure(side, e),
      side,
      cause: e,
      retryable: RETRYABLE.has(e.code) || meter.sourceBroken,
      chunkBytes,
    };
  }

  /**
   * The chunk size to try next after a target refused an upload as too large: chunks after a refused
   * monolithic upload (`size` undefined), half the size after a refused chunk; undefined: give up.
   */
  #nextChunkBytes(size: number | undefined, e: RegistryError, session: UploadSession): number | undefined {
    if (size === undefined)
      return e.code === 'REG_METHOD_REFUSED' || e.status === 413 ? this.#chunkBytes : undefined;
    const half = Math.floor(size / 2);
    return e.status === 413 && half >= Math.max(MIN_CHUNK_BYTES, session.minChunkBytes ?? 0)
      ? half
      : undefined;
  }

  /** Chunked upload: PATCH pieces of `size` bytes (the last one shorter), then the closing PUT. */
  async #uploadChunks(
    run: Run,
    blob: Descriptor,
    first: UploadSession,
    body: Readable,
    size: number,
  ): Promise<RegistryResult<void>> {
    let session = first;
    let offset = 0;
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    // Exactly `size` bytes (what a body limit allows), the rest kept for the next chunk.
    const flush = async (): Promise<RegistryResult<void>> => {
      const all = Buffer.concat(pending, pendingBytes);
      const chunk = all.subarray(0, size);
      const rest = all.subarray(chunk.length);
      pending = rest.length > 0 ? [rest] : [];
      pendingBytes = rest.length;
      const sent = await this.#target.patchBlob(session, offset, chunk, { signal: run.signal });
      if (!sent.ok) return sent;
      session = sent.value;
      offset += chunk.length;
      return { ok: true, value: undefined };
    };
    try {
      for await (const piece of body) {
        pending.push(piece as Buffer);
        pendingBytes += (piece as Buffer).length;
        while (pendingBytes >= size) {
          const sent = await flush();
          if (!sent.ok) return sent;
        }
      }
    } catch (err) {
      return {
        ok: false,
        error: { code: 'REG_UPLOAD_RESTART', outcome: 'Unreachable', message: String(err) },
      };
    }
    if (pendingBytes > 0) {
      const sent = await flush();
      if (!sent.ok) return sent;
    }
    return this.#target.putBlob(session, blob.digest, 0, Buffer.alloc(0), { signal: run.signal });
  }

  /** A registry operation, retried with backoff while its failure may pass. */
  async #retry<T>(side: 'source' | 'target', op: () => Promise<RegistryResult<T>>, run: Run): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const result = await op();
      if (result.ok) return result.value;
      if (run.signal.aborted) throw cancelled();
      if (!RETRYABLE.has(result.error.code) || attempt >= this.#attempts) throw failure(side, result.error);
      await this.#backoff(run, attempt, side, result.error);
    }
  }

  /** Waits before the next attempt (the registry's Retry-After, if longer), saying so in a retry event. */
  async #backoff(
    run: Run,
    attempt: number,
    side: 'source' | 'target',
    error: { readonly code: string; readonly message: string; readonly retryAfterMs?: number | undefined },
  ): Promise<void> {
    const exp = Math.min(this.#maxBackoffMs, this.#backoffMs * 2 ** (attempt - 1));
    const wait = Math.min(
      this.#maxBackoffMs * 6,
      Math.max(error.retryAfterMs ?? 0, exp * (0.5 + Math.random() / 2)),
    );
    run.request.onEvent?.({
      kind: 'retry',
      side,
      code: error.code,
      message: error.message,
      attempt,
      attempts: this.#attempts,
      waitMs: Math.round(wait),
    });
    await sleep(wait, undefined, { signal: run.signal }).catch(() => {
      throw cancelled();
    });
  }
}

/** Counts and hashes a blob on its way; refuses more bytes than the descriptor names, or other bytes. */
class Meter extends Transform {
  readonly #blob: Descriptor;
  readonly #hash;
  readonly #onBytes: (bytes: number) => void;
  #seen = 0;
  failure: CopyError | undefined;
  /** The source stream failed (as opposed to the target refusing). */
  sourceBroken = false;

  constructor(blob: Descriptor, onBytes: (bytes: number) => void) {
    super({ highWaterMark: 256 * 1024 });
    this.#blob = blob;
    this.#hash = createHash(blob.digest.startsWith('sha512:') ? 'sha512' : 'sha256');
    this.#onBytes = onBytes;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.#seen += chunk.length;
    if (this.#seen > this.#blob.size) {
      done(this.#mismatch(`more than ${this.#blob.size} bytes`));
      return;
    }
    this.#hash.update(chunk);
    this.#onBytes(chunk.length);
    done(null, chunk);
  }

  override _flush(done: TransformCallback): void {
    const algorithm = this.#blob.digest.slice(0, this.#blob.digest.indexOf(':'));
    const actual = `${algorithm}:${this.#hash.digest('hex')}`;
    if (this.#seen !== this.#blob.size) done(this.#mismatch(`${this.#seen} of ${this.#blob.size} bytes`));
    else if (actual !== this.#blob.digest) done(this.#mismatch(`content hashes to ${actual}`));
    else done();
  }

  #mismatch(detail: string): Error {
    this.failure = {
      code: 'CONTENT_MISMATCH',
      message: `blob ${this.#blob.digest} from the source: ${detail}`,
    };
    return new CopyFailure(this.failure);
  }
}

/** The platforms of the manifests that name one, as os/architecture[/variant]. */
function platformNames(manifests: readonly Descriptor[]): string[] {
  return manifests.flatMap((m) => (m.platform ? [formatPlatform(m.platform)] : []));
}

function describe(ref: ImageReference): string {
  return `${ref.registry}/${ref.repository}${ref.digest ? `@${ref.digest}` : `:${ref.tag ?? DEFAULT_TAG}`}`;
}

function cancelled(): CopyFailure {
  return new CopyFailure({ code: 'CANCELLED', message: 'the copy was cancelled' });
}

function unsupported(ref: ImageReference, reason: string): CopyFailure {
  return new CopyFailure({ code: 'UNSUPPORTED', message: `${describe(ref)}: ${reason}` });
}

/** Source failures say the source; target failures are refusals (final) or failures (may pass). */
function failure(side: 'source' | 'target', error: RegistryError): CopyFailure {
  if (side === 'source')
    return new CopyFailure({ code: 'SOURCE_FAILED', message: `source: ${error.message}`, registry: error });
  const code: CopyErrorCode =
    RETRYABLE.has(error.code) || error.code === 'REG_DEADLINE' ? 'TARGET_FAILED' : 'TARGET_REFUSED';
  return new CopyFailure({ code, message: `target: ${error.message}`, registry: error });
}
