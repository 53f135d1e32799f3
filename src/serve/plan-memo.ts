// The webhook's memo of whole pod plans. Pods of one workload are admitted again and again with the same
// containers, labels and annotations; under the same maps and the same existence answers they get the
// same plan. So a plan is kept with the answers it consulted, and reused only after every one of those
// answers has been looked up again (under the same TTLs) and has the same outcome: the decision it
// stands for would come out the same, since decisions branch on outcomes alone.

import type { ExistenceFacts, ProbeOutcome, ProbeRequest } from '../core/facts.ts';
import type { DecisionSettings, MapSnapshot } from '../core/mapping/index.ts';
import { BoundedMemo } from '../core/memo.ts';
import type { PodPlan } from '../core/pod/plan.ts';
import type { ExistenceSource } from '../sources/resolve.ts';

/** One consulted answer: the candidate, the TTLs it was asked with, and the outcome that was used. */
interface Consulted {
  readonly candidate: string;
  readonly request: ProbeRequest | undefined;
  readonly outcome: ProbeOutcome;
}

interface MemoisedPlan<T> {
  readonly plan: PodPlan;
  /** What the caller derived from the plan (the encoded patch, the warnings). */
  readonly derived: T;
}

interface Entry<T> extends MemoisedPlan<T> {
  readonly consulted: readonly Consulted[];
}

/**
 * Keys longer than this (pods with very many containers or labels) are not remembered: with the entry
 * limit it bounds the memory the memo can hold, whatever pods are sent.
 */
export const MAX_KEY_CHARS = 8192;

/**
 * Plans remembered: about 7.4 KiB each for a 5-container pod, so under 2 MiB. A workload's pods arrive
 * in bursts (a ReplicaSet creates them back to back), which a small memo catches; docs/decisions.md.
 */
const PLAN_LIMIT = 256;

/**
 * Plans remembered per map snapshot and settings; at most `limit`, starting over when full or when the
 * maps (or the settings) change.
 */
export class PlanMemo<T> {
  #snapshot: MapSnapshot | undefined;
  #settings: DecisionSettings | undefined;
  readonly #entries: BoundedMemo<Entry<T>>;
  /**
   * Keys seen once. A plan is kept only when its key comes a second time: pods that never repeat (a
   * label of their own) then cost a key, not a plan that lives long enough to burden the GC.
   */
  readonly #seen: BoundedMemo<true>;
  #hits = 0;
  #misses = 0;

  constructor(limit = PLAN_LIMIT) {
    this.#entries = new BoundedMemo(limit);
    this.#seen = new BoundedMemo(limit);
  }

  /** Lookups answered with a remembered plan. */
  get hits(): number {
    return this.#hits;
  }

  /** Lookups that had to decide. */
  get misses(): number {
    return this.#misses;
  }

  /** The remembered plan for `key`, if every answer it consulted is still cached with the same outcome. */
  get(
    snapshot: MapSnapshot,
    settings: DecisionSettings,
    key: string,
    source: ExistenceSource,
  ): MemoisedPlan<T> | undefined {
    if (snapshot !== this.#snapshot || settings !== this.#settings) {
      this.#entries.clear();
      this.#seen.clear();
      this.#snapshot = snapshot;
      this.#settings = settings;
      this.#misses++;
      return undefined;
    }
    const entry = this.#entries.get(key);
    if (entry === undefined || source.peek === undefined) {
      this.#misses++;
      return undefined;
    }
    for (const c of entry.consulted) {
      if (source.peek(c.candidate, c.request)?.outcome !== c.outcome) {
        this.#entries.delete(key);
        this.#misses++;
        return undefined;
      }
    }
    this.#hits++;
    return entry;
  }

  /**
   * Runs `decide` with answers from `facts`, noting each one used. The plan is remembered under `key`
   * when it is complete (no probe pending), with what `derive` makes of it.
   */
  plan(
    snapshot: MapSnapshot,
    settings: DecisionSettings,
    key: string,
    facts: ExistenceFacts,
    decide: (facts: ExistenceFacts) => PodPlan,
    derive: (plan: PodPlan) => T,
  ): MemoisedPlan<T> {
    const consulted: Consulted[] = [];
    let complete = true;
    const plan = decide((candidate, request) => {
      const answer = facts(candidate, request);
      if (answer === undefined) complete = false;
      else consulted.push({ candidate, request, outcome: answer.outcome });
      return answer;
    });
    const entry: Entry<T> = { plan, derived: derive(plan), consulted };
    if (
      complete &&
      plan.pendingProbes.length === 0 &&
      snapshot === this.#snapshot &&
      settings === this.#settings &&
      key.length <= MAX_KEY_CHARS
    ) {
      if (this.#seen.has(key)) this.#entries.set(key, entry);
      else this.#seen.set(key, true);
    }
    return entry;
  }

  get size(): number {
    return this.#entries.size;
  }
}
