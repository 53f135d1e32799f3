// HTTP/1.1 response framing for the blob transport (wire.ts): the status line and headers, then how the
// body ends (Content-Length, chunked transfer coding, or the connection closing). Pure: bytes in, views
// of those bytes out, so the transport can hand a body to its consumer without copying it.
import type { IncomingHttpHeaders } from 'node:http';
import { ProtocolError } from '../errors.ts';

/** A response head larger than this is refused (undici's default limit is the same order). */
export const MAX_HEAD_BYTES = 64 * 1024;
/** A chunk-size line (with extensions) or trailer line longer than this is refused. */
const MAX_LINE = 4096;

export interface ResponseHead {
  readonly statusCode: number;
  /** HTTP/1.0 or 1.1 (absent: 1.1). */
  readonly version?: '1.0' | '1.1';
  /** Lower-case names; a header sent more than once is an array, as undici gives it. */
  readonly headers: IncomingHttpHeaders;
}

const STATUS_LINE = /^HTTP\/1\.([01]) ([1-9]\d\d)(?: .*)?$/;
/** Control characters other than HTAB: never in a field value (RFC 9110 §5.5), nor CR or LF alone. */
const CONTROL = /[\0-\x08\x0a-\x1f\x7f]/;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** Whether `name` is an RFC 9110 token, as header field names must be. */
export function isToken(name: string): boolean {
  return TOKEN.test(name);
}

/** Parses a head without its final empty line ("HTTP/1.1 200 OK\r\nName: value\r\n..."). */
export function parseHead(text: string): ResponseHead {
  const lines = text.split('\r\n');
  const status = STATUS_LINE.exec(lines[0] ?? '');
  if (status === null) throw new ProtocolError(`not an HTTP/1.1 status line: ${JSON.stringify(lines[0])}`);
  const headers: Record<string, string | string[]> = {};
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i] as string;
    const colon = line.indexOf(':');
    const name = colon > 0 ? line.slice(0, colon) : '';
    // RFC 9112 §5.1: no whitespace between the name and the colon; obsolete line folding is refused.
    if (!isToken(name)) throw new ProtocolError(`malformed header line ${JSON.stringify(line)}`);
    const key = name.toLowerCase();
    const raw = line.slice(colon + 1);
    // A bare CR or LF would end the line for some other parser (response splitting); NUL and other
    // controls are not field content. Checked before trimming, which would drop a trailing LF.
    if (CONTROL.test(raw)) throw new ProtocolError(`header ${name} holds a control character`);
    const value = raw.trim();
    const seen = headers[key];
    if (seen === undefined) headers[key] = value;
    else if (Array.isArray(seen)) seen.push(value);
    else headers[key] = [seen, value];
  }
  return { statusCode: Number(status[2]), version: status[1] === '0' ? '1.0' : '1.1', headers };
}

/** How the body of a response to a GET ends. */
export type Framing =
  | { readonly kind: 'none' }
  | { readonly kind: 'length'; readonly length: number }
  | { readonly kind: 'chunked' }
  | { readonly kind: 'close' };

/** RFC 9112 §6.3, for a response to GET. */
export function framingOf(head: ResponseHead): Framing {
  const status = head.statusCode;
  if (status < 200 || status === 204 || status === 304) return { kind: 'none' };
  const te = head.headers['transfer-encoding'];
  const cl = head.headers['content-length'];
  if (te !== undefined) {
    // RFC 9112 §6.1 and §6.3: both, or a transfer coding in HTTP/1.0, "ought to be handled as an error"
    // (what request smuggling and response splitting look like); undici refuses both too.
    if (cl !== undefined)
      throw new ProtocolError('both Transfer-Encoding and Content-Length: the framing is ambiguous');
    if (head.version === '1.0') throw new ProtocolError('Transfer-Encoding in an HTTP/1.0 answer');
    const codings = (Array.isArray(te) ? te.join(',') : te)
      .split(',')
      .map((c) => c.trim().toLowerCase())
      .filter((c) => c !== '');
    // Only chunked is understood; anything else (gzip...) was not asked for and cannot be framed.
    if (codings.length !== 1 || codings[0] !== 'chunked')
      throw new ProtocolError(`unsupported Transfer-Encoding ${JSON.stringify(te)}`);
    return { kind: 'chunked' };
  }
  if (cl !== undefined) {
    const values = new Set(
      (Array.isArray(cl) ? cl : [cl]).flatMap((v: string) => v.split(',').map((part) => part.trim())),
    );
    const [only] = values;
    if (values.size !== 1 || only === undefined || !/^\d{1,15}$/.test(only))
      throw new ProtocolError(`invalid Content-Length ${JSON.stringify(cl)}`);
    return { kind: 'length', length: Number(only) };
  }
  return { kind: 'close' };
}

/** Body bytes found in one read, and whether the body ended there (bytes after the end are ignored). */
export interface Taken {
  readonly data: Buffer[];
  readonly done: boolean;
}

/** Splits reads into body bytes by one framing; `take` returns views of its argument. */
export interface BodyFramer {
  take(bytes: Buffer): Taken;
  /** Bytes of body delivered so far. */
  readonly received: number;
  /** Whether the connection closing now ends the body properly. */
  closeEnds(): boolean;
}

export function framer(framing: Framing): BodyFramer {
  switch (framing.kind) {
    case 'none':
      return new LengthFramer(0);
    case 'length':
      return new LengthFramer(framing.length);
    case 'chunked':
      return new ChunkedFramer();
    case 'close':
      return new CloseFramer();
  }
}

class LengthFramer implements BodyFramer {
  received = 0;
  readonly #length: number;

  constructor(length: number) {
    this.#length = length;
  }

  take(bytes: Buffer): Taken {
    const n = Math.min(bytes.length, this.#length - this.received);
    this.received += n;
    return { data: n > 0 ? [n === bytes.length ? bytes : bytes.subarray(0, n)] : [], done: this.closeEnds() };
  }

  closeEnds(): boolean {
    return this.received === this.#length;
  }
}

class CloseFramer implements BodyFramer {
  received = 0;

  take(bytes: Buffer): Taken {
    this.received += bytes.length;
    return { data: bytes.length > 0 ? [bytes] : [], done: false };
  }

  closeEnds(): boolean {
    return true;
  }
}

const LF = 10;

/** RFC 9112 §7.1: hex size line (extensions ignored), data, CRLF; a zero size, trailers, empty line. */
class ChunkedFramer implements BodyFramer {
  received = 0;
  #state: 'size' | 'data' | 'data-end' | 'trailer' | 'done' = 'size';
  /** The line being read (size or trailer line), kept across reads. */
  #line = '';
  /** Data bytes left in the current chunk. */
  #left = 0;

  take(bytes: Buffer): Taken {
    const data: Buffer[] = [];
    let i = 0;
    while (i < bytes.length && this.#state !== 'done') {
      if (this.#state === 'data') {
        const n = Math.min(this.#left, bytes.length - i);
        data.push(bytes.subarray(i, i + n));
        this.received += n;
        this.#left -= n;
        i += n;
        if (this.#left === 0) this.#state = 'data-end';
        continue;
      }
      const lf = bytes.indexOf(LF, i);
      const end = lf < 0 ? bytes.length : lf;
      this.#line += bytes.toString('latin1', i, end);
      if (this.#line.length > MAX_LINE) throw new ProtocolError('chunked body: a line is too long');
      i = end;
      if (lf < 0) break;
      i++; // past the LF
      if (!this.#line.endsWith('\r')) throw new ProtocolError('chunked body: a line does not end in CRLF');
      const line = this.#line.slice(0, -1);
      this.#line = '';
      this.#endLine(line);
    }
    return { data, done: this.#state === 'done' };
  }

  #endLine(line: string): void {
    if (this.#state === 'data-end') {
      if (line !== '') throw new ProtocolError('chunked body: chunk data longer than its size');
      this.#state = 'size';
    } else if (this.#state === 'size') {
      const size = /^([0-9A-Fa-f]{1,12})[ \t]*(?:;.*)?$/.exec(line);
      if (size === null) throw new ProtocolError(`chunked body: invalid chunk size ${JSON.stringify(line)}`);
      this.#left = Number.parseInt(size[1] as string, 16);
      this.#state = this.#left === 0 ? 'trailer' : 'data';
    } else if (line === '') this.#state = 'done';
    // Trailer fields are read past and ignored.
  }

  closeEnds(): boolean {
    return this.#state === 'done';
  }
}
