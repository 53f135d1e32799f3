// The download lease, pure: a replica about to fetch a missing blob writes a lease object
// (downloading/<alg>/<hex>, { owner, expiresAt }) so the others wait for the blob instead of fetching it
// too. What to do next is decided here from what the bucket said and the store's clock; s3/store.ts does
// the reads and writes.

export interface Lease {
  readonly owner: string;
  readonly expiresAt: number;
}

/** A lease held by `owner` from `now` for `ttlMs`, as stored. */
export function leaseBody(owner: string, now: number, ttlMs: number): string {
  return JSON.stringify({ owner, expiresAt: now + ttlMs } satisfies Lease);
}

/** A stored lease; an unreadable one counts as expired (its holder cannot be told apart from none). */
export function parseLease(text: string): Lease {
  try {
    const lease = JSON.parse(text) as Lease;
    if (typeof lease.owner === 'string' && typeof lease.expiresAt === 'number')
      return { owner: lease.owner, expiresAt: lease.expiresAt };
  } catch {
    // unreadable: expired
  }
  return { owner: '', expiresAt: 0 };
}

/** How often a held lease is rewritten: a third of its lifetime, so two renewals may fail in a row. */
export function renewalInterval(ttlMs: number): number {
  return ttlMs / 3;
}

/**
 * After this replica failed to create the lease, what the lease found says:
 * - `retry`: it is gone (released between the two calls): look again;
 * - `hold`: it is ours (written by this replica, say before a lost answer);
 * - `take-over`: its holder died (it expired): delete it and look again;
 * - `wait`: another replica is fetching: wait a little and look again;
 * - `fetch`: waited long enough (`deadline`): fetch without the lease.
 */
export type LeaseStep = 'retry' | 'hold' | 'take-over' | 'wait' | 'fetch';

export function nextStep(lease: Lease | undefined, owner: string, now: number, deadline: number): LeaseStep {
  if (lease === undefined) return 'retry';
  if (lease.owner === owner) return 'hold';
  if (lease.expiresAt < now) return 'take-over';
  return now >= deadline ? 'fetch' : 'wait';
}

/** Leases older than this are leftovers of replicas that died with nobody asking since: swept. */
export function staleLeaseAge(ttlMs: number, floorMs: number): number {
  return Math.max(floorMs, 10 * ttlMs);
}
