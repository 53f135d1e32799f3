// The impure half of a decision: asking registries for the existence answers a pure decision is
// waiting for, then deciding again. Shared by the webhook and the CLI.

import {
  type ExistenceAnswer,
  type ExistenceFacts,
  mergeProbeRequests,
  type ProbeRequest,
} from '../core/facts.ts';

export interface ProbeOptions {
  readonly signal?: AbortSignal | undefined;
  /** The asking map's TTLs (spec.existence); absent means the source's own defaults. */
  readonly positiveTtlMs?: number | undefined;
  readonly negativeTtlMs?: number | undefined;
}

/** Anything that can answer "does this fully qualified image exist" (the existence oracle). */
export interface ExistenceSource {
  exists(candidate: string, options?: ProbeOptions): Promise<ExistenceAnswer>;
  /**
   * An answer still fresh under the asking map's TTLs, if cached, without asking anyone (the
   * synchronous fast path).
   */
  peek?(candidate: string, ttls?: Omit<ProbeOptions, 'signal'>): ExistenceAnswer | undefined;
}

/**
 * Decides with cached answers only. When the result needs no probes it is final: the webhook answers
 * most reviews this way, with no timers, promises or second pass.
 */
export function decideFromCache<T>(decide: (facts: ExistenceFacts) => T, source: ExistenceSource): T {
  return decide(cachedFacts(source));
}

/** The answers `source` has cached, under the asking map's TTLs; never asks a registry. */
export function cachedFacts(source: ExistenceSource): ExistenceFacts {
  // A ProbeRequest carries the TTL fields of ProbeOptions, so it is passed as it is.
  return (c, request) => source.peek?.(c, request);
}

const MAX_ROUNDS = 8;

/**
 * Runs `decide` until it needs no more probes. Candidates are asked concurrently, once each, with
 * the TTLs their maps ask for (the shorter when two maps disagree); a probe that throws or outlives
 * `signal` counts as Timeout, so the result always comes back.
 */
export async function decideWithProbes<T extends { readonly pendingProbes: readonly ProbeRequest[] }>(
  decide: (facts: ExistenceFacts) => T,
  source: ExistenceSource,
  signal?: AbortSignal | (() => AbortSignal),
): Promise<T> {
  const known = new Map<string, ExistenceAnswer>();
  const facts: ExistenceFacts = (c, request) => {
    let answer = known.get(c);
    if (answer === undefined && source.peek) {
      answer = source.peek(c, request);
      if (answer !== undefined) known.set(c, answer);
    }
    return answer;
  };
  const deadline = () => (typeof signal === 'function' ? signal() : signal);
  let result = decide(facts);
  for (let round = 0; round < MAX_ROUNDS && result.pendingProbes.length > 0; round++) {
    await Promise.all(
      mergeProbeRequests(result.pendingProbes).map(async (request) => {
        let answer: ExistenceAnswer;
        try {
          answer = await source.exists(request.candidate, probeOptions(request, deadline()));
        } catch {
          answer = { outcome: 'Timeout', cached: false, ageMs: 0, detail: 'the probe did not finish' };
        }
        known.set(request.candidate, answer);
      }),
    );
    result = decide(facts);
  }
  return result;
}

function probeOptions(request: ProbeRequest, signal: AbortSignal | undefined): ProbeOptions {
  return {
    ...(signal === undefined ? {} : { signal }),
    ...(request.positiveTtlMs === undefined ? {} : { positiveTtlMs: request.positiveTtlMs }),
    ...(request.negativeTtlMs === undefined ? {} : { negativeTtlMs: request.negativeTtlMs }),
  };
}
