// What the outside world told us, passed into the pure decision code. core never asks for these itself.

/** The typed outcome of asking a registry whether it holds an image (a manifest HEAD). */
export type ProbeOutcome =
  | 'Available' // the registry answered 200 for the manifest
  | 'NotFound' // 404: the registry is up and does not have it
  | 'Unauthorized' // 401/403: we may not see it with the credentials we have
  | 'RateLimited' // 429
  | 'Unreachable' // connection refused, DNS failure, TLS failure, 5xx
  | 'Timeout' // no answer within the deadline
  | 'Invalid'; // the registry answered something that is not the distribution API

/** The answer to "does image X exist at registry Y", as the existence oracle returns it. */
export interface ExistenceAnswer {
  readonly outcome: ProbeOutcome;
  /** The manifest digest, when Available and the registry sent one. */
  readonly digest?: string | undefined;
  /** HTTP status, when there was one. */
  readonly status?: number | undefined;
  /** Whether the answer came from the oracle's cache rather than a request made for this decision. */
  readonly cached: boolean;
  /** Age of a cached answer in milliseconds (0 for a fresh one). */
  readonly ageMs: number;
  /** A short human description of what happened, for explanations only: never branch on it. */
  readonly detail?: string | undefined;
}

/** Outcomes that say nothing about whether the image is there: the registry could not be asked. */
export function isProbeFailure(outcome: ProbeOutcome): boolean {
  return (
    outcome === 'RateLimited' || outcome === 'Unreachable' || outcome === 'Timeout' || outcome === 'Invalid'
  );
}

/**
 * Known existence answers, keyed by the fully qualified candidate reference (formatReference).
 * A missing key means "not asked yet"; the decision then lists it as a probe it needs. `request`
 * carries the asking map's TTLs, so a cached answer older than the map allows counts as missing.
 */
export type ExistenceFacts = (candidate: string, request?: ProbeRequest) => ExistenceAnswer | undefined;

/**
 * One existence question a decision is waiting for, with the asking map's cache TTLs
 * (`spec.existence`); an absent TTL means the oracle's global default.
 */
export interface ProbeRequest {
  /** The fully qualified candidate reference (formatReference). */
  readonly candidate: string;
  readonly positiveTtlMs?: number | undefined;
  readonly negativeTtlMs?: number | undefined;
}

const shorter = (a: number | undefined, b: number | undefined): number | undefined =>
  a === undefined ? b : b === undefined ? a : Math.min(a, b);

/**
 * The requests with one entry per candidate, in first-seen order. When several maps ask about the
 * same candidate with different TTLs, the shorter TTL wins (each kind separately): a fresher answer
 * satisfies every asker, a staler one would not. A map that sets no TTL defers to one that does,
 * since the global default is the oracle's and is not known here.
 */
export function mergeProbeRequests(requests: Iterable<ProbeRequest>): ProbeRequest[] {
  const byCandidate = new Map<string, ProbeRequest>();
  for (const request of requests) {
    const seen = byCandidate.get(request.candidate);
    if (seen === undefined) {
      byCandidate.set(request.candidate, request);
      continue;
    }
    const positiveTtlMs = shorter(seen.positiveTtlMs, request.positiveTtlMs);
    const negativeTtlMs = shorter(seen.negativeTtlMs, request.negativeTtlMs);
    if (positiveTtlMs === seen.positiveTtlMs && negativeTtlMs === seen.negativeTtlMs) continue;
    byCandidate.set(request.candidate, probeRequest(request.candidate, positiveTtlMs, negativeTtlMs));
  }
  return [...byCandidate.values()];
}

/** A request without the TTL fields that are not set (so equal requests compare equal). */
export function probeRequest(
  candidate: string,
  positiveTtlMs: number | undefined,
  negativeTtlMs: number | undefined,
): ProbeRequest {
  return {
    candidate,
    ...(positiveTtlMs === undefined ? {} : { positiveTtlMs }),
    ...(negativeTtlMs === undefined ? {} : { negativeTtlMs }),
  };
}
