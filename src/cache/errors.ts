// The cache layer's codes in one list, and its error classes on core's PullmapError. The blob
// transport's codes are the registry layer's WIRE_ERRORS: its classifier is what reads them.
import { type ErrorCatalogue, PullmapError } from '../core/errors.ts';
import type { WireErrorCode } from '../registry/errors.ts';

export const CACHE_ERRORS = {
  CACHE_SETUP: 'a file the cache config names cannot be read or used (the message names the field)',
  CACHE_CLIENT_GONE: 'the client went away while its answer was being written',
  CACHE_STORE_WRITE_FAILED:
    "the store could not be written (disk full, permissions, I/O): the cache's own failure",
  CACHE_STORE_UNAVAILABLE:
    'the service behind the store failed (S3 unreachable, timing out, refusing the credentials)',
} as const satisfies ErrorCatalogue;

export type CacheErrorCode = keyof typeof CACHE_ERRORS;

/** A problem with the files a config names; the message says which field and what to do. */
export class CacheSetupError extends PullmapError<'CACHE_SETUP'> {
  override readonly name = 'CacheSetupError';

  constructor(message: string, options?: ErrorOptions) {
    super('CACHE_SETUP', message, options);
  }
}

/** The client went away while bytes were being written to it. */
export class ClientGone extends PullmapError<'CACHE_CLIENT_GONE'> {
  override readonly name = 'ClientGone';

  constructor(options?: ErrorOptions) {
    super('CACHE_CLIENT_GONE', 'the client went away', options);
  }
}

/** The store could not be written (disk full, permissions, I/O): the cache's own failure, not upstream's. */
export class StoreWriteError extends PullmapError<'CACHE_STORE_WRITE_FAILED'> {
  override readonly name = 'StoreWriteError';
  /** The system error code (ENOSPC, EACCES, EIO, ...), when there was one. */
  readonly systemCode: string | undefined;

  constructor(what: string, err: unknown) {
    const systemCode = (err as NodeJS.ErrnoException | undefined)?.code;
    super(
      'CACHE_STORE_WRITE_FAILED',
      `cannot write to the cache store (${what}): ${err instanceof Error ? err.message : String(err)}`,
      { cause: err },
    );
    this.systemCode = typeof systemCode === 'string' ? systemCode : undefined;
  }

  /** The filesystem is full (or the quota used up): a capacity problem, unlike a read-only store. */
  get noSpace(): boolean {
    return this.systemCode === 'ENOSPC' || this.systemCode === 'EDQUOT';
  }
}

/**
 * The store could not be read or written because the service behind it failed (S3 unreachable, timing
 * out, refusing the credentials): the cache's own failure; clients get a 503 naming it.
 */
export class StoreUnavailableError extends PullmapError<'CACHE_STORE_UNAVAILABLE'> {
  override readonly name = 'StoreUnavailableError';

  constructor(message: string, options?: ErrorOptions) {
    super('CACHE_STORE_UNAVAILABLE', message, options);
  }
}

/** A failure of the blob transport itself; `code` says which (classifyNetworkError reads it). */
export class WireError<Code extends WireErrorCode = WireErrorCode> extends PullmapError<Code> {
  override readonly name: string = 'WireError';
}

/** The proxy refused the tunnel or did not answer like one. */
export class ProxyError extends WireError<'WIRE_PROXY_REFUSED' | 'WIRE_PROXY_PROTOCOL'> {
  override readonly name = 'ProxyError';
  /** The proxy's status, when it answered (407: it wants credentials). */
  readonly status: number | undefined;

  constructor(code: ProxyError['code'], message: string, status?: number) {
    super(code, message);
    this.status = status;
  }
}

/** The answer is not HTTP/1.1 as RFC 9112 frames it. */
export class ProtocolError extends WireError<'WIRE_HTTP_PROTOCOL'> {
  override readonly name = 'ProtocolError';

  constructor(message: string) {
    super('WIRE_HTTP_PROTOCOL', message);
  }
}
