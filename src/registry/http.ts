// One HTTP exchange with a registry or a host it redirects to: redirects followed by hand so that
// Authorization and request bodies (the token form) never leave the registry's origin, bodies read with a size bound, and non-success
// statuses turned into typed failures.
import type { IncomingHttpHeaders } from 'node:http';
import { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { isLoopbackHost } from './endpoint.ts';
import { RegistryFailure } from './errors.ts';

const MAX_REDIRECTS = 5;
/** Error bodies are read only for a short explanation. */
export const ERROR_BODY_LIMIT = 16 * 1024;

export interface Exchange {
  readonly statusCode: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: Readable & { dump(opts?: { limit: number }): Promise<void> };
  /** Where the answer finally came from, after redirects. */
  readonly url: URL;
}

export type HttpMethod = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH';
/** A request body: text, bytes, or a stream sent once (a stream is never replayed, so never redirected). */
export type RequestBody = string | Buffer | Readable;

/** One request of an exchange (one hop of its redirects). */
interface HopRequest {
  readonly method: HttpMethod;
  readonly url: URL;
  readonly headers: Record<string, string>;
  readonly body: RequestBody | undefined;
  readonly signal: AbortSignal;
  readonly timeoutMs: number;
}

/**
 * Sends one hop: through an undici pool, or on a connection of its own (the cache's blob transport,
 * whose answers carry their connection: hence the type parameter).
 */
export type Hop<E extends Exchange = Exchange> = (request: HopRequest) => Promise<E>;

export function undiciHop(dispatcher: Dispatcher): Hop {
  return async (request) => {
    const res = await dispatcher.request({
      origin: request.url.origin,
      path: request.url.pathname + request.url.search,
      method: request.method,
      headers: request.headers,
      body: request.body ?? null,
      signal: request.signal,
      headersTimeout: request.timeoutMs,
      bodyTimeout: request.timeoutMs,
      // undici closes the connection after every HEAD unless told otherwise; registries send no body.
      reset: false,
    });
    return { statusCode: res.statusCode, headers: res.headers, body: res.body, url: request.url };
  };
}

interface ExchangeRequest {
  readonly method: HttpMethod;
  readonly url: URL;
  readonly headers: Readonly<Record<string, string>>;
  /** Sent only to `authOrigin` (the registry), never to a host a redirect leads to. */
  readonly authorization?: string | undefined;
  readonly authOrigin: string;
  /** Sent only to the origin of `url`: a 307/308 to another origin is refused (REG_INSECURE_REFUSED). */
  readonly body?: RequestBody | undefined;
  readonly signal: AbortSignal;
  readonly timeoutMs: number;
  /** Whether a redirect may lead from HTTPS to plain HTTP (insecure or loopback registries only). */
  readonly allowPlainRedirect: boolean;
}

/** The first value of a header (undici gives arrays for repeated headers). */
export function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** The headers of one hop: the Authorization goes only to the registry's own origin. */
function hopHeaders(request: ExchangeRequest, url: URL): Record<string, string> {
  const headers: Record<string, string> = { ...request.headers };
  if (request.authorization !== undefined && url.origin === request.authOrigin)
    headers['authorization'] = request.authorization;
  return headers;
}

/** The Location of a redirect to follow (a 3xx other than 304); undefined for any other answer. */
function redirectLocation(res: Exchange): string | undefined {
  if (res.statusCode < 300 || res.statusCode >= 400 || res.statusCode === 304) return undefined;
  return header(res.headers, 'location');
}

/** Where a redirect leads; refused when the location is malformed, not HTTP(S), or leaves HTTPS without leave. */
function redirectTarget(location: string, from: URL, request: ExchangeRequest): URL {
  let next: URL;
  try {
    next = new URL(location, from);
  } catch {
    throw new RegistryFailure(
      'REG_INVALID_RESPONSE',
      `redirect to an invalid location ${JSON.stringify(location)}`,
    );
  }
  if (next.protocol !== 'https:' && next.protocol !== 'http:')
    throw new RegistryFailure('REG_INVALID_RESPONSE', `redirect to unsupported scheme ${next.protocol}`);
  if (
    from.protocol === 'https:' &&
    next.protocol === 'http:' &&
    !request.allowPlainRedirect &&
    !isLoopbackHost(next.host)
  )
    throw new RegistryFailure(
      'REG_INSECURE_REFUSED',
      `refusing redirect from HTTPS to plain HTTP (${next.origin})`,
    );
  return next;
}

/** The method and body of the request a redirect asks for. */
function redirectedRequest(
  status: number,
  method: HttpMethod,
  body: RequestBody | undefined,
): { method: HttpMethod; body: RequestBody | undefined } {
  // 303 (and, as browsers do, 301/302 for POST) continue as GET without a body.
  if (status === 303 || (method === 'POST' && (status === 301 || status === 302)))
    return { method: method === 'HEAD' ? method : 'GET', body: undefined };
  return { method, body };
}

export async function exchange<E extends Exchange>(send: Hop<E>, request: ExchangeRequest): Promise<E> {
  let url = request.url;
  let method = request.method;
  let body = request.body;
  for (let hop = 0; ; hop++) {
    const headers = hopHeaders(request, url);
    const res = await send({
      method,
      url,
      headers,
      body,
      signal: request.signal,
      timeoutMs: request.timeoutMs,
    });
    const location = redirectLocation(res);
    if (location === undefined) return res;
    await discard(res.body);
    if (body instanceof Readable)
      throw new RegistryFailure(
        'REG_INVALID_RESPONSE',
        `${method} ${request.url.pathname}: redirect ${res.statusCode} for a streamed body, which cannot be sent twice`,
        { status: res.statusCode },
      );
    if (hop >= MAX_REDIRECTS)
      throw new RegistryFailure(
        'REG_TOO_MANY_REDIRECTS',
        `more than ${MAX_REDIRECTS} redirects from ${request.url}`,
      );
    const next = redirectTarget(location, url, request);
    ({ method, body } = redirectedRequest(res.statusCode, method, body));
    // A body (the token form: username and password) goes only to the origin it was written for; a
    // 307/308 elsewhere would re-send it, so it is refused rather than followed.
    if (body !== undefined && next.origin !== request.url.origin)
      throw new RegistryFailure(
        'REG_INSECURE_REFUSED',
        `refusing redirect of a ${method} with a body from ${request.url.origin} to another origin (${next.origin}): it would re-send the credentials`,
      );
    url = next;
  }
}

/** Destroys a body we stop reading; undici reports that as an error event nobody must see. */
export function abandon(body: Readable): void {
  body.on('error', () => {});
  body.destroy();
}

/** Drops a body without destroying the connection when it is small; destroys it when it is not. */
export async function discard(body: Exchange['body']): Promise<void> {
  try {
    await body.dump({ limit: ERROR_BODY_LIMIT });
  } catch {
    // The connection is gone either way; nothing to report.
  }
}

/** Reads a whole body, failing with REG_TOO_LARGE as soon as it passes `limit` bytes. */
export async function readBounded(body: Readable, limit: number, what: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    const buf = chunk as Buffer;
    size += buf.length;
    if (size > limit) {
      abandon(body);
      throw new RegistryFailure('REG_TOO_LARGE', `${what} is larger than ${limit} bytes`);
    }
    chunks.push(buf);
  }
  return Buffer.concat(chunks, size);
}

/** Retry-After as delay-seconds or an HTTP date, in milliseconds from `now`. */
export function parseRetryAfter(value: string | undefined, now: number): number | undefined {
  if (value === undefined) return undefined;
  const trimmed = value.trim();
  if (/^\d{1,9}$/.test(trimmed)) return Number(trimmed) * 1000;
  // Only the IMF-fixdate form ("Sun, 06 Nov 1994 08:49:37 GMT"): Date.parse accepts far too much.
  if (!/^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/.test(trimmed)) return undefined;
  const date = Date.parse(trimmed);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - now);
}

/** The distribution API's error code from an error body ({"errors":[{"code":"MANIFEST_UNKNOWN"}]}). */
async function distributionErrorCode(body: Exchange['body'], method: string): Promise<string | undefined> {
  if (method === 'HEAD') return undefined;
  try {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of body) {
      chunks.push(chunk as Buffer);
      size += (chunk as Buffer).length;
      if (size >= ERROR_BODY_LIMIT) break;
    }
    if (size >= ERROR_BODY_LIMIT) abandon(body);
    const doc = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { errors?: { code?: unknown }[] };
    const code = doc.errors?.[0]?.code;
    return typeof code === 'string' ? code : undefined;
  } catch {
    return undefined;
  }
}

/** The typed failure for an answer that is not a success (the body is consumed). */
export async function failureFromStatus(
  res: Exchange,
  method: string,
  what: string,
  now: number,
): Promise<RegistryFailure> {
  const status = res.statusCode;
  const apiCode = await distributionErrorCode(res.body, method);
  if (method !== 'HEAD') await discard(res.body);
  const suffix = apiCode === undefined ? '' : ` (${apiCode})`;
  const extra = { status };
  if (status === 404) return new RegistryFailure('REG_NOT_FOUND', `${what}: not found${suffix}`, extra);
  if (status === 401) return new RegistryFailure('REG_UNAUTHORIZED', `${what}: unauthorized${suffix}`, extra);
  if (status === 403) return new RegistryFailure('REG_FORBIDDEN', `${what}: forbidden${suffix}`, extra);
  const retryAfterMs = parseRetryAfter(header(res.headers, 'retry-after'), now);
  if (status === 429) {
    const wait = retryAfterMs === undefined ? '' : `, retry after ${Math.ceil(retryAfterMs / 1000)} s`;
    return new RegistryFailure('REG_RATE_LIMITED', `${what}: rate limited${wait}`, { status, retryAfterMs });
  }
  // Before the 5xx rule: 501 Not Implemented, like 405, is about the method, not the server's health.
  if (status === 405 || status === 501)
    return new RegistryFailure(
      'REG_METHOD_REFUSED',
      `${what}: ${method} refused (${status})${suffix}`,
      extra,
    );
  if (status >= 500)
    return new RegistryFailure('REG_SERVER_ERROR', `${what}: server error ${status}${suffix}`, {
      status,
      retryAfterMs,
    });
  if (status >= 300 && status < 400)
    return new RegistryFailure(
      'REG_INVALID_RESPONSE',
      `${what}: redirect ${status} without a location`,
      extra,
    );
  return new RegistryFailure('REG_UNEXPECTED_STATUS', `${what}: unexpected status ${status}${suffix}`, extra);
}
