// Every way a registry call can fail, with a stable code and the probe outcome it stands for.
// Callers branch on `code` or `outcome`; `message` is for people.
import type { ProbeOutcome } from '../core/facts.ts';

export type RegistryErrorCode =
  | 'REG_NOT_FOUND' // 404: the registry is up and has no such manifest, blob or repository
  | 'REG_UNAUTHORIZED' // 401 even after answering the challenge (or no credentials to answer it)
  | 'REG_FORBIDDEN' // 403
  | 'REG_AUTH_REFUSED' // the token server refused our credentials (401/403)
  | 'REG_AUTH_UNSUPPORTED' // a challenge we cannot answer (unknown scheme, no realm)
  | 'REG_RATE_LIMITED' // 429 from the registry or its token server
  | 'REG_CONNECTION_FAILED' // refused, reset, closed before an answer
  | 'REG_DNS_FAILED' // the host name does not resolve
  | 'REG_TLS_FAILED' // handshake or certificate verification failed
  | 'REG_SERVER_ERROR' // 5xx
  | 'REG_TIMEOUT' // our own per-request timeout (connect, headers, body or overall)
  | 'REG_DEADLINE' // the caller's signal ended the wait
  | 'REG_BUSY' // too many requests already queued for this host
  | 'REG_METHOD_REFUSED' // 405 or 501: the registry does not serve this method here (HEAD, for some)
  | 'REG_UNEXPECTED_STATUS' // a status the distribution API does not give here
  | 'REG_INVALID_RESPONSE' // headers or body that are not the distribution API's
  | 'REG_TOO_LARGE' // a body over the configured bound
  | 'REG_DIGEST_MISMATCH' // the content does not hash to the digest asked for or announced
  | 'REG_TOO_MANY_REDIRECTS'
  | 'REG_INSECURE_REFUSED' // would send credentials or fetch over plain HTTP where that is not allowed
  | 'REG_BAD_INPUT' // the caller's input (host, repository, digest) cannot be sent
  | 'REG_UPLOAD_RESTART'; // a streamed upload was cut short (token refused midway, session lost): start it again

export interface RegistryError {
  readonly code: RegistryErrorCode;
  readonly outcome: ProbeOutcome;
  readonly message: string;
  /** HTTP status of the answer that decided the failure, when there was one. */
  readonly status?: number | undefined;
  /** From Retry-After on 429 and 503, in milliseconds. */
  readonly retryAfterMs?: number | undefined;
  /** The underlying system or undici error code (ECONNREFUSED, UND_ERR_HEADERS_TIMEOUT, ...). */
  readonly cause?: string | undefined;
}

export type RegistryResult<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly error: RegistryError };

const OUTCOMES: Readonly<Record<RegistryErrorCode, ProbeOutcome>> = {
  REG_NOT_FOUND: 'NotFound',
  REG_UNAUTHORIZED: 'Unauthorized',
  REG_FORBIDDEN: 'Unauthorized',
  REG_AUTH_REFUSED: 'Unauthorized',
  REG_AUTH_UNSUPPORTED: 'Unauthorized',
  REG_RATE_LIMITED: 'RateLimited',
  REG_CONNECTION_FAILED: 'Unreachable',
  REG_DNS_FAILED: 'Unreachable',
  REG_TLS_FAILED: 'Unreachable',
  REG_SERVER_ERROR: 'Unreachable',
  REG_TIMEOUT: 'Timeout',
  REG_DEADLINE: 'Timeout',
  REG_BUSY: 'Timeout',
  REG_METHOD_REFUSED: 'Invalid',
  REG_UNEXPECTED_STATUS: 'Invalid',
  REG_INVALID_RESPONSE: 'Invalid',
  REG_TOO_LARGE: 'Invalid',
  REG_DIGEST_MISMATCH: 'Invalid',
  REG_TOO_MANY_REDIRECTS: 'Invalid',
  REG_INSECURE_REFUSED: 'Invalid',
  REG_BAD_INPUT: 'Invalid',
  REG_UPLOAD_RESTART: 'Unreachable',
};

export function outcomeOf(code: RegistryErrorCode): ProbeOutcome {
  return OUTCOMES[code];
}

/** Thrown inside the client and turned into a `RegistryResult` at its public boundary. */
export class RegistryFailure extends Error {
  readonly code: RegistryErrorCode;
  readonly status: number | undefined;
  readonly retryAfterMs: number | undefined;
  readonly causeCode: string | undefined;

  constructor(
    code: RegistryErrorCode,
    message: string,
    extra: {
      status?: number | undefined;
      retryAfterMs?: number | undefined;
      cause?: string | undefined;
    } = {},
  ) {
    super(message);
    this.name = 'RegistryFailure';
    this.code = code;
    this.status = extra.status;
    this.retryAfterMs = extra.retryAfterMs;
    this.causeCode = extra.cause;
  }

  toError(): RegistryError {
    return {
      code: this.code,
      outcome: outcomeOf(this.code),
      message: this.message,
      ...(this.status === undefined ? {} : { status: this.status }),
      ...(this.retryAfterMs === undefined ? {} : { retryAfterMs: this.retryAfterMs }),
      ...(this.causeCode === undefined ? {} : { cause: this.causeCode }),
    };
  }
}

// OpenSSL verification results as Node reports them in `err.code`.
const TLS_VERIFY_CODES: ReadonlySet<string> = new Set([
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_DECRYPT_CERT_SIGNATURE',
  'UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY',
  'CERT_SIGNATURE_FAILURE',
  'CERT_NOT_YET_VALID',
  'CERT_HAS_EXPIRED',
  'CERT_REVOKED',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'INVALID_CA',
  'INVALID_PURPOSE',
  'PATH_LENGTH_EXCEEDED',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'HOSTNAME_MISMATCH',
  'EPROTO',
]);

const CONNECTION_CODES: ReadonlySet<string> = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'EPIPE',
  'EADDRNOTAVAIL',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'UND_ERR_DESTROYED',
  'UND_ERR_RES_CONTENT_LENGTH_MISMATCH',
  // The cache's blob transport (src/cache/transport/wire.ts).
  'PULLMAP_CLOSED_EARLY',
  'PULLMAP_CANCELLED',
]);

const TIMEOUT_CODES: ReadonlySet<string> = new Set([
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'ETIMEDOUT',
  'PULLMAP_CONNECT_TIMEOUT',
  'PULLMAP_HEADERS_TIMEOUT',
  'PULLMAP_BODY_TIMEOUT',
]);

function errorCode(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && code.length > 0) return code;
  // Happy Eyeballs gives an AggregateError; undici may wrap the real error as `cause`.
  const inner = (err as { errors?: unknown }).errors;
  if (Array.isArray(inner)) {
    for (const e of inner) {
      const c = errorCode(e);
      if (c) return c;
    }
  }
  const cause = (err as { cause?: unknown }).cause;
  return cause === err ? undefined : errorCode(cause);
}

/** Turns a thrown network error into a typed failure, by its `code` only (never by message). */
export function classifyNetworkError(err: unknown, where: string): RegistryFailure {
  if (err instanceof RegistryFailure) return err;
  const code = errorCode(err);
  const text = err instanceof Error ? err.message : String(err);
  if (code === undefined)
    return new RegistryFailure('REG_CONNECTION_FAILED', `${where}: ${text}`, { cause: undefined });
  const extra = { cause: code };
  if (TIMEOUT_CODES.has(code))
    return new RegistryFailure('REG_TIMEOUT', `${where}: timed out (${code})`, extra);
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'EAI_FAIL' || code === 'EAI_NONAME')
    return new RegistryFailure('REG_DNS_FAILED', `${where}: host name does not resolve (${code})`, extra);
  if (TLS_VERIFY_CODES.has(code) || code.startsWith('ERR_TLS_') || code.startsWith('ERR_SSL_'))
    return new RegistryFailure('REG_TLS_FAILED', `${where}: TLS failed (${code}): ${text}`, extra);
  if (code.startsWith('HPE_') || code === 'PULLMAP_HTTP_PROTOCOL')
    return new RegistryFailure('REG_INVALID_RESPONSE', `${where}: not an HTTP answer (${code})`, extra);
  if (code === 'UND_ERR_RES_EXCEEDED_MAX_SIZE')
    return new RegistryFailure('REG_TOO_LARGE', `${where}: answer too large`, extra);
  if (CONNECTION_CODES.has(code))
    return new RegistryFailure('REG_CONNECTION_FAILED', `${where}: connection failed (${code})`, extra);
  return new RegistryFailure('REG_CONNECTION_FAILED', `${where}: ${code}: ${text}`, extra);
}
