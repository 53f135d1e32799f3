// The listeners of `pullmap serve`: the main one (HTTPS from certificate files reloaded as they rotate,
// or plain HTTP on loopback) and the optional plain health listener. Both cap connections and cut slow
// or silent clients, so no client can hold a slot for long; http.ts routes what arrives.

import { readFile } from 'node:fs/promises';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { createSecureContext } from 'node:tls';
import { http } from '../net/node-http.ts';
import type { Logger } from '../observe/log.ts';
import type { Counter, MetricsRegistry } from '../observe/metrics.ts';
import { type FileWatch, filesStamp, watchFiles } from './watch-files.ts';

export interface TlsFiles {
  readonly certFile: string;
  readonly keyFile: string;
  /** How often the files are checked for changes (mtime and size). */
  readonly reloadIntervalMs: number;
}

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/** The main listener, not yet listening: HTTPS when `tls` is given (its files watched for rotation). */
export async function mainServer(
  tls: TlsFiles | undefined,
  handle: Handler,
  options: { readonly logger: Logger; readonly metrics: MetricsRegistry; readonly maxConnections: number },
): Promise<{ server: Server; reload: FileWatch | undefined }> {
  const { logger } = options;
  const tlsReloads = options.metrics.counter(
    'pullmap_tls_reloads_total',
    'Serving certificate reloads by result.',
    ['result'],
  );
  let server: Server;
  let reload: FileWatch | undefined;
  if (tls) {
    // Stamped before the first read, so a rotation while it is read is picked up at the first tick.
    const stamp = await filesStamp([tls.certFile, tls.keyFile]);
    const https = createHttpsServer(
      {
        ...(await loadTls(tls)),
        minVersion: 'TLSv1.2',
        ...TIMEOUTS,
        handshakeTimeout: TIMEOUTS.headersTimeout,
      },
      handle,
    );
    reload = reloadTls(https, tls, stamp, { logger, tlsReloads });
    server = https;
  } else {
    server = http.createServer(TIMEOUTS, handle);
  }
  server.keepAliveTimeout = 65_000;
  server.maxConnections = options.maxConnections;
  server.on('clientError', answerClientError);
  server.on('tlsClientError', (err, socket) => {
    // With a listener, Node leaves the socket open (a stalled handshake would hold its slot for good).
    socket.destroy();
    logger.debug('TLS handshake failed', { err });
  });
  cutSilentConnections(server, tls ? 'secureConnection' : 'connection');
  return { server, reload };
}

/** Watches the certificate files and swaps the serving context when they change. */
function reloadTls(
  https: ReturnType<typeof createHttpsServer>,
  files: TlsFiles,
  stamp: string,
  { logger, tlsReloads }: { readonly logger: Logger; readonly tlsReloads: Counter },
): FileWatch {
  return watchFiles([files.certFile, files.keyFile], {
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
}

/** The health listener, listening: probes only, a few connections at a time, cut quickly. */
export async function healthServer(
  handle: Handler,
  host: string,
  port: number,
): Promise<{ server: Server; address: AddressInfo }> {
  const server = http.createServer(HEALTH_TIMEOUTS, handle);
  server.maxConnections = 128;
  server.on('clientError', answerClientError);
  cutSilentConnections(server, 'connection');
  return { server, address: await listen(server, host, port) };
}

/** Stops accepting and resolves once every connection is gone (those still open are cut). */
export function closeNow(server: Server): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeAllConnections();
  return closed;
}

/** Reads the certificate and key; throws when the PEM is unreadable or the key does not fit the certificate. */
async function loadTls(files: TlsFiles): Promise<{ cert: Buffer; key: Buffer }> {
  const [cert, key] = await Promise.all([readFile(files.certFile), readFile(files.keyFile)]);
  createSecureContext({ cert, key });
  return { cert, key };
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
export function firstRequest(req: IncomingMessage): void {
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
export async function listen(server: Server, host: string, port: number): Promise<AddressInfo> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port, host, backlog: Math.max(511, server.maxConnections) }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return server.address() as AddressInfo;
}

export function urlOf(scheme: string, address: AddressInfo): string {
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return `${scheme}://${host}:${address.port}`;
}
