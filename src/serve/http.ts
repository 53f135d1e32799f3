// The HTTPS front of `pullmap serve`: AdmissionReview endpoints plus /healthz, /readyz and /metrics.
// Every request is bounded: body size, header and request timeouts, and a cap on connections. A bad
// request gets a JSON error naming what is wrong; nothing a client sends can crash or stall the server.

import { readFile } from 'node:fs/promises';
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { createSecureContext } from 'node:tls';
import {
  type AdmissionRequest,
  type AdmissionResponse,
  parseReview,
  reviewJson,
} from '../core/api/admission.ts';
import type { Logger } from '../observe/log.ts';
import { METRICS_CONTENT_TYPE, type Registry } from '../observe/metrics.ts';
import { type FileWatch, filesStamp, watchFiles } from './watch-files.ts';

/** Answers a review; synchronously when it can (the common, cached case). */
export type ReviewHandler = (request: AdmissionRequest) => AdmissionResponse | Promise<AdmissionResponse>;

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
  /** Whether the maps are loaded (readiness also drops while shutting down). */
  readonly ready: () => boolean;
  readonly metrics: Registry;
  readonly logger: Logger;
  readonly maxConnections?: number;
}

export interface HttpServer {
  readonly url: string;
  readonly port: number;
  /** Reviews being answered now. */
  inflight(): number;
  /** Drops readiness, stops accepting, lets in-flight reviews finish (up to `graceMs`), then closes. */
  shutdown(options: { delayMs: number; graceMs: number }): Promise<void>;
}

class HttpError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
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

/**
 * Reads at most `limit` bytes and calls `done` once. A bigger body is refused; what the client still
 * sends is read and dropped up to 4× the limit (so it sees the 413 rather than a reset), then the
 * connection is cut. Callback style, so a cached decision is answered within the 'end' event.
 */
function readBody(
  req: IncomingMessage,
  limit: number,
  done: (err: HttpError | undefined, body: Buffer) => void,
) {
  let finished = false;
  const finish = (err: HttpError | undefined, body: Buffer = EMPTY) => {
    if (finished) return;
    finished = true;
    done(err, body);
  };
  const drain = () => {
    let dropped = 0;
    req.removeAllListeners('data');
    req.on('data', (chunk: Buffer) => {
      dropped += chunk.length;
      if (dropped > 4 * limit) req.socket.destroy();
    });
    req.resume();
  };
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) {
    drain();
    finish(new HttpError(413, `the body is ${declared} bytes; the limit is ${limit}`));
    return;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  req.on('data', (chunk: Buffer) => {
    size += chunk.length;
    if (size > limit) {
      chunks.length = 0;
      drain();
      finish(new HttpError(413, `the body is over the limit of ${limit} bytes`));
      return;
    }
    chunks.push(chunk);
  });
  req.on('end', () => finish(undefined, chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size)));
  req.on('error', (err) => finish(new HttpError(400, `the body could not be read: ${err.message}`)));
  req.on('aborted', () => finish(new HttpError(400, 'the client aborted the request')));
}

const EMPTY = Buffer.alloc(0);

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
    const status = err instanceof HttpError ? err.status : 500;
    const message = err instanceof HttpError ? err.message : 'internal error';
    if (status === 500) logger.error('request failed', { path, err });
    else logger.debug('request refused', { path, status, message });
    if (!res.headersSent) sendJson(res, status, { error: message, status });
    else res.destroy();
    requests.inc({ path: label, code: String(status) });
  };

  const answerReview = (res: ServerResponse, path: string, review: ReviewHandler, body: Buffer): void => {
    let parsed: unknown;
    try {
      parsed = JSON.parse(body.toString('utf8'));
    } catch {
      throw new HttpError(400, 'the body is not valid JSON');
    }
    const envelope = parseReview(parsed);
    if (!envelope.ok) throw new HttpError(400, envelope.message);
    const answer = review(envelope.request);
    const send = (response: AdmissionResponse) => {
      sendText(res, 200, reviewJson(response), 'application/json');
      reviewsAnswered.inc();
    };
    if (answer instanceof Promise) answer.then(send, (err) => refuse(res, path, 'review', err));
    else send(answer);
  };

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
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
        if (req.method !== 'POST') throw new HttpError(405, `${path} accepts POST only`);
        const declaredType = req.headers['content-type'];
        const type =
          declaredType === 'application/json'
            ? declaredType
            : (declaredType ?? '').split(';')[0]?.trim().toLowerCase();
        if (type !== 'application/json')
          throw new HttpError(
            415,
            `content-type must be application/json, not ${JSON.stringify(type ?? '')}`,
          );
        inflight++;
        // Counted until the response is flushed, so shutdown never cuts an answer off.
        res.once('close', () => {
          inflight--;
          if (inflight === 0) for (const done of idle.splice(0)) done();
        });
        readBody(req, options.maxBodyBytes, (err, body) => {
          try {
            if (err) throw err;
            answerReview(res, path, review, body);
          } catch (e) {
            refuse(res, path, label, e);
          }
        });
        return;
      }
      if (req.method !== 'GET' && req.method !== 'HEAD') throw new HttpError(405, `${path} accepts GET only`);
      if (path === '/healthz') sendText(res, 200, 'ok\n');
      else if (path === '/readyz') {
        const ready = !draining && options.ready();
        sendText(
          res,
          ready ? 200 : 503,
          ready ? 'ok\n' : draining ? 'shutting down\n' : 'maps not loaded yet\n',
        );
      } else if (path === '/metrics') sendText(res, 200, metrics.render(), METRICS_CONTENT_TYPE);
      else throw new HttpError(404, `no such path: ${path}`);
      requests.inc({ path: label, code: String(res.statusCode) });
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
    const https = createHttpsServer({ ...first, minVersion: 'TLSv1.2' }, handle);
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
    server = createHttpServer(handle);
  }
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  server.keepAliveTimeout = 65_000;
  server.maxConnections = options.maxConnections ?? 2048;
  server.on('clientError', (_err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n');
    else socket.destroy();
  });
  server.on('tlsClientError', (err) => logger.debug('TLS handshake failed', { err }));

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `${options.tls ? 'https' : 'http'}://${host}:${address.port}`;

  return {
    url,
    port: address.port,
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
    },
  };
}
