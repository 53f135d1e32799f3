// The eviction policy both stores follow, pure (the stores list, read and delete; this decides). Over
// `maxSize`, a collection frees down to LOW_WATER of it: blobs no stored manifest references go first
// (they are garbage whatever their age), then everything, manifests included, by last use, oldest first.
// A manifest no tag names was pulled by digest and is kept by last use like any object. Tag records
// whose manifest is gone cannot answer, and are swept.
import { readTagRecord } from './types.ts';

/** Collection frees down to this share of the cap, so it does not run again at the next write. */
export const LOW_WATER = 0.9;

export interface StoredObject {
  readonly kind: 'blob' | 'manifest';
  readonly digest: string;
  readonly size: number;
  /** Last use, ms since the epoch (the disk store's mtime; the bucket's LastModified or use marker). */
  readonly lastUse: number;
}

/** Whether the store holds more than its cap (never, without one). */
export function overCap(usedBytes: number, maxSize: number | undefined): boolean {
  return maxSize !== undefined && usedBytes > maxSize;
}

/** The objects in the order they are evicted: unreferenced blobs first, then by last use, oldest first. */
export function evictionOrder<T extends StoredObject>(
  objects: readonly T[],
  referenced: ReadonlySet<string>,
): T[] {
  const rank = (o: StoredObject): number => (o.kind === 'blob' && !referenced.has(o.digest) ? 0 : 1);
  return [...objects].sort((a, b) => rank(a) - rank(b) || a.lastUse - b.lastUse);
}

/**
 * What to evict to bring `usedBytes` down to LOW_WATER of `maxSize`: the shortest prefix of the eviction
 * order that does (all of it, if even that does not); nothing when the store is not over its cap.
 */
export function toEvict<T extends StoredObject>(
  objects: readonly T[],
  referenced: ReadonlySet<string>,
  usedBytes: number,
  maxSize: number | undefined,
): T[] {
  if (maxSize === undefined || !overCap(usedBytes, maxSize)) return [];
  const goal = maxSize * LOW_WATER;
  const out: T[] = [];
  let used = usedBytes;
  for (const o of evictionOrder(objects, referenced)) {
    if (used <= goal) break;
    out.push(o);
    used -= o.size;
  }
  return out;
}

/**
 * Whether a tag record is to be swept: unreadable, or naming a manifest not stored. (A record rewritten
 * for a new digest during the sweep may go too; the tag is then fetched again.)
 */
export function isOrphanTag(text: string, storedManifests: ReadonlySet<string>): boolean {
  const rec = readTagRecord(text);
  return rec === undefined || !storedManifests.has(rec.digest);
}

/** Whether a use recorded at `last` is worth recording again at `now` (last use moves in steps). */
export function useIsStale(last: number | undefined, now: number, interval: number): boolean {
  return last === undefined || now - last >= interval;
}
