// The HTTPS front of `pullmap serve`: AdmissionReview endpoints plus /healthz, /readyz and /metrics, and
// optionally a separate health listener for the probes. Every request is bounded: body size, value count
// and nesting before parsing, bytes held across requests, header, handshake and request timeouts, and a
// cap on connections. A bad request gets a JSON error naming what is wrong (a refused review, the failure
// policy's answer); nothing a client sends can crash or stall the server.

import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  type AdmissionRequest,
  type AdmissionResponse,
  allow,
  parseReview,
  reviewJson,
} from '../core/api/admission.ts';
import type { Logger } from '../observe/log.ts';
import { type Counter, METRICS_CONTENT_TYPE, type MetricsRegistry } from '../observe/metrics.ts';
import { BodyScan, type ScanLimits } from './body-scan.ts';
import { HttpError } from './errors.ts';
import {
  closeNow,
  firstRequest,
  healthServer,
  listen,
  mainServer,
  type TlsFiles,
  urlOf,
} from './listener.ts';

/** Answers a review; synchronously when it can (the common, cached case). */
export interface ReviewHandler {
  (request: AdmissionRequest): AdmissionResponse | Promise<AdmissionResponse>;
  /**
   * Answers a review refused before it was parsed (too large, too complex, server busy) as the failure
   * policy says. Absent: allowed unchanged with a warning.
   */
  readonly refuse?: (uid: string, reason: RefusalReason, message: string) => AdmissionResponse;
}

interface HttpOptions {
  readonly host: string;
  readonly port: number;
  /** Serve HTTPS from these files; undefined serves plain HTTP (the command allows that on loopback only). */
  readonly tls: TlsFiles | undefined;
  /** POST paths answering AdmissionReviews. */
  readonly reviews: ReadonlyMap<string, ReviewHandler>;
  readonly maxBodyBytes: number;
  /** Bytes of review bodies held at once across requests; a review that would go over is refused. */
  readonly maxInflightBytes: number;
  /** Whether the maps are loaded (readiness also drops while shutting down). */
  readonly ready: () => boolean;
  readonly metrics: MetricsRegistry;
  readonly logger: Logger;
  readonly maxConnections?: number;
  /** A plain-HTTP listener for /healthz and /readyz alone, which slow or flooding clients of the main one cannot starve. */
  readonly health?: { readonly host: string; readonly port: number } | undefined;
}

interface HttpServer {
  readonly url: string;
  readonly port: number;
  /** The health listener's URL, when there is one. */
  readonly healthUrl: string | undefined;
  /** Reviews being answered now. */
  inflight(): number;
  /** Drops readiness, stops accepting, lets in-flight reviews finish (up to `graceMs`), then closes. */
  shutdown(options: { delayMs: number; graceMs: number }): Promise<void>;
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  sendText(res, status, JSON.stringify(body), 'application/json');
}

function sendText(
  res: ServerResponse,
  status: number,
  body: string,
  type = 'text/plain; charset=utf-8',
): void {
  // Headers as a flat list: Node writes them as they are, without walking an object.
  res.writeHead(status, ['content-type', type, 'content-length', String(Buffer.byteLength(body))]);
  res.end(body);
}

/** Why a review was refused before it was parsed; the metric's reason label. */
export type RefusalReason = 'too_large' | 'too_complex' | 'busy';

const REFUSAL_CODES = {
  too_large: 'SERVE_TOO_LARGE',
  too_complex: 'SERVE_TOO_COMPLEX',
  busy: 'SERVE_BUSY',
} as const satisfies Record<RefusalReason, HttpError['code']>;

/** A body refused before parsing; answered as a review when its uid was found, else by answerOf. */
class Refusal extends HttpError {
  override readonly name = 'Refusal';
  readonly reason: RefusalReason;
  uid: string | undefined;
  constructor(reason: RefusalReason, message: string) {
    super(REFUSAL_CODES[reason], message);
    this.reason = reason;
  }
}

const STATUS: Readonly<Record<HttpError['code'], number>> = {
  SERVE_BAD_REQUEST: 400,
  SERVE_NOT_FOUND: 404,
  SERVE_METHOD_NOT_ALLOWED: 405,
  SERVE_TOO_LARGE: 413,
  SERVE_TOO_COMPLEX: 413,
  SERVE_UNSUPPORTED_MEDIA_TYPE: 415,
  SERVE_BUSY: 503,
};

/**
 * This server's one mapping from an error to its HTTP answer: a refusal's status (by code) and a JSON
 * body naming it; anything else is a 500 that says no more (the log has it).
 */
export function answerOf(err: unknown): {
  readonly status: number;
  readonly body: { readonly error: string; readonly status: number; readonly code?: string };
} {
  if (!(err instanceof HttpError)) return { status: 500, body: { error: 'internal error', status: 500 } };
  const status = STATUS[err.code];
  return { status, body: { error: err.message, status, code: err.code } };
}

/** Bytes of request bodies held across all requests: taken as they arrive, given back once answered. */
class ByteBudget {
  readonly limit: number;
  used = 0;
  constructor(limit: number) {
    this.limit = limit;
  }
  take(n: number): boolean {
    if (this.used + n > this.limit) return false;
    this.used += n;
    return true;
  }
  give(n: number): void {
    this.used -= n;
  }
}

interface BodyLimits {
  readonly maxBytes: number;
  readonly budget: ByteBudget;
  readonly scan: ScanLimits;
}

/**
 * Reads a review body of at most `maxBytes`, scanning it as it arrives (body-scan.ts), and calls `done`
 * once. A body over the size, value-count or nesting limits, or one that would take the bodies held
 * across requests over the budget, is refused: its bytes are dropped, and the answer goes out as soon
 * as `request.uid` has been seen (to answer it as a review; the apiserver writes it first), or as an
 * HTTP error when the first UID_WINDOW bytes have none. What the client still sends is read and dropped
 * up to 4× the limit (a keep-alive client, as the apiserver is, then reads the answer rather than a
 * reset), then the connection is cut. Callback style, so a cached decision is answered within 'end'.
 */
function readBody(
  req: IncomingMessage,
  res: ServerResponse,
  limits: BodyLimits,
  done: (err: HttpError | undefined, body: Buffer) => void,
) {
  const { maxBytes, budget } = limits;
  let finished = false;
  let held = 0;
  const release = () => {
    budget.give(held);
    held = 0;
  };
  // Held until the answer is sent: a review waiting for registries keeps its parsed body alive.
  res.once('close', release);
  const finish = (err: HttpError | undefined, body: Buffer = EMPTY) => {
    if (finished) return;
    finished = true;
    done(err, body);
  };
  const scan = new BodyScan(limits.scan);
  const chunks: Buffer[] = [];
  let size = 0;
  let refusal: Refusal | undefined;
  const refuse = (reason: RefusalReason, message: string) => {
    refusal = new Refusal(reason, message);
    chunks.length = 0;
    release();
  };
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > maxBytes)
    refuse('too_large', `the review is ${declared} bytes, over the limit of ${maxBytes}`);
  /** Keeps a chunk, or refuses the body when it goes over a limit. */
  const accept = (chunk: Buffer) => {
    const over = overLimit(size, scan, limits);
    if (over) refuse(...over);
    else if (!budget.take(chunk.length))
      refuse('busy', `reviews of ${budget.limit} bytes in all are being read already`);
    else {
      held += chunk.length;
      chunks.push(chunk);
    }
  };
  req.on('data', (chunk: Buffer) => {
    size += chunk.length;
    if (finished) {
      if (size > 4 * maxBytes) req.socket.destroy();
      return;
    }
    scan.feed(chunk);
    if (!refusal) accept(chunk);
    if (refusal) {
      refusal.uid = scan.uid;
      // The apiserver writes request.uid first; a body without one early on is answered without it.
      if (refusal.uid !== undefined || size > UID_WINDOW) finish(refusal);
    }
  });
  req.on('end', () => {
    if (refusal) finish(refusal);
    else finish(undefined, chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
  });
  req.on('error', (err) =>
    finish(new HttpError('SERVE_BAD_REQUEST', `the body could not be read: ${err.message}`, { cause: err })),
  );
  req.on('aborted', () => finish(new HttpError('SERVE_BAD_REQUEST', 'the client aborted the request')));
}

/** The size, value-count or nesting limit a body of `size` bytes scanned so far goes over, as a refusal. */
function overLimit(
  size: number,
  scan: BodyScan,
  limits: BodyLimits,
): [reason: RefusalReason, message: string] | undefined {
  if (size > limits.maxBytes)
    return ['too_large', `the review is over the limit of ${limits.maxBytes} bytes`];
  if (scan.excess === 'values')
    return ['too_complex', `the review has over ${limits.scan.maxValues} JSON values`];
  if (scan.excess === 'depth')
    return ['too_complex', `the review nests deeper than ${limits.scan.maxDepth} levels`];
  return undefined;
}

const EMPTY = Buffer.alloc(0);
const UID_WINDOW = 64 * 1024;

/**
 * Limits of the pre-scan for a body limit. Real pods run at about 11 bytes per value (containers with
 * env, probes and managedFields), so one value per 8 bytes passes any real review of that size, and
 * bounds what JSON.parse can build (about 100 bytes of heap per value) to roughly 12× the body limit.
 * Real pods nest about 11 levels (plus 2 for the envelope).
 */
function scanLimits(maxBodyBytes: number): ScanLimits {
  return { maxValues: Math.floor(maxBodyBytes / 8), maxDepth: 100 };
}

export async function startHttp(options: HttpOptions): Promise<HttpServer> {
  const routes = new Routes(options);
  const main = await mainServer(options.tls, routes.handle, {
    logger: options.logger,
    metrics: options.metrics,
    maxConnections: options.maxConnections ?? 2048,
  });
  const { server, reload } = main;
  const address = await listen(server, options.host, options.port);
  let health: { server: Server; address: AddressInfo } | undefined;
  if (options.health) {
    try {
      health = await healthServer(routes.handleHealth, options.health.host, options.health.port);
    } catch (err) {
      server.close();
      throw err;
    }
  }

  return {
    url: urlOf(options.tls ? 'https' : 'http', address),
    port: address.port,
    healthUrl: health && urlOf('http', health.address),
    inflight: () => routes.inflight,
    async shutdown({ delayMs, graceMs }) {
      routes.draining = true;
      // Endpoints controllers need a moment to see readiness drop before the listener goes away.
      if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs));
      reload?.stop();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const timer = new Promise<void>((resolve) => setTimeout(resolve, graceMs).unref());
      await Promise.race([routes.drained(), timer]);
      server.closeAllConnections();
      await closed;
      if (health) await closeNow(health.server);
    },
  };
}

/** Where a request goes: a review path (POST), /healthz, /readyz and /metrics (GET), or a 404. */
class Routes {
  /** Reviews being answered now. */
  inflight = 0;
  /** Set by shutdown: readiness drops. */
  draining = false;
  private readonly idle: Array<() => void> = [];
  private readonly options: HttpOptions;
  private readonly logger: Logger;
  private readonly requests: Counter;
  private readonly reviewsAnswered: { inc(by?: number): void };
  private readonly bodyLimits: BodyLimits;

  constructor(options: HttpOptions) {
    this.options = options;
    this.logger = options.logger;
    const { metrics } = options;
    this.requests = metrics.counter(
      'pullmap_http_requests_total',
      'HTTP requests by path class and status.',
      ['path', 'code'],
    );
    this.reviewsAnswered = this.requests.bind({ path: 'review', code: '200' });
    this.bodyLimits = {
      maxBytes: options.maxBodyBytes,
      budget: new ByteBudget(options.maxInflightBytes),
      scan: scanLimits(options.maxBodyBytes),
    };
    metrics
      .gauge(
        'pullmap_review_bytes_inflight',
        'Bytes of review bodies held now (read, parsed or being answered).',
      )
      .collect(() => this.bodyLimits.budget.used);
  }

  /** Resolves once no review is being answered. */
  drained(): Promise<void> {
    return this.inflight === 0 ? Promise.resolve() : new Promise<void>((resolve) => this.idle.push(resolve));
  }

  /** The main listener: reviews, probes and metrics. */
  readonly handle = (req: IncomingMessage, res: ServerResponse): void => {
    firstRequest(req);
    const path = pathOf(req);
    const review = this.options.reviews.get(path);
    const label = review
      ? 'review'
      : path === '/healthz' || path === '/readyz' || path === '/metrics'
        ? path
        : 'other';
    try {
      if (review) this.review(req, res, path, review);
      else this.get(req, res, path, label);
    } catch (err) {
      this.refuse(res, path, label, err);
    }
  };

  /** The health listener: /healthz and /readyz only. */
  readonly handleHealth = (req: IncomingMessage, res: ServerResponse): void => {
    firstRequest(req);
    const path = pathOf(req);
    const label = path === '/healthz' || path === '/readyz' ? path : 'other';
    try {
      this.get(req, res, path, label);
    } catch (err) {
      this.refuse(res, path, label, err);
    }
  };

  /** Answers `err` as a JSON error (or cuts the connection when an answer has begun), then counts it. */
  private refuse(res: ServerResponse, path: string, label: string, err: unknown): void {
    const { status, body } = answerOf(err);
    if (status === 500) this.logger.error('request failed', { path, err });
    else this.logger.debug('request refused', { path, status, message: body.error });
    if (!res.headersSent) sendJson(res, status, body);
    else res.destroy();
    this.requests.inc({ path: label, code: String(status) });
  }

  /** The admission route: checks method and type, reads the body within its limits, answers the review. */
  private review(req: IncomingMessage, res: ServerResponse, path: string, review: ReviewHandler): void {
    if (req.method !== 'POST') throw new HttpError('SERVE_METHOD_NOT_ALLOWED', `${path} accepts POST only`);
    const declaredType = req.headers['content-type'];
    const type =
      declaredType === 'application/json'
        ? declaredType
        : (declaredType ?? '').split(';')[0]?.trim().toLowerCase();
    if (type !== 'application/json')
      throw new HttpError(
        'SERVE_UNSUPPORTED_MEDIA_TYPE',
        `content-type must be application/json, not ${JSON.stringify(type ?? '')}`,
      );
    this.inflight++;
    // Counted until the response is flushed, so shutdown never cuts an answer off.
    res.once('close', () => {
      this.inflight--;
      if (this.inflight === 0) for (const done of this.idle.splice(0)) done();
    });
    readBody(req, res, this.bodyLimits, (err, body) => {
      try {
        if (err instanceof Refusal && err.uid !== undefined)
          return this.refusedReview(res, path, review, err);
        if (err) throw err;
        this.answerReview(res, path, review, body);
      } catch (e) {
        this.refuse(res, path, 'review', e);
      }
    });
  }

  private answerReview(res: ServerResponse, path: string, review: ReviewHandler, body: Buffer): void {
    let parsed: unknown;
    try {
      parsed = JSON.parse(body.toString('utf8'));
    } catch {
      throw new HttpError('SERVE_BAD_REQUEST', 'the body is not valid JSON');
    }
    const envelope = parseReview(parsed);
    if (!envelope.ok) throw new HttpError('SERVE_BAD_REQUEST', envelope.message);
    const answer = review(envelope.request);
    const send = (response: AdmissionResponse) => {
      sendText(res, 200, reviewJson(response), 'application/json');
      this.reviewsAnswered.inc();
    };
    if (answer instanceof Promise) answer.then(send, (err) => this.refuse(res, path, 'review', err));
    else send(answer);
  }

  /** A review refused before parsing, answered as a review so the failure policy decides (not the apiserver). */
  private refusedReview(res: ServerResponse, path: string, review: ReviewHandler, err: Refusal): void {
    const uid = err.uid as string;
    this.logger.debug('review refused before parsing', {
      path,
      uid,
      reason: err.reason,
      message: err.message,
    });
    const response =
      review.refuse?.(uid, err.reason, err.message) ??
      allow(uid, [`pullmap: ${err.message}; admitted unchanged`]);
    sendText(res, 200, reviewJson(response), 'application/json');
    this.reviewsAnswered.inc();
  }

  /** GET /healthz, /readyz and (on the main listener) /metrics. */
  private get(req: IncomingMessage, res: ServerResponse, path: string, label: string): void {
    if (label === 'other') throw new HttpError('SERVE_NOT_FOUND', `no such path: ${path}`);
    if (req.method !== 'GET' && req.method !== 'HEAD')
      throw new HttpError('SERVE_METHOD_NOT_ALLOWED', `${path} accepts GET only`);
    if (path === '/healthz') sendText(res, 200, 'ok\n');
    else if (path === '/readyz') {
      const ready = !this.draining && this.options.ready();
      sendText(
        res,
        ready ? 200 : 503,
        ready ? 'ok\n' : this.draining ? 'shutting down\n' : 'maps not loaded yet\n',
      );
    } else sendText(res, 200, this.options.metrics.render(), METRICS_CONTENT_TYPE);
    this.requests.inc({ path: label, code: String(res.statusCode) });
  }
}

/** The request's path, without its query. */
function pathOf(req: IncomingMessage): string {
  const url = req.url ?? '/';
  const query = url.indexOf('?');
  return query === -1 ? url : url.slice(0, query);
}
