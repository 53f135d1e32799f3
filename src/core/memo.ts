// A bounded memo: at most `limit` entries, and when full it starts over. Clearing costs O(1) amortised
// and needs no bookkeeping per hit, which suits caches whose entries are cheap to recompute: an image's
// preparation under a snapshot (src/serve/prepared-memo.ts), a checked Authorization header. The
// owner decides its lifetime; core itself keeps none.

export class BoundedMemo<V> {
  readonly #entries = new Map<string, V>();
  readonly limit: number;

  constructor(limit: number) {
    this.limit = limit;
  }

  get(key: string): V | undefined {
    return this.#entries.get(key);
  }

  has(key: string): boolean {
    return this.#entries.has(key);
  }

  /** Stores `value` (starting over first when full) and returns it. */
  set(key: string, value: V): V {
    if (this.#entries.size >= this.limit) this.#entries.clear();
    this.#entries.set(key, value);
    return value;
  }

  delete(key: string): void {
    this.#entries.delete(key);
  }

  clear(): void {
    this.#entries.clear();
  }

  get size(): number {
    return this.#entries.size;
  }
}
