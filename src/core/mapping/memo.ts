// A bounded memo for work that depends only on a snapshot and a string (an image's parse, its index
// keys, the candidates a rule gives it). It lives in the snapshot, so it is dropped with it and never
// outlives the maps it was computed from; it changes no answer, only how often the answer is worked out.

/** String-keyed memo holding at most `limit` entries; when full it starts over (bounded, O(1)). */
export class BoundedMemo<V> {
  readonly #entries = new Map<string, V>();
  readonly limit: number;

  constructor(limit: number) {
    this.limit = limit;
  }

  get(key: string): V | undefined {
    return this.#entries.get(key);
  }

  set(key: string, value: V): V {
    if (this.#entries.size >= this.limit) this.#entries.clear();
    this.#entries.set(key, value);
    return value;
  }

  get size(): number {
    return this.#entries.size;
  }
}
