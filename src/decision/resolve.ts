// The impure half of a decision: asking registries for the existence answers a pure decision is
// waiting for, then deciding again. Shared by the webhook and the CLI.

import type { ExistenceAnswer, ExistenceFacts } from '../core/facts.ts';

/** Anything that can answer "does this fully qualified image exist" (the existence oracle). */
export interface ExistenceSource {
  exists(candidate: string, options?: { signal?: AbortSignal }): Promise<ExistenceAnswer>;
}

const MAX_ROUNDS = 8;

/**
 * Runs `decide` until it needs no more probes. Candidates are asked concurrently; a probe that throws
 * or outlives `signal` counts as Timeout, so the result always comes back.
 */
export async function decideWithProbes<T extends { readonly pendingProbes: readonly string[] }>(
  decide: (facts: ExistenceFacts) => T,
  source: ExistenceSource,
  signal?: AbortSignal,
): Promise<T> {
  const known = new Map<string, ExistenceAnswer>();
  const facts: ExistenceFacts = (c) => known.get(c);
  let result = decide(facts);
  for (let round = 0; round < MAX_ROUNDS && result.pendingProbes.length > 0; round++) {
    await Promise.all(
      result.pendingProbes.map(async (candidate) => {
        let answer: ExistenceAnswer;
        try {
          answer = await source.exists(candidate, signal ? { signal } : {});
        } catch {
          answer = { outcome: 'Timeout', cached: false, ageMs: 0, detail: 'the probe did not finish' };
        }
        known.set(candidate, answer);
      }),
    );
    result = decide(facts);
  }
  return result;
}
