// A counting semaphore with a bounded FIFO queue; a waiter leaves the queue when its signal aborts.
import { QueueFullError } from './errors.ts';

export type Release = () => void;

interface Waiter {
  readonly grant: (release: Release) => void;
  readonly cleanup: () => void;
}

export class Semaphore {
  readonly #limit: number;
  readonly #maxQueue: number;
  #active = 0;
  readonly #queue: Waiter[] = [];

  constructor(limit: number, maxQueue = Number.POSITIVE_INFINITY) {
    this.#limit = Math.max(1, limit);
    this.#maxQueue = maxQueue;
  }

  get active(): number {
    return this.#active;
  }

  get waiting(): number {
    return this.#queue.length;
  }

  /** Resolves with a release function once a slot is free; rejects with the signal's reason on abort. */
  acquire(signal?: AbortSignal): Promise<Release> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.#active < this.#limit) {
      this.#active++;
      return Promise.resolve(this.#releaser());
    }
    if (this.#queue.length >= this.#maxQueue) return Promise.reject(new QueueFullError('queue full'));
    return new Promise<Release>((resolve, reject) => {
      const onAbort = (): void => {
        const i = this.#queue.indexOf(waiter);
        if (i !== -1) this.#queue.splice(i, 1);
        reject(signal?.reason);
      };
      const waiter: Waiter = {
        grant: resolve,
        cleanup: () => signal?.removeEventListener('abort', onAbort),
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#queue.push(waiter);
    });
  }

  #releaser(): Release {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.#queue.shift();
      if (next) {
        next.cleanup();
        next.grant(this.#releaser());
      } else {
        this.#active--;
      }
    };
  }
}
