// The registry layer's codes in one list (every way a registry call can fail, a credential source can be
// unusable, or a transport can break underneath), and its error on core's PullmapError. Callers branch
// on `code` or `outcome`; `message` is for people.
import { type ErrorCatalogue, PullmapError, type Result } from '../core/errors.ts';
import type { ProbeOutcome } from '../core/facts.ts';

export const REGISTRY_ERRORS = {
  REG_NOT_FOUND: '404: the registry is up and has no such manifest, blob or repository',
  REG_UNAUTHORIZED: '401 even after answering the challenge (or no credentials to answer it)',
  REG_FORBIDDEN: '403: the registry refuses these credentials this repository',
  REG_AUTH_REFUSED: 'the token server refused our credentials (401/403)',
  REG_AUTH_UNSUPPORTED: 'a challenge pullmap cannot answer (unknown scheme, no realm)',
  REG_RATE_LIMITED: '429 from the registry or its token server',
  REG_CONNECTION_FAILED: 'refused, reset, or closed before an answer',
  REG_DNS_FAILED: 'the host name does not resolve',
  REG_TLS_FAILED: 'the TLS handshake or certificate verification failed',
  REG_SERVER_ERROR: 'the registry answered 5xx',
  REG_TIMEOUT: 'our own per-request timeout (connect, headers, body or overall)',
  REG_DEADLINE: "the caller's signal ended the wait",
  REG_BUSY: 'too many requests already queued for this host',
  REG_METHOD_REFUSED: '405 or 501: the registry does not serve this method here (HEAD, for some)',
  REG_UNEXPECTED_STATUS: 'a status the distribution API does not give here',
  REG_INVALID_RESPONSE: "headers or body that are not the distribution API's",
  REG_TOO_LARGE: 'a body over the configured bound',
  REG_DIGEST_MISMATCH: 'the content does not hash to the digest asked for or announced',
  REG_TOO_MANY_REDIRECTS: 'more redirects than a registry needs',
  REG_INSECURE_REFUSED: 'would send credentials or fetch over plain HTTP where that is not allowed',
  REG_BAD_INPUT: "the caller's input (host, repository, digest) cannot be sent",
  REG_UPLOAD_RESTART: 'a streamed upload was cut short (token refused midway, session lost): start it again',
} as const satisfies ErrorCatalogue;

/** Why a docker config.json, .dockercfg or pull secret cannot be used (src/registry/credentials.ts). */
export const CREDENTIAL_ERRORS = {
  CRED_TOO_LARGE: 'the credential source is over the size cap',
  CRED_JSON_INVALID: 'the credential source is not JSON',
  CRED_SHAPE_INVALID: 'a field has the wrong type or is missing',
  CRED_BASE64_INVALID: 'an auth or secret value is not base64',
  CRED_AUTH_FORMAT: 'an auth value is not "user:password"',
  CRED_SECRET_TYPE: 'the Secret is not of a docker config type',
  CRED_SECRET_DATA_MISSING: "the Secret lacks its type's data key",
} as const satisfies ErrorCatalogue;

/**
 * Codes the cache's own blob transport (src/cache/transport) gives its errors; classifyNetworkError
 * reads them as it reads undici's and the system's. Listed here because the classifier owns them.
 */
export const WIRE_ERRORS = {
  WIRE_CONNECT_TIMEOUT: 'no connection within the connect timeout',
  WIRE_HEADERS_TIMEOUT: 'no answer head within the timeout',
  WIRE_BODY_TIMEOUT: 'no body bytes within the timeout',
  WIRE_CANCELLED: 'the body was cancelled by its consumer',
  WIRE_CLOSED_EARLY: 'the connection closed before the body was complete',
  WIRE_HTTP_PROTOCOL: 'the answer is not HTTP/1.1 as RFC 9112 frames it',
  WIRE_PROXY_REFUSED: 'the proxy refused the CONNECT tunnel',
  WIRE_PROXY_PROTOCOL: 'the proxy did not answer CONNECT like a proxy',
  // A bad request header gets the code node:http gives the same refusal.
  ERR_INVALID_HTTP_TOKEN: 'a request header name is not a token',
  ERR_INVALID_CHAR: 'a request header value holds a line break',
} as const satisfies ErrorCatalogue;

export type RegistryErrorCode = keyof typeof REGISTRY_ERRORS;
export type CredentialErrorCode = keyof typeof CREDENTIAL_ERRORS;
export type WireErrorCode = keyof typeof WIRE_ERRORS;

/**
 * A failed registry call as the client returns it: plain data, kept in caches and answers, so it holds
 * no thrown error (which may reference a socket); the thrown RegistryFailure carries that as `cause`.
 */
export interface RegistryError {
  readonly code: RegistryErrorCode;
  readonly outcome: ProbeOutcome;
  readonly message: string;
  /** HTTP status of the answer that decided the failure, when there was one. */
  readonly status?: number | undefined;
  /** From Retry-After on 429 and 503, in milliseconds. */
  readonly retryAfterMs?: number | undefined;
  /** The underlying system, undici or transport code (ECONNREFUSED, UND_ERR_HEADERS_TIMEOUT, ...). */
  readonly systemCode?: string | undefined;
}

export type RegistryResult<T> = Result<T, RegistryError>;

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
export class RegistryFailure extends PullmapError<RegistryErrorCode> {
  override readonly name = 'RegistryFailure';
  readonly status: number | undefined;
  readonly retryAfterMs: number | undefined;
  readonly systemCode: string | undefined;

  constructor(
    code: RegistryErrorCode,
    message: string,
    extra: {
      status?: number | undefined;
      retryAfterMs?: number | undefined;
      systemCode?: string | undefined;
      cause?: unknown;
    } = {},
  ) {
    super(code, message, extra.cause === undefined ? undefined : { cause: extra.cause });
    this.status = extra.status;
    this.retryAfterMs = extra.retryAfterMs;
    this.systemCode = extra.systemCode;
  }

  /** A returned RegistryError thrown again (its cause is not kept in the value, so it has none). */
  static from(error: RegistryError): RegistryFailure {
    return new RegistryFailure(error.code, error.message, error);
  }

  toError(): RegistryError {
    return {
      code: this.code,
      outcome: outcomeOf(this.code),
      message: this.message,
      ...(this.status === undefined ? {} : { status: this.status }),
      ...(this.retryAfterMs === undefined ? {} : { retryAfterMs: this.retryAfterMs }),
      ...(this.systemCode === undefined ? {} : { systemCode: this.systemCode }),
    };
  }
}

/** A credential source that cannot be used: `field` is the offending path, the message the fix. */
export class CredentialParseError extends PullmapError<CredentialErrorCode> {
  override readonly name = 'CredentialParseError';
  readonly field: string;

  constructor(code: CredentialErrorCode, field: string, message: string) {
    super(code, message);
    this.field = field;
  }
}

/** A semaphore's queue is full (src/registry/semaphore.ts): the host is busy. */
export class QueueFullError extends PullmapError<'REG_BUSY'> {
  override readonly name = 'QueueFullError';

  constructor(message = 'queue full') {
    super('REG_BUSY', message);
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
  'WIRE_CLOSED_EARLY',
  'WIRE_CANCELLED',
]);

const TIMEOUT_CODES: ReadonlySet<string> = new Set([
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'ETIMEDOUT',
  'WIRE_CONNECT_TIMEOUT',
  'WIRE_HEADERS_TIMEOUT',
  'WIRE_BODY_TIMEOUT',
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
    return new RegistryFailure('REG_CONNECTION_FAILED', `${where}: ${text}`, { cause: err });
  const extra = { systemCode: code, cause: err };
  if (TIMEOUT_CODES.has(code))
    return new RegistryFailure('REG_TIMEOUT', `${where}: timed out (${code})`, extra);
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'EAI_FAIL' || code === 'EAI_NONAME')
    return new RegistryFailure('REG_DNS_FAILED', `${where}: host name does not resolve (${code})`, extra);
  if (TLS_VERIFY_CODES.has(code) || code.startsWith('ERR_TLS_') || code.startsWith('ERR_SSL_'))
    return new RegistryFailure('REG_TLS_FAILED', `${where}: TLS failed (${code}): ${text}`, extra);
  if (code.startsWith('HPE_') || code === 'WIRE_HTTP_PROTOCOL')
    return new RegistryFailure('REG_INVALID_RESPONSE', `${where}: not an HTTP answer (${code})`, extra);
  if (code === 'UND_ERR_RES_EXCEEDED_MAX_SIZE')
    return new RegistryFailure('REG_TOO_LARGE', `${where}: answer too large`, extra);
  if (CONNECTION_CODES.has(code))
    return new RegistryFailure('REG_CONNECTION_FAILED', `${where}: connection failed (${code})`, extra);
  return new RegistryFailure('REG_CONNECTION_FAILED', `${where}: ${code}: ${text}`, extra);
}
