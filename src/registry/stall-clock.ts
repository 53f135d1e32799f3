// The clock of a blob upload. An upload may take as long as its link needs (a large layer over a
// satellite link: hours), so it has no total limit: it fails only when it stops making progress.
// Progress is bytes the kernel took: a full send buffer takes more once a third of it drained, so with
// Linux's 4 MiB maximum the default 60 s limit holds for links down to about 23 KiB/s.

/**
 * How much longer than the stall limit the answer may take after the last body byte, at most, in stall
 * limits. That byte was only handed to the kernel, whose send buffer (up to 4 MiB by Linux's default
 * tcp_wmem) still drains over the link; a buffer filled while the body went out drains in about the
 * time the body took once the blob is twice the buffer. Capped, so a peer that died is still found.
 */
const MAX_DRAIN_STALLS = 10;

/** The longest a wire timer (undici's headers and body timeouts) must allow under this clock. */
export function stallWireTimeoutMs(stallMs: number): number {
  return stallMs * (1 + MAX_DRAIN_STALLS);
}

/**
 * Fires `onStall` when no body bytes were taken for `stallMs`, or when no answer came after the body
 * for `stallMs` plus the time the body took (at most MAX_DRAIN_STALLS stall limits).
 */
export class StallClock {
  readonly #stallMs: number;
  readonly #onStall: () => void;
  readonly #now: () => number;
  #handle: ReturnType<typeof setTimeout> | undefined;
  #bodyStart = 0;

  constructor(stallMs: number, onStall: () => void, now: () => number = Date.now) {
    this.#stallMs = stallMs;
    this.#onStall = onStall;
    this.#now = now;
    this.#arm(stallMs);
  }

  /** A request's body starts (each attempt and redirect starts it again). */
  began(): void {
    this.#bodyStart = this.#now();
    this.#arm(this.#stallMs);
  }

  /** The transport took body bytes (or a request slot was granted). */
  took(): void {
    this.#arm(this.#stallMs);
  }

  /** The whole body was taken: from now on the answer is awaited. */
  sent(): void {
    const bodyMs = Math.max(0, this.#now() - this.#bodyStart);
    this.#arm(this.#stallMs + Math.min(bodyMs, MAX_DRAIN_STALLS * this.#stallMs));
  }

  stop(): void {
    clearTimeout(this.#handle);
    this.#handle = undefined;
  }

  #arm(ms: number): void {
    clearTimeout(this.#handle);
    this.#handle = setTimeout(this.#onStall, ms);
  }
}
