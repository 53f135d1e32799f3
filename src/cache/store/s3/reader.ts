// A stored blob read from the bucket, for a client: ranged GETs from where the first read asks.
import type { Readable } from 'node:stream';
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { BlobReader } from '../types.ts';

/** A stored blob read from the bucket, in order, from where the first read asks (a ranged GET). */
export class ObjectReader implements BlobReader {
  readonly #client: S3Client;
  readonly #bucket: string;
  readonly #key: string;
  readonly #size: number;
  readonly #failure: (err: unknown) => Error;
  #body: Readable | undefined;
  #chunks: AsyncIterator<Buffer> | undefined;
  #pending: Buffer | undefined;
  #position = -1;

  constructor(client: S3Client, bucket: string, key: string, size: number, failure: (err: unknown) => Error) {
    this.#client = client;
    this.#bucket = bucket;
    this.#key = key;
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

  async read(buffer: Buffer, length: number, position: number): Promise<number> {
    if (position !== this.#position) await this.#open(position);
    let chunk = this.#pending;
    if (chunk === undefined || chunk.length === 0) {
      let next: IteratorResult<Buffer>;
      try {
        next = await (this.#chunks as AsyncIterator<Buffer>).next();
      } catch (err) {
        throw this.#failure(err);
      }
      if (next.done) return 0;
      chunk = next.value;
    }
    const n = chunk.copy(buffer, 0, 0, Math.min(length, chunk.length));
    this.#pending = chunk.subarray(n);
    this.#position += n;
    return n;
  }

  async #open(position: number): Promise<void> {
    await this.close();
    let res: { Body?: unknown };
    try {
      res = await this.#client.send(
        new GetObjectCommand({
          Bucket: this.#bucket,
          Key: this.#key,
          Range: `bytes=${position}-${this.#size - 1}`,
        }),
      );
    } catch (err) {
      throw this.#failure(err);
    }
    this.#body = res.Body as Readable;
    this.#chunks = this.#body[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
    this.#pending = undefined;
    this.#position = position;
  }

  async close(): Promise<void> {
    this.#body?.destroy();
    this.#body = undefined;
    this.#chunks = undefined;
  }
}
