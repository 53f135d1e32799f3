// A small Kubernetes API client: JSON requests with a deadline and a size cap, and watch streams read
// line by line with a bounded line length. Credentials come from KubeCredentials (config.ts's reader or
// a client-node KubeConfig: in-cluster service account, kubeconfig tokens or client certificates),
// applied on every request so that rotated tokens are picked up. Failures are KubeApiError with a
// stable code.
//
// Why not client-node's API client (kept for kubeconfigs config.ts does not read): importing it costs
// about 80 MiB of RSS in a webhook limited to 256 MiB (docs/decisions.md, "Kubernetes API").

import { Agent, type Dispatcher } from '../net/undici.ts';
import type { KubeCredentials } from './config.ts';
import { KubeApiError, KubeConfigError } from './errors.ts';

export { isStatus, KubeApiError, type KubeErrorCode } from './errors.ts';

interface RequestOptions {
  readonly body?: unknown;
  readonly contentType?: string;
  readonly query?: Readonly<Record<string, string | number | boolean | undefined>>;
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

interface KubeClientOptions {
  /** Deadline of one non-watch request. */
  readonly timeoutMs?: number;
  /** Largest response body (and watch line) accepted. */
  readonly maxBodyBytes?: number;
}

export interface KubeClient {
  /** One JSON request; resolves with the parsed body. */
  request(method: string, path: string, options?: RequestOptions): Promise<unknown>;
  /** A streaming GET (a watch): calls `onLine` per JSON line until the stream ends or `signal` aborts. */
  stream(
    path: string,
    query: RequestOptions['query'],
    signal: AbortSignal,
    onLine: (value: unknown) => void,
  ): Promise<void>;
  close(): Promise<void>;
}

function url(base: string, path: string, query: RequestOptions['query']): URL {
  const u = new URL(base.replace(/\/$/, '') + path);
  for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined) u.searchParams.set(k, String(v));
  return u;
}

async function readCapped(body: AsyncIterable<Uint8Array>, max: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.byteLength;
    if (size > max) throw new KubeApiError('KUBE_TOO_LARGE', `response larger than ${max} bytes`);
    chunks.push(Buffer.from(chunk));
  }
  return Buffer.concat(chunks);
}

function errorFromStatus(httpStatus: number, text: string, what: string): KubeApiError {
  let reason: string | undefined;
  let message = text.slice(0, 500);
  try {
    const status = JSON.parse(text) as { reason?: string; message?: string };
    reason = status.reason;
    if (status.message) message = status.message;
  } catch {
    // not a Status object; keep the text
  }
  return new KubeApiError('KUBE_HTTP', `${what}: ${httpStatus} ${message}`, { status: httpStatus, reason });
}

function transportError(err: unknown, what: string, signal: AbortSignal | undefined): KubeApiError {
  if (err instanceof KubeApiError) return err;
  const e = err as { name?: string; code?: string; message?: string };
  if (e.name === 'TimeoutError' || (e.name === 'AbortError' && !signal?.aborted))
    return new KubeApiError('KUBE_TIMEOUT', `${what}: timed out`, { cause: err });
  return new KubeApiError('KUBE_UNREACHABLE', `${what}: ${e.code ?? e.message ?? String(err)}`, {
    cause: err,
  });
}

function parseJson(text: string, failure: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new KubeApiError('KUBE_BAD_RESPONSE', failure, { cause: err });
  }
}

/** Splits a watch stream into one JSON value per line; a line may not grow past `maxBytes`. */
export class JsonLines {
  private pending = '';
  private readonly decoder = new TextDecoder();
  private readonly what: string;
  private readonly maxBytes: number;

  constructor(what: string, maxBytes: number) {
    this.what = what;
    this.maxBytes = maxBytes;
  }

  /** Calls `onLine` for each complete non-blank line in what has arrived so far. */
  push(chunk: Uint8Array, onLine: (value: unknown) => void): void {
    this.pending += this.decoder.decode(chunk, { stream: true });
    let nl = this.pending.indexOf('\n');
    while (nl >= 0) {
      const line = this.pending.slice(0, nl);
      this.pending = this.pending.slice(nl + 1);
      if (line.trim() !== '') onLine(parseJson(line, `${this.what}: a watch line is not JSON`));
      nl = this.pending.indexOf('\n');
    }
    if (this.pending.length > this.maxBytes)
      throw new KubeApiError(
        'KUBE_TOO_LARGE',
        `${this.what}: a watch event is larger than ${this.maxBytes} bytes`,
      );
  }
}

/**
 * The deadline of one request, and the caller's signal. AbortSignal.timeout takes whole milliseconds only
 * (a fraction throws a RangeError); callers compute what is left of a deadline from performance.now().
 */
function deadlineSignal(ms: number, signal: AbortSignal | undefined): AbortSignal {
  const deadline = AbortSignal.timeout(Math.max(1, Math.ceil(ms)));
  return signal ? AbortSignal.any([deadline, signal]) : deadline;
}

export function kubeClient(kubeConfig: KubeCredentials, options: KubeClientOptions = {}): KubeClient {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const maxBodyBytes = options.maxBodyBytes ?? 64 * 1024 * 1024;
  const cluster = kubeConfig.getCurrentCluster();
  if (!cluster) throw new KubeConfigError('the kubeconfig has no current cluster; set current-context');
  let agent: Dispatcher | undefined;

  // Headers are computed per request (tokens rotate); the TLS agent is made once and reused.
  async function prepare(
    contentType?: string,
  ): Promise<{ headers: Record<string, string>; dispatcher: Dispatcher }> {
    const opts: { headers?: Record<string, unknown>; ca?: unknown; cert?: unknown; key?: unknown } = {};
    await kubeConfig.applyToHTTPSOptions(opts as never);
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(opts.headers ?? {})) headers[k.toLowerCase()] = String(v);
    headers.accept = 'application/json';
    if (contentType !== undefined) headers['content-type'] = contentType;
    agent ??= new Agent({
      connect: {
        ...(opts.ca !== undefined ? { ca: opts.ca as string } : {}),
        ...(opts.cert !== undefined ? { cert: opts.cert as string } : {}),
        ...(opts.key !== undefined ? { key: opts.key as string } : {}),
        ...(cluster!.skipTLSVerify ? { rejectUnauthorized: false } : {}),
        timeout: timeoutMs,
      },
      headersTimeout: timeoutMs,
      bodyTimeout: 0,
    });
    return { headers, dispatcher: agent };
  }

  async function send(method: string, path: string, req: RequestOptions, signal: AbortSignal) {
    const body = req.body === undefined ? undefined : JSON.stringify(req.body);
    const contentType = body === undefined ? undefined : (req.contentType ?? 'application/json');
    const { headers, dispatcher } = await prepare(contentType);
    const target = url(cluster!.server, path, req.query);
    return dispatcher.request({
      origin: target.origin,
      path: target.pathname + target.search,
      method: method as Dispatcher.HttpMethod,
      headers,
      signal,
      body: body ?? null,
    });
  }

  return {
    async request(method, path, req = {}) {
      const what = `${method} ${path}`;
      try {
        const res = await send(method, path, req, deadlineSignal(req.timeoutMs ?? timeoutMs, req.signal));
        const text = (await readCapped(res.body, maxBodyBytes)).toString('utf8');
        if (res.statusCode >= 400) throw errorFromStatus(res.statusCode, text, what);
        return text === '' ? undefined : parseJson(text, `${what}: the answer is not JSON`);
      } catch (err) {
        throw transportError(err, what, req.signal);
      }
    },

    async stream(path, query, signal, onLine) {
      const what = `watch ${path}`;
      try {
        // Connect and headers are bounded by the agent's timeouts; the body lasts as long as the watch,
        // and the caller's watchdog aborts it when it goes quiet.
        const res = await send('GET', path, query === undefined ? {} : { query }, signal);
        if (res.statusCode >= 400) {
          const text = (await readCapped(res.body, 64 * 1024)).toString('utf8');
          throw errorFromStatus(res.statusCode, text, what);
        }
        const lines = new JsonLines(what, maxBodyBytes);
        for await (const chunk of res.body) lines.push(chunk, onLine);
      } catch (err) {
        if (signal.aborted) return;
        throw transportError(err, what, signal);
      }
    },

    async close() {
      await agent?.close();
    },
  };
}
