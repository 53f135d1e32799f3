// Hashing a download: inline on the main thread, or off it for downloads written with O_DIRECT
// (storage.directIO, blob-fetch.ts), whose units live in shared memory (aligned.ts): the helper thread
// (thread.ts) hashes them in place while the main thread moves the next bytes, and a unit stays
// unchanged until the thread is done. SHA-256 costs about 120 ms of CPU per 200 MB wherever it runs; on
// a machine whose cores are busy anyway the thread buys little for its 11 MiB (docs/decisions.md,
// "Cache memory: no helper threads"), so page-cached downloads (the default, and units of ordinary
// memory when the shared pool was exhausted) hash inline.
import { createHash } from 'node:crypto';
import { digestAlgorithm } from '../core/reference/index.ts';
import { DigesterError } from './errors.ts';
import { HelperThread } from './thread.ts';

export interface Digester {
  /** Hashes `unit[0, length)` after everything before it; the bytes must not change until it settles. */
  update(unit: Buffer, length: number): Promise<void> | undefined;
  /** "algorithm:hex" of everything given to `update`. */
  digest(): Promise<string>;
  /** Drops the state of a digest not wanted any more. */
  dispose(): void;
}

/**
 * `digest` is "sha256:..." or "sha512:..."; with `shared`, units (from shared memory) go to the worker.
 * A worker that cannot be started (thread limits) leaves hashing on the main thread: equally correct.
 */
export function digesterFor(digest: string, shared: boolean): Digester {
  const algorithm = digestAlgorithm(digest);
  if (shared) {
    try {
      return new WorkerDigester(algorithm);
    } catch {
      // Falls through to inline hashing.
    }
  }
  return new InlineDigester(algorithm);
}

class InlineDigester implements Digester {
  readonly #algorithm: string;
  readonly #hash: ReturnType<typeof createHash>;

  constructor(algorithm: string) {
    this.#algorithm = algorithm;
    this.#hash = createHash(algorithm);
  }

  update(unit: Buffer, length: number): undefined {
    this.#hash.update(unit.subarray(0, length));
    return undefined;
  }

  digest(): Promise<string> {
    return Promise.resolve(`${this.#algorithm}:${this.#hash.digest('hex')}`);
  }

  dispose(): void {}
}

// The thread keeps one hash per digest under way and answers each update and digest, in order.
const HASH_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const hashes = new Map();
parentPort.on('message', (m) => {
  if (m.op === 'start') hashes.set(m.id, createHash(m.algorithm));
  else if (m.op === 'update') {
    hashes.get(m.id).update(new Uint8Array(m.memory, m.offset, m.length));
    parentPort.postMessage({ seq: m.seq });
  } else if (m.op === 'digest') {
    const hex = hashes.get(m.id).digest('hex');
    hashes.delete(m.id);
    parentPort.postMessage({ seq: m.seq, hex });
  } else if (m.op === 'drop') hashes.delete(m.id);
});
`;

/** The one hashing thread every download shares. */
const hashing = new HelperThread(
  HASH_SOURCE,
  (reason, cause) => new DigesterError(`the hashing thread failed: ${reason}`, { cause }),
);
let nextId = 1;

class WorkerDigester implements Digester {
  readonly #algorithm: string;
  readonly #id = nextId++;
  /** The thread holding this digest's state: a restarted thread no longer has it. */
  readonly #generation: number;

  constructor(algorithm: string) {
    this.#algorithm = algorithm;
    this.#generation = hashing.start();
    hashing.tell({ op: 'start', id: this.#id, algorithm });
  }

  update(unit: Buffer, length: number): Promise<void> {
    if (!(unit.buffer instanceof SharedArrayBuffer))
      return Promise.reject(new DigesterError('a unit outside shared memory cannot be hashed off-thread'));
    return this.#ask({
      op: 'update',
      id: this.#id,
      memory: unit.buffer,
      offset: unit.byteOffset,
      length,
    }).then(() => {});
  }

  async digest(): Promise<string> {
    const { hex } = await this.#ask({ op: 'digest', id: this.#id });
    return `${this.#algorithm}:${hex as string}`;
  }

  dispose(): void {
    if (hashing.running(this.#generation)) hashing.tell({ op: 'drop', id: this.#id });
  }

  #ask(message: Record<string, unknown>): Promise<Record<string, unknown>> {
    if (!hashing.running(this.#generation))
      return Promise.reject(new DigesterError('the hashing thread was restarted: this digest is lost'));
    return hashing.ask(message);
  }
}

/** Ends the hashing thread; digests under way fail with DigesterError, later ones start a new thread. */
export function stopHashing(): Promise<void> {
  return hashing.terminate();
}
