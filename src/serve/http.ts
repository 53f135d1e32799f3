// The HTTPS front of `pullmap serve`: AdmissionReview endpoints plus /healthz, /readyz and /metrics, and
// optionally a separate health listener for the probes. Every request is bounded: body size, value count
// and nesting before parsing, bytes held across requests, header, handshake and request timeouts, and a
// cap on connections. A bad request gets a JSON error naming what is wrong (a refused review, the failure
// policy's answer); nothing a client sends can crash or stall the server.

import { readFile } from 'node:fs/promises';
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { createSecureContext } from 'node:tls';
import {
  type AdmissionRequest,
  type AdmissionResponse,
  allow,
  parseReview,
  reviewJson,
} from '../core/api/admission.ts';
import type { Logger } from '../observe/log.ts';
import { METRICS_CONTENT_TYPE, type Registry } from '../observe/metrics.ts';
import { BodyScan, type ScanLimits } from './body-scan.ts';
import { HttpError } from './errors.ts';
import { type FileWatch, filesStamp, watchFiles } from './watch-files.ts';

/** Answers a review; synchronously when it can (the common, cached case). */
export interface ReviewHandler {
  (request: AdmissionRequest): AdmissionResponse | Promise<AdmissionResponse>;
  /**
   * Answers a review refused before it was parsed (too large, too complex, server busy) as the failure
   * policy says. Absent: allowed unchanged with a warning.
   */
  readonly refuse?: (uid: string, reason: RefusalReason, message: string) => AdmissionResponse;
}

export interface TlsFiles {
  readonly certFile: string;
  readonly keyFile: string;
  /** How often the files are checked for changes (mtime and size). */
  readonly reloadIntervalMs: number;
}

export interface HttpOptions {
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
  readonly metrics: Registry;
  readonly logger: Logger;
  readonly maxConnections?: number;
  /** A plain-HTTP listener for /healthz and /readyz alone, which slow or flooding clients of the main one cannot starve. */
  readonly health?: { readonly host: string; readonly port: number } | undefined;
}

export interface HttpServer {
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
  req.on('data', (chunk: Buffer) => {
    size += chunk.length;
    if (finished) {
      if (size > 4 * maxBytes) req.socket.destroy();
      return;
    }
    scan.feed(chunk);
    if (!refusal) {
      if (size > maxBytes) refuse('too_large', `the review is over the limit of ${maxBytes} bytes`);
      else if (scan.excess === 'values')
        refuse('too_complex', `the review has over ${limits.scan.maxValues} JSON values`);
      else if (scan.excess === 'depth')
        refuse('too_complex', `the review nests deeper than ${limits.scan.maxDepth} levels`);
      else if (!budget.take(chunk.length))
        refuse('busy', `reviews of ${budget.limit} bytes in all are being read already`);
      else {
        held += chunk.length;
        chunks.push(chunk);
      }
    }
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

const EMPTY = Buffer.alloc(0);
const UID_WINDOW = 64 * 1024;

/**
 * Limits of the pre-scan for a body limit. Real pods run at about 11 bytes per value (containers with
 * env, probes and managedFields), so one value per 8 bytes passes any real review of that size, and
 * bounds what JSON.parse can build (about 100 bytes of heap per value) to roughly 12× the body limit.
 * Real pods nest about 11 levels (plus 2 for the envelope).
 */
export function scanLimits(maxBodyBytes: number): ScanLimits {
  return { maxValues: Math.floor(maxBodyBytes / 8), maxDepth: 100 };
}

/** Reads the certificate and key; throws when the PEM is unreadable or the key does not fit the certificate. */
async function loadTls(files: TlsFiles): Promise<{ cert: Buffer; key: Buffer }> {
  const [cert, key] = await Promise.all([readFile(files.certFile), readFile(files.keyFile)]);
  createSecureContext({ cert, key });
  return { cert, key };
}

export async function startHttp(options: HttpOptions): Promise<HttpServer> {
  const { logger, metrics } = options;
  const requests = metrics.counter('pullmap_http_requests_total', 'HTTP requests by path class and status.', [
    'path',
    'code',
  ]);
  const reviewsAnswered = requests.bind({ path: 'review', code: '200' });
  const tlsReloads = metrics.counter('pullmap_tls_reloads_total', 'Serving certificate reloads by result.', [
    'result',
  ]);
  let inflight = 0;
  let draining = false;
  const idle: Array<() => void> = [];

  /** Answers `err` as a JSON error (or cuts the connection when an answer has begun), then counts it. */
  const refuse = (res: ServerResponse, path: string, label: string, err: unknown): void => {
    const { status, body } = answerOf(err);
    if (status === 500) logger.error('request failed', { path, err });
    else logger.debug('request refused', { path, status, message: body.error });
    if (!res.headersSent) sendJson(res, status, body);
    else res.destroy();
    requests.inc({ path: label, code: String(status) });
  };

  const answerReview = (res: ServerResponse, path: string, review: ReviewHandler, body: Buffer): void => {
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
      reviewsAnswered.inc();
    };
    if (answer instanceof Promise) answer.then(send, (err) => refuse(res, path, 'review', err));
    else send(answer);
  };

  const bodyLimits: BodyLimits = {
    maxBytes: options.maxBodyBytes,
    budget: new ByteBudget(options.maxInflightBytes),
    scan: scanLimits(options.maxBodyBytes),
  };
  metrics
    .gauge(
      'pullmap_review_bytes_inflight',
      'Bytes of review bodies held now (read, parsed or being answered).',
    )
    .collect(() => bodyLimits.budget.used);

  /** A review refused before parsing, answered as a review so the failure policy decides (not the apiserver). */
  const refusedReview = (res: ServerResponse, path: string, review: ReviewHandler, err: Refusal): void => {
    const uid = err.uid as string;
    logger.debug('review refused before parsing', { path, uid, reason: err.reason, message: err.message });
    const response =
      review.refuse?.(uid, err.reason, err.message) ??
      allow(uid, [`pullmap: ${err.message}; admitted unchanged`]);
    sendText(res, 200, reviewJson(response), 'application/json');
    reviewsAnswered.inc();
  };

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    firstRequest(req);
    const url = req.url ?? '/';
    const query = url.indexOf('?');
    const path = query === -1 ? url : url.slice(0, query);
    const review = options.reviews.get(path);
    const label = review
      ? 'review'
      : path === '/healthz' || path === '/readyz' || path === '/metrics'
        ? path
        : 'other';
    try {
      if (review) {
        if (req.method !== 'POST')
          throw new HttpError('SERVE_METHOD_NOT_ALLOWED', `${path} accepts POST only`);
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
        inflight++;
        // Counted until the response is flushed, so shutdown never cuts an answer off.
        res.once('close', () => {
          inflight--;
          if (inflight === 0) for (const done of idle.splice(0)) done();
        });
        readBody(req, res, bodyLimits, (err, body) => {
          try {
            if (err instanceof Refusal && err.uid !== undefined) return refusedReview(res, path, review, err);
            if (err) throw err;
            answerReview(res, path, review, body);
          } catch (e) {
            refuse(res, path, label, e);
          }
        });
        return;
      }
      get(req, res, path, label);
    } catch (err) {
      refuse(res, path, label, err);
    }
  };

  /** GET /healthz, /readyz and (on the main listener) /metrics. */
  const get = (req: IncomingMessage, res: ServerResponse, path: string, label: string): void => {
    if (label === 'other') throw new HttpError('SERVE_NOT_FOUND', `no such path: ${path}`);
    if (req.method !== 'GET' && req.method !== 'HEAD')
      throw new HttpError('SERVE_METHOD_NOT_ALLOWED', `${path} accepts GET only`);
    if (path === '/healthz') sendText(res, 200, 'ok\n');
    else if (path === '/readyz') {
      const ready = !draining && options.ready();
      sendText(
        res,
        ready ? 200 : 503,
        ready ? 'ok\n' : draining ? 'shutting down\n' : 'maps not loaded yet\n',
      );
    } else sendText(res, 200, metrics.render(), METRICS_CONTENT_TYPE);
    requests.inc({ path: label, code: String(res.statusCode) });
  };

  /** The health listener: /healthz and /readyz only. */
  const handleHealth = (req: IncomingMessage, res: ServerResponse): void => {
    firstRequest(req);
    const url = req.url ?? '/';
    const query = url.indexOf('?');
    const path = query === -1 ? url : url.slice(0, query);
    const label = path === '/healthz' || path === '/readyz' ? path : 'other';
    try {
      get(req, res, path, label);
    } catch (err) {
      refuse(res, path, label, err);
    }
  };

  let server: Server;
  let reload: FileWatch | undefined;
  if (options.tls) {
    const files = options.tls;
    const paths = [files.certFile, files.keyFile];
    const stamp = await filesStamp(paths);
    const first = await loadTls(files);
    const https = createHttpsServer(
      { ...first, minVersion: 'TLSv1.2', ...TIMEOUTS, handshakeTimeout: TIMEOUTS.headersTimeout },
      handle,
    );
    reload = watchFiles(paths, {
      intervalMs: files.reloadIntervalMs,
      stamp,
      onChange: async () => {
        https.setSecureContext({ ...(await loadTls(files)), minVersion: 'TLSv1.2' });
        tlsReloads.inc({ result: 'ok' });
        logger.info('serving certificate reloaded', { certFile: files.certFile });
      },
      onError: (err) => {
        // Half-written files during a rotation end up here; the next tick tries again.
        tlsReloads.inc({ result: 'error' });
        logger.warn('serving certificate not reloaded; keeping the current one', { err });
      },
    });
    server = https;
  } else {
    server = createHttpServer(TIMEOUTS, handle);
  }
  server.keepAliveTimeout = 65_000;
  server.maxConnections = options.maxConnections ?? 2048;
  server.on('clientError', answerClientError);
  server.on('tlsClientError', (err, socket) => {
    // With a listener, Node leaves the socket open (a stalled handshake would hold its slot for good).
    socket.destroy();
    logger.debug('TLS handshake failed', { err });
  });
  cutSilentConnections(server, options.tls ? 'secureConnection' : 'connection');
  const address = await listen(server, options.host, options.port);

  let health: { server: Server; address: AddressInfo } | undefined;
  if (options.health) {
    // Probes only: a few connections at a time, cut quickly.
    const healthServer = createHttpServer(HEALTH_TIMEOUTS, handleHealth);
    healthServer.maxConnections = 128;
    healthServer.on('clientError', answerClientError);
    cutSilentConnections(healthServer, 'connection');
    try {
      health = {
        server: healthServer,
        address: await listen(healthServer, options.health.host, options.health.port),
      };
    } catch (err) {
      server.close();
      throw err;
    }
  }

  return {
    url: urlOf(options.tls ? 'https' : 'http', address),
    port: address.port,
    healthUrl: health && urlOf('http', health.address),
    inflight: () => inflight,
    async shutdown({ delayMs, graceMs }) {
      draining = true;
      // Endpoints controllers need a moment to see readiness drop before the listener goes away.
      if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs));
      reload?.stop();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const drained = inflight === 0 ? Promise.resolve() : new Promise<void>((resolve) => idle.push(resolve));
      const timer = new Promise<void>((resolve) => setTimeout(resolve, graceMs).unref());
      await Promise.race([drained, timer]);
      server.closeAllConnections();
      await closed;
      if (health) {
        const healthClosed = new Promise<void>((resolve) => health.server.close(() => resolve()));
        health.server.closeAllConnections();
        await healthClosed;
      }
    },
  };
}

/**
 * Slow clients are cut at these timeouts: Node checks them every `connectionsCheckingInterval` (30 s
 * unless set), which let 2,100 clients that never finish their headers hold every connection for ~36 s.
 */
const TIMEOUTS = {
  headersTimeout: 10_000,
  requestTimeout: 30_000,
  connectionsCheckingInterval: 1_000,
} as const;
const HEALTH_TIMEOUTS = { headersTimeout: 5_000, requestTimeout: 5_000, connectionsCheckingInterval: 1_000 };

const SILENT = Symbol('silent');

/**
 * Node's header timeout starts with a request's first byte: a connection that sends nothing is never cut
 * and holds a slot under maxConnections. Until the first request arrives, the socket's idle timeout
 * does that (Node destroys a socket that times out when nobody listens); `firstRequest` lifts it.
 */
function cutSilentConnections(server: Server, event: 'connection' | 'secureConnection'): void {
  server.on(event, (socket: Socket & { [SILENT]?: boolean }) => {
    socket[SILENT] = true;
    socket.setTimeout(TIMEOUTS.headersTimeout);
  });
}

/** Lifts the silent-connection timeout for a request that may take longer (registry probes). */
function firstRequest(req: IncomingMessage): void {
  const socket = req.socket as Socket & { [SILENT]?: boolean };
  if (socket[SILENT]) {
    socket[SILENT] = false;
    socket.setTimeout(0);
  }
}

function answerClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
  if (!socket.writable) return void socket.destroy();
  const status = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : '400 Bad Request';
  // Then closed outright: half-closed, the socket would hold its slot until the client closes its side.
  socket.end(`HTTP/1.1 ${status}\r\nconnection: close\r\n\r\n`, () => socket.destroy());
}

/**
 * The kernel's accept queue holds a burst as large as the connection cap (Node asks for 511): past it,
 * a connection's last handshake packet is dropped and the client waits on retransmits.
 */
async function listen(server: Server, host: string, port: number): Promise<AddressInfo> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port, host, backlog: Math.max(511, server.maxConnections) }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return server.address() as AddressInfo;
}

function urlOf(scheme: string, address: AddressInfo): string {
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return `${scheme}://${host}:${address.port}`;
}
