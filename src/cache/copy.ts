// Copying blob bytes to a client with two reused buffers: one is read into while the other is being
// written, and the next read into a buffer waits until its previous write has left the process. Buffers
// come from a small free list, so memory stays flat however many gigabytes are served (allocating a
// fresh buffer per read lets the allocator's heap grow under load).
import type { Writable } from 'node:stream';
import { ClientGone } from './errors.ts';

const CHUNK = 512 * 1024;
const POOL_MAX = 32;
const pool: Buffer[] = [];

function take(): Buffer {
  return pool.pop() ?? Buffer.allocUnsafeSlow(CHUNK);
}

function give(buffer: Buffer): void {
  if (pool.length < POOL_MAX) pool.push(buffer);
}

/** Where bytes come from: a stored file, or a download still being written. */
export interface ByteSource {
  /** Bytes that may be read now, counted from offset 0. */
  available(): number;
  /** Whether `available()` is final (the source is complete). */
  complete(): boolean;
  read(buffer: Buffer, length: number, position: number): Promise<number>;
  /** Resolves when more bytes may be available; rejects when the source failed. */
  more(): Promise<void>;
  /**
   * Opens the source at `position` before any header is sent, so a store that cannot be read answers a
   * clean error instead of a 200 cut short (a bucket read starts a request; a file needs nothing).
   */
  prepare?(position: number): Promise<void>;
}

function write(out: Writable, chunk: Buffer, gone: Promise<never>): Promise<void> {
  if (out.destroyed) return Promise.reject(new ClientGone());
  return Promise.race([
    new Promise<void>((resolve, reject) =>
      out.write(chunk, (err) => (err ? reject(new ClientGone({ cause: err })) : resolve())),
    ),
    gone,
  ]);
}

/**
 * Writes bytes [start, end] (end inclusive; undefined: until the source is complete) of `source` to
 * `out`, without ending it. Rejects when the source fails or the client goes away; the caller then
 * destroys `out`, so a client never sees a short body as a complete one.
 */
export async function copyRange(
  source: ByteSource,
  start: number,
  end: number | undefined,
  out: Writable,
  onBytes: (n: number) => void,
): Promise<void> {
  const gone = new Promise<never>((_, reject) => out.once('close', () => reject(new ClientGone())));
  gone.catch(() => {});
  const buffers = [take(), take()] as const;
  let pending: Promise<void> | undefined;
  let pos = start;
  try {
    for (let i = 0; ; i ^= 1) {
      const limit = end === undefined ? source.available() : Math.min(source.available(), end + 1);
      if (pos >= limit) {
        if ((end !== undefined && pos > end) || source.complete()) break;
        await Promise.race([source.more(), gone]);
        i ^= 1; // nothing was read into this buffer
        continue;
      }
      const buffer = buffers[i] as Buffer;
      const n = await source.read(buffer, Math.min(CHUNK, limit - pos), pos);
      if (n === 0) throw new Error(`stored blob ends at ${pos}, before ${limit}`);
      pos += n;
      if (pending) await pending;
      pending = write(out, buffer.subarray(0, n), gone);
      // Awaited at the next turn; until then a client gone must not count as unhandled.
      pending.catch(() => {});
      onBytes(n);
    }
    if (pending) await pending;
  } finally {
    // A write still in flight keeps its buffer; only buffers no write holds go back.
    if (pending === undefined) {
      give(buffers[0]);
      give(buffers[1]);
    } else {
      await pending.then(
        () => {
          give(buffers[0]);
          give(buffers[1]);
        },
        () => {},
      );
    }
  }
}
