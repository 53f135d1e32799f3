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

export type ScanExcess = 'values' | 'depth';

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
  #captured: Buffer[] = [];
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
    const n = chunk.length;
    // Next quote and backslash at or after the position, searched again only once passed: linear.
    let quote = -2;
    let backslash = -2;
    let i = 0;
    while (i < n) {
      if (this.#inString) {
        if (this.#escaped) {
          this.#escaped = false;
          this.#keep(chunk, i, i + 1);
          i++;
          continue;
        }
        if (quote !== -1 && quote < i) quote = chunk.indexOf(QUOTE, i);
        if (backslash !== -1 && backslash < i) backslash = chunk.indexOf(BACKSLASH, i);
        const stop = quote === -1 ? n : quote;
        if (backslash !== -1 && backslash < stop) {
          // An escape: skip the escaped byte (it may be a quote), in the next chunk if need be.
          const end = Math.min(backslash + 2, n);
          this.#keep(chunk, i, end);
          if (backslash + 1 >= n) this.#escaped = true;
          i = end;
          continue;
        }
        this.#keep(chunk, i, stop);
        i = stop;
        if (quote === -1) continue;
        this.#inString = false;
        this.#endString();
        i++;
        continue;
      }
      const b = chunk[i]!;
      i++;
      if (b === QUOTE) this.#startString();
      else if (b === OPEN_OBJECT || b === OPEN_ARRAY) this.#open(b === OPEN_OBJECT);
      else if (b === CLOSE_OBJECT || b === CLOSE_ARRAY) {
        if (this.#depth > 0) this.#depth--;
        this.#expectKey = false;
      } else if (b === COMMA) {
        this.#count();
        if (this.#depth <= 2 && this.#isObject[this.#depth]) this.#expectKey = true;
      }
    }
  }

  #count(): void {
    this.#values++;
    if (this.#values > this.#limits.maxValues) this.#excess ??= 'values';
  }

  #open(object: boolean): void {
    this.#count();
    const depth = ++this.#depth;
    if (depth > this.#limits.maxDepth) this.#excess ??= 'depth';
    if (depth > 2) return;
    this.#isObject[depth] = object;
    this.#lastKey[depth] = '';
    this.#expectKey = object;
    if (depth === 2) this.#inRequest = object && this.#isObject[1] === true && this.#lastKey[1] === 'request';
  }

  #startString(): void {
    this.#inString = true;
    const depth = this.#depth;
    this.#capture = undefined;
    if (depth === 0 || depth > 2 || !this.#isObject[depth]) return;
    if (this.#expectKey) this.#capture = 'key';
    else if (depth === 2 && this.#inRequest && this.#lastKey[2] === 'uid') this.#capture = 'uid';
    this.#captured = [];
    this.#capturedBytes = 0;
  }

  #keep(chunk: Buffer, from: number, to: number): void {
    if (this.#capture === undefined || to <= from) return;
    this.#capturedBytes += to - from;
    const limit = this.#capture === 'key' ? MAX_KEY_BYTES : MAX_UID_BYTES;
    if (this.#capturedBytes <= limit) this.#captured.push(chunk.subarray(from, to));
  }

  #endString(): void {
    const capture = this.#capture;
    if (capture === undefined) return;
    this.#capture = undefined;
    const limit = capture === 'key' ? MAX_KEY_BYTES : MAX_UID_BYTES;
    const text = this.#capturedBytes > limit ? undefined : decode(Buffer.concat(this.#captured));
    this.#captured = [];
    if (capture === 'key') {
      this.#lastKey[this.#depth] = text ?? '';
      this.#expectKey = false;
    } else if (text !== undefined) this.#uid = text;
  }
}

/** A JSON string's content (without quotes) as text; escapes resolved. */
function decode(raw: Buffer): string | undefined {
  const text = raw.toString('utf8');
  if (!text.includes('\\')) return text;
  try {
    return JSON.parse(`"${text}"`) as string;
  } catch {
    return undefined;
  }
}
