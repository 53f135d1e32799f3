// Hashing a download off the main thread. SHA-256 is the largest single cost of a cold pull-through
// (about 120 ms of CPU per 200 MB here, README, cache: "Throughput"); on the main thread it delays
// every other byte of every download. A download's units live in shared memory (aligned.ts), so one
// worker thread can hash them in place while the main thread moves the next bytes: the unit is kept
// unchanged until the worker says it is done with it.
//
// A download whose units are ordinary buffers (the shared pool was exhausted) is hashed inline.
import { createHash } from 'node:crypto';
import { Worker } from 'node:worker_threads';

export interface Digester {
  /** Hashes `unit[0, length)` after everything before it; the bytes must not change until it settles. */
  update(unit: Buffer, length: number): Promise<void> | undefined;
  /** "algorithm:hex" of everything given to `update`. */
  digest(): Promise<string>;
  /** Drops the state of a digest not wanted any more. */
  dispose(): void;
}

/** The worker thread dies or cannot start: downloads hashing there fail with this. */
export class DigesterError extends Error {
  override readonly name = 'DigesterError';
}

/**
 * `digest` is "sha256:..." or "sha512:..."; units from shared memory go to the worker. A worker that
 * cannot be started (thread limits) leaves hashing on the main thread: slower, equally correct.
 */
export function digesterFor(digest: string, shared: boolean): Digester {
  const algorithm = digest.startsWith('sha512:') ? 'sha512' : 'sha256';
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

// The worker keeps one hash per digest under way and answers each message in order. It is CommonJS
// source run with `eval`, so it needs no file of its own next to the bundle.
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const hashes = new Map();
parentPort.on('message', (m) => {
  if (m.op === 'start') hashes.set(m.id, createHash(m.algorithm));
  else if (m.op === 'update') {
    hashes.get(m.id).update(new Uint8Array(m.memory, m.offset, m.length));
    parentPort.postMessage({ id: m.id, op: 'updated' });
  } else if (m.op === 'digest') {
    const hex = hashes.get(m.id).digest('hex');
    hashes.delete(m.id);
    parentPort.postMessage({ id: m.id, op: 'digest', hex });
  } else if (m.op === 'drop') hashes.delete(m.id);
});
`;

interface Reply {
  readonly id: number;
  readonly op: 'updated' | 'digest';
  readonly hex?: string;
}

interface Waiter {
  resolve(hex: string | undefined): void;
  reject(err: Error): void;
}

/** The one hashing thread, started on first use and restarted after a failure. */
class HashThread {
  #worker: Worker | undefined;
  #nextId = 1;
  /** Per digest, its requests not yet answered, in order (the worker answers in order). */
  readonly #waiting = new Map<number, Waiter[]>();
  /** Requests not yet answered: the thread keeps the process alive only while there are some. */
  #outstanding = 0;

  open(algorithm: string): number {
    const id = this.#nextId++;
    this.#waiting.set(id, []);
    this.#post({ op: 'start', id, algorithm });
    return id;
  }

  ask(id: number, message: Record<string, unknown>): Promise<string | undefined> {
    const queue = this.#waiting.get(id);
    if (queue === undefined) return Promise.reject(new DigesterError('the hashing thread was restarted'));
    return new Promise((resolve, reject) => {
      queue.push({ resolve, reject });
      this.#post({ ...message, id });
      if (this.#outstanding++ === 0) this.#worker?.ref();
    });
  }

  close(id: number): void {
    if (this.#waiting.delete(id)) this.#post({ op: 'drop', id });
  }

  #post(message: Record<string, unknown>): void {
    this.#thread().postMessage(message);
  }

  #thread(): Worker {
    if (this.#worker) return this.#worker;
    const worker = new Worker(WORKER_SOURCE, { eval: true });
    worker.on('message', (reply: Reply) => {
      if (--this.#outstanding === 0) worker.unref();
      this.#waiting.get(reply.id)?.shift()?.resolve(reply.hex);
    });
    const fail = (err: Error) => {
      if (this.#worker !== worker) return;
      this.#worker = undefined;
      this.#outstanding = 0;
      const error = new DigesterError(`the hashing thread failed: ${err.message}`);
      for (const queue of this.#waiting.values()) for (const w of queue.splice(0)) w.reject(error);
      // Its hashes are gone with it: every digest it held is lost.
      this.#waiting.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`exited with code ${code}`)));
    // Idle, it must not keep the process alive (unref after the listeners: adding one refs it again).
    worker.unref();
    this.#worker = worker;
    return worker;
  }
}

const thread = new HashThread();

class WorkerDigester implements Digester {
  readonly #algorithm: string;
  readonly #id: number;

  constructor(algorithm: string) {
    this.#algorithm = algorithm;
    this.#id = thread.open(algorithm);
  }

  update(unit: Buffer, length: number): Promise<void> {
    if (!(unit.buffer instanceof SharedArrayBuffer))
      return Promise.reject(new DigesterError('a unit outside shared memory cannot be hashed off-thread'));
    return thread
      .ask(this.#id, { op: 'update', memory: unit.buffer, offset: unit.byteOffset, length })
      .then(() => {});
  }

  async digest(): Promise<string> {
    const hex = await thread.ask(this.#id, { op: 'digest' });
    thread.close(this.#id);
    return `${this.#algorithm}:${hex}`;
  }

  dispose(): void {
    thread.close(this.#id);
  }
}
