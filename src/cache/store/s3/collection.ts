// What a collection of the bucket works with, pure: the listings made into objects with their last use
// (the later of LastModified and the object's use marker), markers whose object is gone, and leases left
// by replicas that died. Eviction itself is the policy both stores share (eviction.ts).
import { DIGEST } from '../../../registry/client.ts';
import type { StoredObject } from '../eviction.ts';
import type { BucketKeys } from './keys.ts';

/** One object of a listing. */
export interface Listed {
  readonly key: string;
  readonly size: number;
  /** LastModified, ms since the epoch. */
  readonly modified: number;
}

export interface BucketObject extends StoredObject {
  readonly key: string;
}

export interface Inventory {
  readonly objects: readonly BucketObject[];
  readonly usedBytes: number;
  /** Use markers of objects no longer stored (evicted by another replica, say). */
  readonly strayMarkers: readonly string[];
}

export function inventory(
  keys: BucketKeys,
  blobs: readonly Listed[],
  manifests: readonly Listed[],
  markers: readonly Listed[],
): Inventory {
  const lastUse = new Map<string, number>();
  for (const m of markers) lastUse.set(keys.usedObject(m.key), m.modified);
  const objects: BucketObject[] = [];
  for (const [kind, listed] of [
    ['blob', blobs],
    ['manifest', manifests],
  ] as const)
    for (const o of listed) {
      const digest = keys.digestOf(o.key);
      if (!DIGEST.test(digest)) continue;
      objects.push({
        kind,
        digest,
        key: o.key,
        size: o.size,
        lastUse: Math.max(o.modified, lastUse.get(o.key) ?? 0),
      });
    }
  const stored = new Set(objects.map((o) => o.key));
  return {
    objects,
    usedBytes: objects.reduce((sum, o) => sum + o.size, 0),
    strayMarkers: markers.filter((m) => !stored.has(keys.usedObject(m.key))).map((m) => m.key),
  };
}

/** Leases last written before `now - maxAgeMs`. */
export function staleLeases(leases: readonly Listed[], now: number, maxAgeMs: number): string[] {
  return leases.filter((l) => l.modified < now - maxAgeMs).map((l) => l.key);
}
