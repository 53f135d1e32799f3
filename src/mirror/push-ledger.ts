// What the copiers writing to the same registries share: the blob slots of each target registry, and the
// objects being pushed now. Two copies never push one blob or one manifest into one repository at once:
// registries race on it (docker-registry rewrites a blob's link on each upload, and a manifest checked
// while the link is empty is refused with DIGEST_INVALID), and the second push would be wasted anyway.
import { Semaphore } from '../registry/index.ts';

/** What a copy did about one object: pushed it itself, or waited for another copy that pushed it. */
export type PushShare = 'mine' | 'joined';

export class PushLedger {
  readonly #slots = new Map<string, Semaphore>();
  readonly #inflight = new Map<string, Promise<unknown>>();

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
