// A stored blob read from the bucket, for a client: ranged GETs from where the first read asks.
import type { WireResponse } from '../../transport/wire.ts';
import type { BlobReader } from '../types.ts';

/** Opens a GET of the object from `position` to its end on the blob transport (a presigned URL). */
export type RangeOpener = (position: number) => Promise<WireResponse>;

/**
 * A stored blob read from the bucket on the blob transport (wire.ts) instead of the SDK's HTTP client:
 * the answer's bytes arrive as views of one reused 1 MiB read buffer, each held (the connection paused)
 * until `read` has copied it out. The warm path of an S3 replica is this copy and the client's; the
 * SDK's stream cost more CPU per byte than the service on the same two cores (docs/decisions.md).
 */
export class WireObjectReader implements BlobReader {
  readonly #open: RangeOpener;
  readonly #size: number;
  readonly #failure: (err: unknown) => Error;
  #response: WireResponse | undefined;
  /** The view handed over by the transport, and how to let it go on once it is copied out. */
  #chunk: Buffer | undefined;
  #release: (() => void) | undefined;
  /** Wakes a `read` waiting for the next view or the end. */
  #wake: (() => void) | undefined;
  #ended = false;
  #error: unknown;
  #position = -1;

  constructor(open: RangeOpener, size: number, failure: (err: unknown) => Error) {
    this.#open = open;
    this.#size = size;
    this.#failure = failure;
  }

  available(): number {
    return this.#size;
  }

  complete(): boolean {
    return true;
  }

  more(): Promise<void> {
    return Promise.reject(new Error('a stored blob does not grow'));
  }

  /** Starts the bucket read before the response's headers: a bucket that fails now gets a clean 503. */
  async prepare(position: number): Promise<void> {
    if (position !== this.#position) await this.#start(position);
  }

  async read(buffer: Buffer, length: number, position: number): Promise<number> {
    if (position !== this.#position) await this.#start(position);
    let filled = 0;
    while (filled < length) {
      const chunk = await this.#next();
      if (chunk === undefined) break;
      const n = chunk.copy(buffer, filled, 0, Math.min(length - filled, chunk.length));
      filled += n;
      if (n === chunk.length) {
        this.#chunk = undefined;
        const release = this.#release;
        this.#release = undefined;
        release?.();
      } else this.#chunk = chunk.subarray(n);
    }
    this.#position += filled;
    return filled;
  }

  /** The current view, or the next one once the transport hands it over; undefined at the end. */
  async #next(): Promise<Buffer | undefined> {
    for (;;) {
      if (this.#chunk !== undefined) return this.#chunk;
      if (this.#error !== undefined) throw this.#failure(this.#error);
      if (this.#ended) return undefined;
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
      });
    }
  }

  async #start(position: number): Promise<void> {
    await this.close();
    this.#ended = false;
    this.#error = undefined;
    let response: WireResponse;
    try {
      response = await this.#open(position);
    } catch (err) {
      throw this.#failure(err);
    }
    this.#response = response;
    this.#position = position;
    const wake = (): void => {
      const w = this.#wake;
      this.#wake = undefined;
      w?.();
    };
    response
      .pipeTo(
        (view) =>
          new Promise<void>((resolve) => {
            this.#chunk = view;
            this.#release = resolve;
            wake();
          }),
      )
      .then(
        () => {
          if (this.#response === response) this.#ended = true;
          wake();
        },
        (err: unknown) => {
          if (this.#response === response) this.#error = err;
          wake();
        },
      );
  }

  async close(): Promise<void> {
    const response = this.#response;
    this.#response = undefined;
    this.#chunk = undefined;
    const release = this.#release;
    this.#release = undefined;
    response?.cancel();
    release?.();
  }
}
