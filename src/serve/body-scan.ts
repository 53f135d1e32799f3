// A linear pre-scan of a JSON request body, fed chunk by chunk as it arrives, before JSON.parse
// materialises it. JSON.parse costs about 100 bytes of heap per tiny value (`[[],[],…]`: 8 MiB of them
// took the webhook from 77 to 352 MiB), so a body with absurd value counts or nesting is refused before it
// is parsed, and without keeping its bytes. It also picks out `request.uid`, so a refused AdmissionReview
// can still be answered as a review (the failure policy's answer) rather than as an HTTP error.

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const COMMA = 0x2c;

/** Keys longer than this are not captured (only "request" and "uid" matter). */
const MAX_KEY_BYTES = 16;
/** The envelope allows 256 characters; a longer uid is not captured (parseReview would refuse it). */
const MAX_UID_BYTES = 1024;

export interface ScanLimits {
  /** Containers plus separators: about one per value or object member. */
  readonly maxValues: number;
  readonly maxDepth: number;
}

type ScanExcess = 'values' | 'depth';

export class BodyScan {
  readonly #limits: ScanLimits;
  #values = 0;
  #depth = 0;
  #inString = false;
  #escaped = false;
  // The first two levels (the envelope and its "request" object) are followed to find request.uid.
  readonly #isObject = [false, false, false];
  readonly #lastKey = ['', '', ''];
  #expectKey = false;
  #inRequest = false;
  #capture: 'key' | 'uid' | undefined;
  /** The captured string so far, one char per byte (latin1), decoded once it ends. */
  #captured = '';
  #capturedBytes = 0;
  #uid: string | undefined;
  #excess: ScanExcess | undefined;

  constructor(limits: ScanLimits) {
    this.#limits = limits;
  }

  /** The first limit the body went over, if any (sticky). */
  get excess(): ScanExcess | undefined {
    return this.#excess;
  }

  get values(): number {
    return this.#values;
  }

  /** `request.uid` once the scan has passed it (the last one, as JSON.parse would keep). */
  get uid(): string | undefined {
    return this.#uid;
  }

  feed(chunk: Buffer): void {
    // The hot loop keeps its state in locals; only the first two levels call out (to find the uid).
    const maxDepth = this.#limits.maxDepth;
    let values = this.#values;
    let depth = this.#depth;
    let inString = this.#inString;
    let escaped = this.#escaped;
    let captureFrom = this.#capture === undefined ? -1 : 0;
    const n = chunk.length;
    for (let i = 0; i < n; i++) {
      const b = chunk[i]!;
      if (inString) {
        if (escaped) escaped = false;
        else if (b === BACKSLASH) escaped = true;
        else if (b === QUOTE) {
          inString = false;
          if (captureFrom >= 0) {
            this.#endString(chunk, captureFrom, i, depth);
            captureFrom = -1;
          }
        }
      } else if (b === QUOTE) {
        inString = true;
        if (depth <= 2 && this.#startString(depth)) captureFrom = i + 1;
      } else if (b === OPEN_OBJECT || b === OPEN_ARRAY) {
        values++;
        depth++;
        if (depth <= 2) this.#open(depth, b === OPEN_OBJECT);
        else if (depth > maxDepth) this.#excess ??= 'depth';
      } else if (b === CLOSE_OBJECT || b === CLOSE_ARRAY) {
        if (depth > 0) depth--;
        if (depth <= 2) this.#expectKey = false;
      } else if (b === COMMA) {
        values++;
        if (depth <= 2 && this.#isObject[depth]) this.#expectKey = true;
      }
    }
    if (captureFrom >= 0) this.#keep(chunk, captureFrom, n);
    this.#values = values;
    this.#depth = depth;
    this.#inString = inString;
    this.#escaped = escaped;
    if (values > this.#limits.maxValues) this.#excess ??= 'values';
  }

  #open(depth: number, object: boolean): void {
    if (depth > this.#limits.maxDepth) this.#excess ??= 'depth';
    this.#isObject[depth] = object;
    this.#lastKey[depth] = '';
    this.#expectKey = object;
    if (depth === 2) this.#inRequest = object && this.#isObject[1] === true && this.#lastKey[1] === 'request';
  }

  /** Whether the string starting now is captured: a key of the first two levels, or request.uid. */
  #startString(depth: number): boolean {
    this.#capture = undefined;
    if (depth === 0 || !this.#isObject[depth]) return false;
    if (this.#expectKey) this.#capture = 'key';
    else if (depth === 2 && this.#inRequest && this.#lastKey[2] === 'uid') this.#capture = 'uid';
    else return false;
    this.#captured = '';
    this.#capturedBytes = 0;
    return true;
  }

  #keep(chunk: Buffer, from: number, to: number): void {
    if (this.#capture === undefined || to <= from) return;
    this.#capturedBytes += to - from;
    const limit = this.#capture === 'key' ? MAX_KEY_BYTES : MAX_UID_BYTES;
    if (this.#capturedBytes <= limit) this.#captured += chunk.toString('latin1', from, to);
  }

  #endString(chunk: Buffer, from: number, to: number, depth: number): void {
    const capture = this.#capture;
    if (capture === undefined) return;
    if (capture === 'key' && this.#capturedBytes === 0) {
      // The common case, a key within one chunk: only "request" and "uid" matter, compared in place.
      this.#capture = undefined;
      this.#lastKey[depth] = keyName(chunk, from, to);
      this.#expectKey = false;
      return;
    }
    this.#keep(chunk, from, to);
    this.#capture = undefined;
    const limit = capture === 'key' ? MAX_KEY_BYTES : MAX_UID_BYTES;
    const text = this.#capturedBytes > limit ? undefined : decode(this.#captured);
    this.#captured = '';
    if (capture === 'key') {
      this.#lastKey[depth] = text ?? '';
      this.#expectKey = false;
    } else if (text !== undefined) this.#uid = text;
  }
}

const UID = Buffer.from('uid');
const REQUEST = Buffer.from('request');

function keyName(chunk: Buffer, from: number, to: number): string {
  const length = to - from;
  if (length === 3 && UID.compare(chunk, from, to) === 0) return 'uid';
  if (length === 7 && REQUEST.compare(chunk, from, to) === 0) return 'request';
  return '';
}

/** A JSON string's content (without quotes, one char per byte) as text: UTF-8 decoded, escapes resolved. */
function decode(bytes: string): string | undefined {
  const text = /[\u0080-\u00ff]/.test(bytes) ? Buffer.from(bytes, 'latin1').toString('utf8') : bytes;
  if (!text.includes('\\')) return text;
  try {
    return JSON.parse(`"${text}"`) as string;
  } catch {
    return undefined;
  }
}
