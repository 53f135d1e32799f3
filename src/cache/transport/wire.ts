// One HTTP/1.1 GET on a connection of its own, for blob bodies: the socket reads into one reused buffer
// (`onread`) and the body goes, as views of it, straight to the consumer's callback (a promise pauses
// the socket). Why not undici here: its fresh buffer per read and stream layers cost about 3x the CPU
// per body byte (docs/decisions.md, "Blob transport").
//
// Framing (http1.ts) is strict: test/cache/wire-hostile.test.ts sends it request-smuggling shapes,
// bad chunk sizes, oversized and split heads, bare LFs and early closes, and expects a typed error (or
// the exact body) without waiting for a timeout; undici refuses the same broken shapes.
//
// The connection is closed after the answer (`Connection: close`): a blob is one long transfer, so
// keeping connections alive would save a handshake per blob at the price of a pool to manage.
import type { IncomingHttpHeaders } from 'node:http';
import { isIP, connect as netConnect, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import { connect as tlsConnect } from 'node:tls';
import type { WireErrorCode } from '../../registry/errors.ts';
import { ProtocolError, WireError } from '../errors.ts';
import { type BodyFramer, framer, framingOf, isToken, MAX_HEAD_BYTES, parseHead } from './http1.ts';
import { authority, connectToProxy, openTunnel, proxyAuthorization } from './tunnel.ts';

/**
 * Bytes per socket read. Larger reads mean fewer callbacks: on the test VM a cold 200 MB pull through
 * the cache took about 10% less CPU with 1 MiB than with 256 KiB, and was as much faster.
 */
const READ_BUFFER = 1024 * 1024;
/** Read buffers kept for later connections (the rest are left to the garbage collector). */
const POOL_MAX = 8;
const pool: Buffer[] = [];

export interface WireRequest {
  /** http: or https:; the path and query are sent as they are. */
  readonly url: URL;
  readonly headers: Readonly<Record<string, string>>;
  readonly signal: AbortSignal;
  readonly connectTimeoutMs: number;
  /** Longest wait for the head, and between body bytes while the consumer is not pausing the body. */
  readonly timeoutMs: number;
  /** Certificates trusted for https: (undefined: the system roots). */
  readonly ca?: readonly string[] | undefined;
  /**
   * The HTTP proxy to go through (proxyFor decided it for this URL): https: through a CONNECT tunnel,
   * http: as an absolute-form request to the proxy.
   */
  readonly proxy?: URL | undefined;
}

/**
 * Takes the next bytes of a body: a view valid during the call and, when it returns a promise, until
 * that settles (the connection waits for it). A rejection ends the transfer with that error.
 */
export type BodySink = (chunk: Buffer) => Promise<void> | undefined;

export interface WireResponse {
  readonly statusCode: number;
  readonly headers: IncomingHttpHeaders;
  /** Delivers the body to `sink`; resolves once it is whole. Call it once (or `cancel`). */
  pipeTo(sink: BodySink): Promise<void>;
  /** The body as a stream of copies, for consumers that want a Readable. */
  stream(): Readable;
  /** Closes the connection without reading the body. */
  cancel(): void;
}

/** Sends a GET and resolves with the answer's head; the body waits, paused, for `pipeTo`. */
export function wireGet(request: WireRequest): Promise<WireResponse> {
  return new Promise((resolve, reject) => new Connection(request, resolve, reject));
}

/** A Readable over a body sink's producer: each chunk is copied, and the stream's pull paces it. */
export function readableOf(pipeTo: (sink: BodySink) => Promise<void>, cancel: () => void): Readable {
  let wake: (() => void) | undefined;
  const out = new Readable({
    read: () => {
      const w = wake;
      wake = undefined;
      w?.();
    },
    destroy: (err, callback) => {
      cancel();
      callback(err);
    },
  });
  pipeTo((chunk) =>
    out.push(Buffer.from(chunk))
      ? undefined
      : new Promise<void>((resolve) => {
          wake = resolve;
        }),
  ).then(
    () => out.push(null),
    (err: Error) => out.destroy(err),
  );
  return out;
}

const LF = 10;
const CR = 13;

function hasBareLf(bytes: Buffer): boolean {
  for (let i = bytes.indexOf(LF); i >= 0; i = bytes.indexOf(LF, i + 1)) if (bytes[i - 1] !== CR) return true;
  return false;
}

/** One header line; a name that is not a token, or a value with a line break, is refused. */
function headerLine(name: string, value: string): string {
  if (!isToken(name))
    throw new WireError('ERR_INVALID_HTTP_TOKEN', `invalid header name ${JSON.stringify(name)}`);
  // A line break in a value would let it add headers (or a second request) of its own.
  if (/[\r\n\0]/.test(value)) throw new WireError('ERR_INVALID_CHAR', `header ${name} contains a line break`);
  return `${name}: ${value}\r\n`;
}

class Connection implements WireResponse {
  readonly #request: WireRequest;
  /** Undefined while a CONNECT tunnel is being opened. */
  #socket: Socket | undefined;
  #resolveHead: ((response: WireResponse) => void) | undefined;
  #rejectHead: ((err: Error) => void) | undefined;
  #state: 'connecting' | 'head' | 'waiting' | 'body' | 'done' | 'failed' = 'connecting';
  #head: Buffer = Buffer.alloc(0);
  #framer: BodyFramer | undefined;
  /** Body bytes that came with the head (a copy), delivered first. */
  #early: Buffer | undefined;
  #sink: BodySink | undefined;
  #resolveBody: (() => void) | undefined;
  #rejectBody: ((err: Error) => void) | undefined;
  /** The consumer returned a promise that has not settled: the socket is paused for it. */
  #held = false;
  /**
   * Reading through 'data' events (TLS in a tunnel): a paused socket can still report its close, which
   * then waits here until the consumer asks for more (with onread, a paused socket reads nothing).
   */
  #deferClose = false;
  #closePending = false;
  #error: Error | undefined;
  #buffer: Buffer;
  #timer: NodeJS.Timeout;
  readonly #onAbort: () => void;
  statusCode = 0;
  headers: IncomingHttpHeaders = {};

  constructor(request: WireRequest, resolve: (response: WireResponse) => void, reject: (err: Error) => void) {
    const { url, proxy } = request;
    const tls = url.protocol === 'https:';
    const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
    const port = Number(url.port || (tls ? 443 : 80));
    // Through a proxy, plain HTTP asks the proxy for the absolute URL (and may carry its credentials).
    const absolute = proxy !== undefined && !tls;
    const auth = absolute ? proxyAuthorization(proxy) : undefined;
    // Built first: a header that cannot be sent fails the call before anything is opened.
    let lines = `GET ${absolute ? `http://${authority(host, port)}` : ''}${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\nConnection: close\r\n`;
    if (auth !== undefined) lines += `Proxy-Authorization: ${auth}\r\n`;
    for (const [name, value] of Object.entries(request.headers)) lines += headerLine(name, value);
    lines += '\r\n';
    this.#request = request;
    this.#resolveHead = resolve;
    this.#rejectHead = reject;
    this.#buffer = pool.pop() ?? Buffer.allocUnsafeSlow(READ_BUFFER);
    const onread = { buffer: this.#buffer, callback: (n: number) => this.#read(n) };
    this.#timer = setTimeout(
      () =>
        this.#fail(
          new WireError('WIRE_CONNECT_TIMEOUT', `no connection within ${request.connectTimeoutMs} ms`),
        ),
      request.connectTimeoutMs,
    );
    this.#onAbort = () =>
      this.#fail(request.signal.reason instanceof Error ? request.signal.reason : new Error('aborted'));
    const tlsOptions = {
      host,
      port,
      // SNI takes a name, never an address.
      ...(isIP(host) === 0 ? { servername: host } : {}),
      ...(request.ca ? { ca: [...request.ca] } : {}),
      ALPNProtocols: ['http/1.1'],
    };
    if (proxy !== undefined && tls) {
      // TLS inside a CONNECT tunnel. tls.connect ignores onread when handed a socket, so this one path
      // reads through 'data' events (a fresh buffer per read) instead of the reused buffer.
      this.#socket = undefined;
      openTunnel({ proxy, host, port, timeoutMs: request.connectTimeoutMs, signal: request.signal }).then(
        (tunnel) => {
          if (this.#state !== 'connecting') {
            tunnel.destroy();
            return;
          }
          const socket = tlsConnect({ ...tlsOptions, socket: tunnel });
          this.#deferClose = true;
          socket.on('data', (chunk: Buffer) => {
            if (!this.#onBytes(chunk)) socket.pause();
          });
          this.#attach(socket, 'secureConnect', lines);
        },
        (err: Error) => this.#fail(err),
      );
    } else {
      const socket = tls
        ? tlsConnect({
            ...tlsOptions,
            // tls.connect takes net.connect's onread (Node.js docs), though @types/node does not say so.
            ...({ onread } as object),
          })
        : proxy !== undefined
          ? connectToProxy(proxy, onread)
          : netConnect({ host, port, onread });
      this.#attach(
        socket,
        tls || (proxy !== undefined && proxy.protocol === 'https:') ? 'secureConnect' : 'connect',
        lines,
      );
    }
    if (request.signal.aborted) this.#onAbort();
    else request.signal.addEventListener('abort', this.#onAbort, { once: true });
  }

  /** Sends the request once `socket` is ready, and watches it. */
  #attach(socket: Socket, ready: 'connect' | 'secureConnect', lines: string): void {
    this.#socket = socket;
    socket.once(ready, () => {
      if (this.#state !== 'connecting') return;
      this.#state = 'head';
      this.#arm(this.#request.timeoutMs, 'WIRE_HEADERS_TIMEOUT', 'no answer');
      socket.write(lines);
    });
    socket.on('error', (err) => this.#fail(err));
    socket.on('close', () => this.#closed());
  }

  #arm(ms: number, code: WireErrorCode, what: string): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#fail(new WireError(code, `${what} within ${ms} ms`)), ms);
  }

  /** onread: `n` bytes are in the read buffer; false pauses the socket. */
  #read(n: number): boolean {
    return this.#onBytes(this.#buffer.subarray(0, n));
  }

  /** Bytes read from the connection; false pauses it. */
  #onBytes(bytes: Buffer): boolean {
    if (this.#state === 'head') return this.#readHead(bytes);
    if (this.#state !== 'body') return false;
    this.#timer.refresh();
    try {
      return this.#deliver(bytes);
    } catch (err) {
      this.#fail(err as Error);
      return false;
    }
  }

  #readHead(bytes: Buffer): boolean {
    let from = Math.max(0, this.#head.length - 3);
    this.#head = Buffer.concat([this.#head, bytes]);
    for (;;) {
      const end = this.#head.indexOf('\r\n\r\n', from);
      if (end < 0 || end > MAX_HEAD_BYTES) {
        if (this.#head.length > MAX_HEAD_BYTES)
          this.#fail(new ProtocolError(`response head larger than ${MAX_HEAD_BYTES} bytes`));
        // Lines ended by LF alone would never give the CRLF CRLF awaited here: refused now rather
        // than at the timeout (parseHead refuses a bare LF inside a head that does end).
        else if (hasBareLf(this.#head))
          this.#fail(new ProtocolError('a line of the response head ends in LF without CR'));
        return this.#state === 'head';
      }
      let framing: ReturnType<typeof framingOf>;
      try {
        const head = parseHead(this.#head.toString('latin1', 0, end));
        if (head.statusCode < 200) {
          // 1xx: an interim answer; the real one follows.
          this.#head = this.#head.subarray(end + 4);
          from = 0;
          continue;
        }
        framing = framingOf(head);
        this.statusCode = head.statusCode;
        this.headers = head.headers;
      } catch (err) {
        this.#fail(err as Error);
        return false;
      }
      this.#framer = framer(framing);
      const rest = this.#head.subarray(end + 4);
      this.#head = Buffer.alloc(0);
      if (rest.length > 0) this.#early = rest;
      this.#state = 'waiting';
      clearTimeout(this.#timer);
      const resolve = this.#resolveHead;
      this.#resolveHead = undefined;
      this.#rejectHead = undefined;
      if (framing.kind === 'none' || (framing.kind === 'length' && framing.length === 0)) {
        this.#state = 'done';
        this.#release();
      }
      resolve?.(this);
      return false;
    }
  }

  pipeTo(sink: BodySink): Promise<void> {
    if (this.#sink !== undefined) return Promise.reject(new Error('the body is already being read'));
    if (this.#state === 'failed') return Promise.reject(this.#error);
    this.#sink = sink;
    if (this.#state === 'done') return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      this.#resolveBody = resolve;
      this.#rejectBody = reject;
      this.#state = 'body';
      this.#arm(this.#request.timeoutMs, 'WIRE_BODY_TIMEOUT', 'no body bytes');
      const early = this.#early;
      this.#early = undefined;
      try {
        if (early === undefined || this.#deliver(early)) this.#resume();
      } catch (err) {
        this.#fail(err as Error);
      }
    });
  }

  stream(): Readable {
    return readableOf(
      (sink) => this.pipeTo(sink),
      () => this.cancel(),
    );
  }

  cancel(): void {
    if (this.#state === 'done' || this.#state === 'failed') return;
    this.#fail(new WireError('WIRE_CANCELLED', 'the body was cancelled'));
  }

  /** Hands body bytes to the sink; false when it paused (the rest follows when its promise settles). */
  #deliver(bytes: Buffer): boolean {
    const { data, done } = (this.#framer as BodyFramer).take(bytes);
    return this.#feed(data, 0, done);
  }

  #feed(data: Buffer[], from: number, done: boolean): boolean {
    const sink = this.#sink as BodySink;
    for (let i = from; i < data.length; i++) {
      // The sink may have cancelled.
      if (this.#state !== 'body') return false;
      const wait = sink(data[i] as Buffer);
      if (wait !== undefined) {
        this.#held = true;
        clearTimeout(this.#timer);
        wait.then(
          () => {
            this.#held = false;
            if (this.#state !== 'body') return;
            this.#arm(this.#request.timeoutMs, 'WIRE_BODY_TIMEOUT', 'no body bytes');
            try {
              if (this.#feed(data, i + 1, done)) this.#resume();
            } catch (err) {
              this.#fail(err as Error);
            }
          },
          (err: Error) => {
            this.#held = false;
            this.#fail(err);
          },
        );
        return false;
      }
    }
    if (done) this.#finish();
    return !done;
  }

  #finish(): void {
    if (this.#state !== 'body') return;
    this.#state = 'done';
    this.#release();
    this.#resolveBody?.();
  }

  /** Reads on, or handles the close that came while the consumer was not reading. */
  #resume(): void {
    if (!this.#closePending) {
      this.#socket?.resume();
      return;
    }
    this.#closePending = false;
    this.#closed();
  }

  #closed(): void {
    if (this.#deferClose && (this.#held || this.#state === 'waiting')) {
      this.#closePending = true;
      return;
    }
    // A close ends a close-delimited body. It is only seen while reading, so never while the consumer
    // holds a chunk (the socket is paused then): closing then is a failure like any other.
    if (this.#state === 'body' && !this.#held && (this.#framer as BodyFramer).closeEnds()) {
      this.#finish();
      return;
    }
    const received = this.#framer?.received ?? 0;
    this.#fail(
      new WireError(
        'WIRE_CLOSED_EARLY',
        this.#state === 'connecting' || this.#state === 'head'
          ? 'the connection closed before an answer'
          : `the connection closed after ${received} body bytes`,
      ),
    );
  }

  #fail(err: Error): void {
    if (this.#state === 'done' || this.#state === 'failed') return;
    this.#state = 'failed';
    // Kept for a pipeTo that comes after the failure (the head was answered, nobody read the body yet).
    this.#error = err;
    this.#release();
    const rejectHead = this.#rejectHead;
    const rejectBody = this.#rejectBody;
    this.#rejectHead = undefined;
    this.#rejectBody = undefined;
    rejectHead?.(err);
    rejectBody?.(err);
  }

  #release(): void {
    clearTimeout(this.#timer);
    this.#request.signal.removeEventListener('abort', this.#onAbort);
    this.#socket?.destroy();
    // The buffer is free once nothing reads into it or holds a view of it.
    if (!this.#held) this.#giveBuffer();
  }

  #giveBuffer(): void {
    if (pool.length < POOL_MAX) pool.push(this.#buffer);
  }
}
