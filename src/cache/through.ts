// A blob served to one client without being kept: when the store has no room for it (the disk is full),
// upstream's bytes go through a small bounded queue straight to the client. As with a download, the
// last byte is held back until the digest checks out, so a corrupt or truncated blob never reaches the
// client as a whole one.
import { createHash, type Hash } from 'node:crypto';
import { digestAlgorithm } from '../core/reference/index.ts';
import { RegistryFailure } from '../registry/errors.ts';
import type { ByteSource } from './copy.ts';
import type { BlobStream } from './transport/blobs.ts';

/** Bytes queued for the client before upstream is held back (memory per blob streamed through). */
const QUEUE_BYTES = 4 * 2 ** 20;

export class StreamThrough implements ByteSource {
  readonly #blob: BlobStream;
  readonly #hash: Hash;
  /** Bytes before this are not wanted (a range's start): hashed, not queued. */
  readonly #from: number;
  readonly #queue: Buffer[] = [];
  /** Position of the first queued byte. */
  #base: number;
  #queued = 0;
  #received = 0;
  #verified = false;
  #error: Error | undefined;
  #progress: (() => void) | undefined;
  #drained: (() => void) | undefined;
  #done = false;

  /** Starts reading `blob` (fetched with checkDigest: false); bytes before `from` are skipped. */
  constructor(blob: BlobStream, from: number) {
    this.#blob = blob;
    this.#from = from;
    this.#base = from;
    this.#hash = createHash(digestAlgorithm(blob.digest));
    blob
      .pipeTo((chunk) => this.#take(chunk))
      .then(
        () => this.#end(),
        (err: unknown) => this.#fail(err instanceof Error ? err : new Error(String(err))),
      );
  }

  #take(chunk: Buffer): Promise<void> | undefined {
    this.#hash.update(chunk);
    const start = this.#received;
    this.#received += chunk.length;
    if (this.#received > this.#from) {
      const skip = Math.max(0, this.#from - start);
      // The chunk is a view of the transport's read buffer: the queue keeps a copy.
      this.#queue.push(Buffer.from(chunk.subarray(skip)));
      this.#queued += chunk.length - skip;
    }
    this.#wake();
    if (this.#queued < QUEUE_BYTES) return undefined;
    return new Promise((resolve) => {
      this.#drained = resolve;
    });
  }

  #end(): void {
    const actual = `${digestAlgorithm(this.#blob.digest)}:${this.#hash.digest('hex')}`;
    if (actual !== this.#blob.digest)
      this.#fail(new RegistryFailure('REG_DIGEST_MISMATCH', `blob content hashes to ${actual}`));
    else if (this.#blob.size !== undefined && this.#received !== this.#blob.size)
      this.#fail(
        new RegistryFailure(
          'REG_CONNECTION_FAILED',
          `upstream sent ${this.#received} of ${this.#blob.size} bytes`,
        ),
      );
    else {
      this.#verified = true;
      this.#done = true;
      this.#wake();
    }
  }

  #fail(error: Error): void {
    this.#error = error;
    this.#done = true;
    this.#wake();
  }

  #wake(): void {
    const progress = this.#progress;
    this.#progress = undefined;
    progress?.();
  }

  available(): number {
    return this.#verified ? this.#received : Math.max(this.#base, this.#received - 1);
  }

  complete(): boolean {
    return this.#verified;
  }

  more(): Promise<void> {
    if (this.#error) return Promise.reject(this.#error);
    if (this.#done) return Promise.resolve();
    return new Promise((resolve) => {
      this.#progress = resolve;
    });
  }

  /** Reads in order only (copy.ts does): what was read leaves the queue. */
  async read(buffer: Buffer, length: number, position: number): Promise<number> {
    if (position !== this.#base)
      throw new Error(`streamed-through blob read at ${position}, expected ${this.#base}`);
    let n = 0;
    while (n < length && this.#queue.length > 0) {
      const head = this.#queue[0] as Buffer;
      const take = Math.min(length - n, head.length);
      head.copy(buffer, n, 0, take);
      n += take;
      if (take === head.length) this.#queue.shift();
      else this.#queue[0] = head.subarray(take);
    }
    this.#base += n;
    this.#queued -= n;
    if (this.#queued < QUEUE_BYTES / 2) {
      const drained = this.#drained;
      this.#drained = undefined;
      drained?.();
    }
    return n;
  }

  /** Ends the transfer from upstream (the client went away, or it is over). */
  close(): void {
    if (!this.#done) this.#blob.cancel();
    const drained = this.#drained;
    this.#drained = undefined;
    drained?.();
  }
}
