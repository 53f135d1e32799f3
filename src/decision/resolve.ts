// The impure half of a decision: asking registries for the existence answers a pure decision is
// waiting for, then deciding again. Shared by the webhook and the CLI.

import type { ExistenceAnswer, ExistenceFacts } from '../core/facts.ts';

/** Anything that can answer "does this fully qualified image exist" (the existence oracle). */
export interface ExistenceSource {
  exists(candidate: string, options?: { signal?: AbortSignal }): Promise<ExistenceAnswer>;
  /** A fresh cached answer, if there is one, without asking anyone (the synchronous fast path). */
  peek?(candidate: string): ExistenceAnswer | undefined;
}

/**
 * Decides with cached answers only. When the result needs no probes it is final: the webhook answers
 * most reviews this way, with no timers, promises or second pass.
 */
export function decideFromCache<T>(decide: (facts: ExistenceFacts) => T, source: ExistenceSource): T {
  const peek = source.peek?.bind(source);
  return decide(peek ? (c) => peek(c) : () => undefined);
}

const MAX_ROUNDS = 8;

/**
 * Runs `decide` until it needs no more probes. Candidates are asked concurrently; a probe that throws
 * or outlives `signal` counts as Timeout, so the result always comes back.
 */
export async function decideWithProbes<T extends { readonly pendingProbes: readonly string[] }>(
  decide: (facts: ExistenceFacts) => T,
  source: ExistenceSource,
  signal?: AbortSignal | (() => AbortSignal),
): Promise<T> {
  const known = new Map<string, ExistenceAnswer>();
  const facts: ExistenceFacts = (c) => {
    let answer = known.get(c);
    if (answer === undefined && source.peek) {
      answer = source.peek(c);
      if (answer !== undefined) known.set(c, answer);
    }
    return answer;
  };
  let result = decide(facts);
  for (let round = 0; round < MAX_ROUNDS && result.pendingProbes.length > 0; round++) {
    await Promise.all(
      result.pendingProbes.map(async (candidate) => {
        let answer: ExistenceAnswer;
        try {
          const s = typeof signal === 'function' ? signal() : signal;
          answer = await source.exists(candidate, s ? { signal: s } : {});
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
