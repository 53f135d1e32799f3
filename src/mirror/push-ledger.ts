// What the copiers writing to the same registries share: the blob slots of each target registry, the
// blobs being uploaded now, and one lock per repository for manifest writes. Registries race on writes
// to one repository: docker-registry rewrites a blob's or manifest's link file on each upload or put,
// and a manifest checked while a link it names is being rewritten is refused with DIGEST_INVALID. So two
// copies never upload one blob at once (the second upload would be wasted anyway), and manifest writes
// to one repository, by digest or by tag, go one at a time (they are small; blobs still go in parallel).
import { Semaphore } from '../registry/index.ts';

/** What a copy did about one object: pushed it itself, or waited for another copy that pushed it. */
export type PushShare = 'mine' | 'joined';

export class PushLedger {
  readonly #slots = new Map<string, Semaphore>();
  readonly #inflight = new Map<string, Promise<unknown>>();
  readonly #locks = new Map<string, Semaphore>();

  /** The blob slots of one target registry: `size` transfers at once, whichever copier asks. */
  slots(registry: string, size: number): Semaphore {
    let slots = this.#slots.get(registry);
    if (slots === undefined) {
      slots = new Semaphore(size);
      this.#slots.set(registry, slots);
    }
    return slots;
  }

  /**
   * Runs `push` unless another copy is pushing the same object (`key`): then waits for it, and runs
   * `push` itself only if that one failed (its copy may have been cancelled for a reason of its own).
   * Rejects with `cancelled()` when `signal` ends the wait.
   */
  async once(
    key: string,
    signal: AbortSignal,
    cancelled: () => Error,
    push: () => Promise<void>,
  ): Promise<PushShare> {
    for (let other = this.#inflight.get(key); other !== undefined; other = this.#inflight.get(key)) {
      if (await settled(other, signal, cancelled)) return 'joined';
    }
    const mine = push();
    this.#inflight.set(key, mine);
    try {
      await mine;
    } finally {
      if (this.#inflight.get(key) === mine) this.#inflight.delete(key);
    }
    return 'mine';
  }

  /**
   * Runs `write` while no other write holding `key` runs (one repository's manifest puts); rejects with
   * `cancelled()` when `signal` ends the wait.
   */
  async alone<T>(
    key: string,
    signal: AbortSignal,
    cancelled: () => Error,
    write: () => Promise<T>,
  ): Promise<T> {
    let lock = this.#locks.get(key);
    if (lock === undefined) {
      lock = new Semaphore(1);
      this.#locks.set(key, lock);
    }
    const release = await lock.acquire(signal).catch(() => {
      throw cancelled();
    });
    try {
      return await write();
    } finally {
      release();
      if (lock.active === 0 && lock.waiting === 0 && this.#locks.get(key) === lock) this.#locks.delete(key);
    }
  }
}

/** True when `work` fulfils, false when it rejects; rejects with `cancelled()` if `signal` ends first. */
function settled(work: Promise<unknown>, signal: AbortSignal, cancelled: () => Error): Promise<boolean> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(cancelled());
      return;
    }
    const onAbort = (): void => reject(cancelled());
    signal.addEventListener('abort', onAbort, { once: true });
    work
      .then(
        () => resolve(true),
        () => resolve(false),
      )
      .finally(() => signal.removeEventListener('abort', onAbort));
  });
}
