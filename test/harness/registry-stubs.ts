// The cases a real registry cannot be made to show on demand: answering slowly, rate limiting, and
// refusing manifest HEAD. The slow and HEAD-refusing ones are proxies in front of a real registry,
// so the answers they let through are real.
import {
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';

export interface LoopbackStub {
  /** "127.0.0.1:PORT" */
  readonly host: string;
  readonly url: string;
  /** Requests received, excluding GET /v2/. */
  requests(): number;
  /** The most requests that were in progress at once. */
  maxInFlight(): number;
  close(): Promise<void>;
}

async function listen(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<Server> {
  const server = createServer(handler);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return server;
}

function stub(
  server: Server,
  counter: () => number,
  timers: Set<NodeJS.Timeout>,
  maxInFlight: () => number = () => 0,
): LoopbackStub {
  const { port } = server.address() as AddressInfo;
  return {
    host: `127.0.0.1:${port}`,
    url: `http://127.0.0.1:${port}`,
    requests: counter,
    maxInFlight,
    close: () =>
      new Promise<void>((resolve) => {
        for (const t of timers) clearTimeout(t);
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Sends `req` on to `target` and pipes the answer back; a failed upstream answers 502. */
function forward(target: URL, req: IncomingMessage, res: ServerResponse): void {
  const upstream = httpRequest(
    {
      host: target.hostname,
      port: target.port,
      method: req.method,
      path: req.url,
      headers: { ...req.headers, host: target.host },
    },
    (upstreamRes) => {
      res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.headers);
      upstreamRes.pipe(res);
    },
  );
  upstream.on('error', () => {
    if (!res.headersSent) res.writeHead(502);
    res.end();
  });
  req.pipe(upstream);
}

/** Forwards every request to a plain-HTTP `upstream` ("http://127.0.0.1:PORT") after `delayMs`. */
export async function startDelayingProxy(upstream: string, delayMs: number): Promise<LoopbackStub> {
  const target = new URL(upstream);
  let count = 0;
  let inFlight = 0;
  let peak = 0;
  const timers = new Set<NodeJS.Timeout>();
  const server = await listen((req, res) => {
    if (req.url !== '/v2/') count++;
    inFlight++;
    peak = Math.max(peak, inFlight);
    res.once('close', () => inFlight--);
    const timer = setTimeout(() => {
      timers.delete(timer);
      forward(target, req, res);
    }, delayMs);
    timers.add(timer);
  });
  return stub(
    server,
    () => count,
    timers,
    () => peak,
  );
}

/**
 * A registry that refuses manifest HEAD, as some registries and proxies do: a HEAD of
 * `/v2/.../manifests/...` answers `status` (405 or 501); everything else goes on to the real
 * registry at `upstream`, so GET answers are real. `requests()` counts the refused HEADs.
 */
export async function startHeadRefusingProxy(upstream: string, status: 405 | 501): Promise<LoopbackStub> {
  const target = new URL(upstream);
  let refused = 0;
  const server = await listen((req, res) => {
    if (req.method === 'HEAD' && /^\/v2\/.+\/manifests\/[^/]+$/.test(req.url ?? '')) {
      refused++;
      res.writeHead(status, status === 405 ? { allow: 'GET' } : {});
      res.end();
      return;
    }
    forward(target, req, res);
  });
  return stub(server, () => refused, new Set());
}

/** Answers GET /v2/ with 200 and everything else with 429 and `Retry-After: retryAfterSeconds`. */
export async function startRateLimitedRegistry(retryAfterSeconds: number): Promise<LoopbackStub> {
  let count = 0;
  const server = await listen((req, res) => {
    const json = (status: number, body: unknown, headers: Record<string, string> = {}): void => {
      const text = JSON.stringify(body);
      res.writeHead(status, {
        'content-type': 'application/json',
        'docker-distribution-api-version': 'registry/2.0',
        ...headers,
        ...(req.method === 'HEAD' ? {} : { 'content-length': String(Buffer.byteLength(text)) }),
      });
      res.end(req.method === 'HEAD' ? undefined : text);
    };
    if (req.url === '/v2/') return json(200, {});
    count++;
    json(
      429,
      { errors: [{ code: 'TOOMANYREQUESTS', message: 'pull rate limit exceeded' }] },
      { 'retry-after': String(retryAfterSeconds) },
    );
  });
  return stub(server, () => count, new Set());
}

export interface ThrottlingProxy extends LoopbackStub {
  /** Blob GETs received for `digest`. */
  blobGets(digest: string): number;
  /** Body bytes of blob `digest` sent so far, over every request for it. */
  blobBytesSent(digest: string): number;
}

/**
 * Forwards every request to a plain-HTTP `upstream` and sends blob bodies at about `bytesPerSecond`
 * each, so a download is still under way when a test acts (another replica asks, a replica is killed).
 */
export async function startThrottlingProxy(
  upstream: string,
  bytesPerSecond: number,
): Promise<ThrottlingProxy> {
  const target = new URL(upstream);
  let count = 0;
  const gets = new Map<string, number>();
  const sent = new Map<string, number>();
  const timers = new Set<NodeJS.Timeout>();
  const server = await listen((req, res) => {
    if (req.url !== '/v2/') count++;
    const blob = /\/blobs\/(sha256:[a-f0-9]{64})$/.exec(req.url ?? '')?.[1];
    if (blob === undefined || req.method !== 'GET') {
      forward(target, req, res);
      return;
    }
    gets.set(blob, (gets.get(blob) ?? 0) + 1);
    const out = httpRequest(
      {
        host: target.hostname,
        port: target.port,
        method: 'GET',
        path: req.url,
        headers: { ...req.headers, host: target.host },
      },
      (upstreamRes) => {
        res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.headers);
        upstreamRes.on('data', (chunk: Buffer) => {
          upstreamRes.pause();
          res.write(chunk);
          sent.set(blob, (sent.get(blob) ?? 0) + chunk.length);
          const timer = setTimeout(
            () => {
              timers.delete(timer);
              upstreamRes.resume();
            },
            (chunk.length / bytesPerSecond) * 1000,
          );
          timers.add(timer);
        });
        upstreamRes.on('end', () => res.end());
        res.on('close', () => upstreamRes.destroy());
      },
    );
    out.on('error', () => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
    out.end();
  });
  return {
    ...stub(server, () => count, timers),
    blobGets: (digest) => gets.get(digest) ?? 0,
    blobBytesSent: (digest) => sent.get(digest) ?? 0,
  };
}
