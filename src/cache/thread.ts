// Helper threads for downloads (digester.ts hashes units, writer.ts writes them): a worker run from
// source text (`eval`, so no file has to sit beside the bundle) that answers the messages that ask, each
// reply naming its request by sequence number. It starts on first use, keeps the process alive only
// while a question is unanswered, and when it dies every unanswered question fails and the next use
// starts a new one (a new generation: state the old one held, such as a hash under way, is gone).
//
// Each such thread costs about 11 MiB of resident memory, so the cache has two and no more, started only
// for downloads written with O_DIRECT (storage.directIO; blob-fetch.ts).
//
// Why not a worker-pool library (piscina): each thread's work must run in order on the one thread
// holding its state (the running SHA-256 of a download; the writes extending one file), while a pool
// hands each task to whichever worker is free. What the two threads buy: docs/decisions.md, "Threads".
import { Worker } from 'node:worker_threads';

interface Waiter {
  resolve(reply: Record<string, unknown>): void;
  reject(err: Error): void;
}

export class HelperThread {
  readonly #source: string;
  /** The error unanswered questions fail with when the thread dies. */
  readonly #lost: (reason: string, cause: unknown) => Error;
  #worker: Worker | undefined;
  #generation = 0;
  #seq = 0;
  readonly #waiting = new Map<number, Waiter>();

  constructor(source: string, lost: (reason: string, cause: unknown) => Error) {
    this.#source = source;
    this.#lost = lost;
  }

  /**
   * Starts the thread if it is not running and answers its generation; throws when no thread can be
   * started (thread limits), so the caller can do the work itself.
   */
  start(): number {
    this.#thread();
    return this.#generation;
  }

  /** Whether the thread of `generation` is still the one running. */
  running(generation: number): boolean {
    return this.#worker !== undefined && this.#generation === generation;
  }

  /** Sends a message that has no answer. */
  tell(message: Record<string, unknown>): void {
    this.#thread().postMessage(message);
  }

  /** Sends a message (as `{ ...message, seq }`) and answers the reply carrying the same `seq`. */
  ask(message: Record<string, unknown>): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const worker = this.#thread();
      const seq = ++this.#seq;
      this.#waiting.set(seq, { resolve, reject });
      if (this.#waiting.size === 1) worker.ref();
      worker.postMessage({ ...message, seq });
    });
  }

  #thread(): Worker {
    if (this.#worker) return this.#worker;
    const worker = new Worker(this.#source, { eval: true });
    this.#generation++;
    worker.on('message', (reply: Record<string, unknown>) => {
      const seq = reply.seq as number;
      const waiter = this.#waiting.get(seq);
      this.#waiting.delete(seq);
      if (this.#waiting.size === 0) worker.unref();
      waiter?.resolve(reply);
    });
    const fail = (reason: string, cause?: unknown) => {
      if (this.#worker !== worker) return;
      this.#worker = undefined;
      const waiters = [...this.#waiting.values()];
      this.#waiting.clear();
      const error = this.#lost(reason, cause);
      for (const waiter of waiters) waiter.reject(error);
    };
    worker.on('error', (err) => fail(err.message, err));
    worker.on('exit', (code) => fail(`exited with code ${code}`));
    // Idle, it must not keep the process alive (unref after the listeners: adding one refs it again).
    worker.unref();
    this.#worker = worker;
    return worker;
  }

  /** Ends the thread; questions unanswered fail as if it had died, and the next use starts a new one. */
  async terminate(): Promise<void> {
    await this.#worker?.terminate();
  }
}
