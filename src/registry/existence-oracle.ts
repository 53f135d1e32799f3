// "Does image X exist at registry Y?", asked as rarely as possible: answers are cached with a positive
// TTL (Available) and a separate negative TTL (NotFound, Unauthorized); concurrent questions about one
// image share one registry request; the cache is a bounded LRU; a caller's deadline bounds its wait
// while the probe itself runs on to fill the cache for the next caller.
import type { ExistenceAnswer, ProbeOutcome } from '../core/facts.ts';
import type { ImageReference } from '../core/reference/index.ts';
import { formatNormalized, parseReference } from '../core/reference/index.ts';
import type { RegistryClient } from './client.ts';
import { raceDeadline } from './deadline.ts';

/** What one registry probe found; the oracle adds caching and timing. */
export interface ProbeReport {
  readonly outcome: ProbeOutcome;
  readonly digest?: string | undefined;
  readonly status?: number | undefined;
  readonly detail?: string | undefined;
  /** From a 429's Retry-After: how long the registry asked us to stay away. */
  readonly retryAfterMs?: number | undefined;
}

/** Asks the registry once. Must settle on its own within a bounded time (the client's timeouts). */
type ExistenceProbe = (ref: ImageReference, signal: AbortSignal) => Promise<ProbeReport>;

/**
 * A manifest HEAD through the registry client (a GET where the registry refuses HEAD): every
 * manifest and index type counts as present.
 */
export function registryProbe(client: RegistryClient): ExistenceProbe {
  return async (ref, signal) => {
    const result = await client.manifestExists(ref, { signal });
    if (result.ok) {
      const { method, status, digest, mediaType } = result.value;
      return {
        outcome: 'Available',
        digest,
        status,
        detail: `${method} ${status}${mediaType ? ` ${mediaType}` : ''}`,
      };
    }
    const { error } = result;
    return {
      outcome: error.outcome,
      status: error.status,
      detail: `${error.code}: ${error.message}`,
      retryAfterMs: error.retryAfterMs,
    };
  };
}

export type OracleEvent =
  | {
      readonly kind: 'hit';
      readonly candidate: string;
      readonly outcome: ProbeOutcome;
      readonly ageMs: number;
    }
  | { readonly kind: 'miss'; readonly candidate: string }
  | { readonly kind: 'coalesced'; readonly candidate: string }
  | {
      readonly kind: 'probe';
      readonly candidate: string;
      readonly outcome: ProbeOutcome;
      readonly latencyMs: number;
      readonly status?: number | undefined;
    }
  | { readonly kind: 'deadline'; readonly candidate: string }
  | { readonly kind: 'eviction'; readonly candidate: string };

/** Metrics hook: called synchronously; exceptions it throws are swallowed. */
export type OracleObserver = (event: OracleEvent) => void;

export interface ExistenceOracleOptions {
  readonly probe: ExistenceProbe;
  /** Wall or fake clock in milliseconds; TTLs and ages are measured with it. */
  readonly now?: (() => number) | undefined;
  /** How long "Available" is believed. Default 5 minutes. */
  readonly positiveTtlMs?: number | undefined;
  /** How long "NotFound" and "Unauthorized" are believed. Default 30 seconds. */
  readonly negativeTtlMs?: number | undefined;
  /**
   * How long a failed probe (Unreachable, Timeout, RateLimited, Invalid) is remembered. Default 2 s:
   * long enough that a burst of admissions during an outage costs one probe, short enough that
   * recovery is seen at once. A 429's Retry-After stretches it, up to `maxRetryAfterMs`.
   */
  readonly failureTtlMs?: number | undefined;
  /** Upper bound on how long a Retry-After keeps us away. Default 60 s. */
  readonly maxRetryAfterMs?: number | undefined;
  /** Cached answers kept at most; the least recently used go first. Default 10,000. */
  readonly maxEntries?: number | undefined;
  /** The probe's own bound, independent of any caller's deadline. Default 10 s. */
  readonly probeTimeoutMs?: number | undefined;
  readonly observer?: OracleObserver | undefined;
}

interface ExistsOptions {
  /** The caller's deadline: when it aborts, the answer is Timeout at once (the probe runs on). */
  readonly signal?: AbortSignal | undefined;
  /** Overrides the oracle's positive TTL for this question (per-map TTLs). */
  readonly positiveTtlMs?: number | undefined;
  /** Overrides the oracle's negative TTL for this question. */
  readonly negativeTtlMs?: number | undefined;
}

interface ExistenceStats {
  readonly hits: number;
  readonly misses: number;
  readonly coalesced: number;
  readonly probes: number;
  readonly deadlineExceeded: number;
  readonly evictions: number;
  readonly entries: number;
  readonly inflight: number;
  readonly outcomes: Readonly<Record<ProbeOutcome, number>>;
  readonly probeLatencyMs: { readonly count: number; readonly sum: number; readonly max: number };
}

interface Entry {
  readonly report: ProbeReport;
  readonly storedAt: number;
  /** For failures only: fixed when stored, since Retry-After decides it. */
  readonly failureTtlMs: number;
  /** The oracle's touch count when the entry last moved to the recent end. */
  moved: number;
}

const DEFAULT_POSITIVE_TTL_MS = 5 * 60_000;
const DEFAULT_NEGATIVE_TTL_MS = 30_000;
const DEFAULT_FAILURE_TTL_MS = 2_000;
const DEFAULT_MAX_RETRY_AFTER_MS = 60_000;
const DEFAULT_MAX_ENTRIES = 10_000;
const DEFAULT_PROBE_TIMEOUT_MS = 10_000;

function nonNegative(value: number | undefined, fallback: number): number {
  return value !== undefined && Number.isFinite(value) && value >= 0 ? value : fallback;
}

function emptyOutcomes(): Record<ProbeOutcome, number> {
  return {
    Available: 0,
    NotFound: 0,
    Unauthorized: 0,
    RateLimited: 0,
    Unreachable: 0,
    Timeout: 0,
    Invalid: 0,
  };
}

export class ExistenceOracle {
  readonly #probe: ExistenceProbe;
  readonly #now: () => number;
  readonly #positiveTtlMs: number;
  readonly #negativeTtlMs: number;
  readonly #failureTtlMs: number;
  readonly #maxRetryAfterMs: number;
  readonly #maxEntries: number;
  readonly #probeTimeoutMs: number;
  readonly #observer: OracleObserver | undefined;
  // Map order is recency order: a hit is moved to the end, eviction takes from the front. A hit on an
  // entry that moved within the last quarter of the capacity's touches stays put: it cannot reach the
  // front before it is touched again, so hot entries are never evicted, and the hot path skips a
  // delete and insert per hit.
  readonly #entries = new Map<string, Entry>();
  #touches = 0;
  readonly #inflight = new Map<string, Promise<Entry>>();
  #hits = 0;
  #misses = 0;
  #coalesced = 0;
  #probes = 0;
  #deadlineExceeded = 0;
  #evictions = 0;
  readonly #outcomes = emptyOutcomes();
  readonly #latency = { count: 0, sum: 0, max: 0 };

  constructor(options: ExistenceOracleOptions) {
    this.#probe = options.probe;
    this.#now = options.now ?? Date.now;
    this.#positiveTtlMs = nonNegative(options.positiveTtlMs, DEFAULT_POSITIVE_TTL_MS);
    this.#negativeTtlMs = nonNegative(options.negativeTtlMs, DEFAULT_NEGATIVE_TTL_MS);
    this.#failureTtlMs = nonNegative(options.failureTtlMs, DEFAULT_FAILURE_TTL_MS);
    this.#maxRetryAfterMs = nonNegative(options.maxRetryAfterMs, DEFAULT_MAX_RETRY_AFTER_MS);
    this.#maxEntries = Math.max(1, Math.floor(nonNegative(options.maxEntries, DEFAULT_MAX_ENTRIES)));
    this.#probeTimeoutMs = Math.max(1, nonNegative(options.probeTimeoutMs, DEFAULT_PROBE_TIMEOUT_MS));
    this.#observer = options.observer;
  }

  /**
   * Whether `candidate` (a fully qualified reference) exists. Never rejects. A reference without tag
   * or digest means ":latest"; with a digest, the digest is what is probed.
   */
  async exists(candidate: string, options: ExistsOptions = {}): Promise<ExistenceAnswer> {
    const parsed = parseReference(candidate);
    if (!parsed.ok) {
      return {
        outcome: 'Invalid',
        cached: false,
        ageMs: 0,
        detail: `not a valid reference: ${parsed.error.message}`,
      };
    }
    const ref = parsed.ref;
    const key = formatNormalized(ref);
    const now = this.#now();
    const entry = this.#entries.get(key);
    if (entry !== undefined) {
      const ageMs = Math.max(0, now - entry.storedAt);
      if (ageMs < this.#ttlFor(entry, options)) {
        this.#touch(key, entry);
        this.#hits++;
        this.#emit({ kind: 'hit', candidate: key, outcome: entry.report.outcome, ageMs });
        return answer(entry.report, true, ageMs);
      }
    }

    let pending = this.#inflight.get(key);
    if (pending === undefined) {
      this.#misses++;
      this.#emit({ kind: 'miss', candidate: key });
      pending = this.#runProbe(key, ref);
    } else {
      this.#coalesced++;
      this.#emit({ kind: 'coalesced', candidate: key });
    }

    const signal = options.signal;
    if (signal === undefined) return answer((await pending).report, false, 0);
    const settled = await raceDeadline(pending, signal);
    if (settled === undefined) {
      this.#deadlineExceeded++;
      this.#emit({ kind: 'deadline', candidate: key });
      return {
        outcome: 'Timeout',
        cached: false,
        ageMs: 0,
        detail: 'the caller’s deadline passed while the registry was being asked; the answer will be cached',
      };
    }
    return answer(settled.report, false, 0);
  }

  /**
   * The cached answer for `candidate` if it is still fresh, without probing: lets a decision whose
   * answers are all cached finish synchronously. Counts as a hit; an absent answer is not a miss
   * (the `exists` call that follows counts that).
   */
  peek(candidate: string, options: ExistsOptions = {}): ExistenceAnswer | undefined {
    // Candidates from decisions are already in normalized form; parse only when they are not.
    let key = candidate;
    let entry = this.#entries.get(key);
    if (entry === undefined) {
      const parsed = parseReference(candidate);
      if (!parsed.ok) return undefined;
      key = formatNormalized(parsed.ref);
      entry = this.#entries.get(key);
      if (entry === undefined) return undefined;
    }
    const ageMs = Math.max(0, this.#now() - entry.storedAt);
    if (ageMs >= this.#ttlFor(entry, options)) return undefined;
    this.#touch(key, entry);
    this.#hits++;
    this.#emit({ kind: 'hit', candidate: key, outcome: entry.report.outcome, ageMs });
    return answer(entry.report, true, ageMs);
  }

  /** Drops every cached answer (in-flight probes still complete and store theirs). */
  clear(): void {
    this.#entries.clear();
  }

  stats(): ExistenceStats {
    return {
      hits: this.#hits,
      misses: this.#misses,
      coalesced: this.#coalesced,
      probes: this.#probes,
      deadlineExceeded: this.#deadlineExceeded,
      evictions: this.#evictions,
      entries: this.#entries.size,
      inflight: this.#inflight.size,
      outcomes: { ...this.#outcomes },
      probeLatencyMs: { ...this.#latency },
    };
  }

  #ttlFor(entry: Entry, options: ExistsOptions): number {
    switch (entry.report.outcome) {
      case 'Available':
        return nonNegative(options.positiveTtlMs, this.#positiveTtlMs);
      case 'NotFound':
      case 'Unauthorized':
        return nonNegative(options.negativeTtlMs, this.#negativeTtlMs);
      default:
        return entry.failureTtlMs;
    }
  }

  #runProbe(key: string, ref: ImageReference): Promise<Entry> {
    const started = performance.now();
    const pending = this.#probeSafely(ref).then((report) => {
      const latencyMs = performance.now() - started;
      this.#probes++;
      this.#outcomes[report.outcome]++;
      this.#latency.count++;
      this.#latency.sum += latencyMs;
      this.#latency.max = Math.max(this.#latency.max, latencyMs);
      this.#emit({
        kind: 'probe',
        candidate: key,
        outcome: report.outcome,
        latencyMs,
        status: report.status,
      });
      const entry: Entry = {
        report,
        storedAt: this.#now(),
        failureTtlMs: this.#failureTtl(report),
        moved: 0,
      };
      // A probe that started before `invalidate` answered about what was there before: not kept.
      if (this.#inflight.get(key) === pending) {
        this.#store(key, entry);
        this.#inflight.delete(key);
      }
      return entry;
    });
    this.#inflight.set(key, pending);
    return pending;
  }

  /**
   * Forgets what is known about `candidate` (its content just changed: pullmap copied it there), so
   * the next question probes the registry instead of waiting out the TTL. A probe already running is
   * left to finish for its callers but its answer is not kept. Returns whether anything was forgotten.
   */
  invalidate(candidate: string): boolean {
    const parsed = parseReference(candidate);
    if (!parsed.ok) return false;
    const key = formatNormalized(parsed.ref);
    const had = this.#entries.delete(key);
    return this.#inflight.delete(key) || had;
  }

  /** The probe with its own timeout; a thrown error becomes an answer rather than a rejection. */
  async #probeSafely(ref: ImageReference): Promise<ProbeReport> {
    const signal = AbortSignal.timeout(this.#probeTimeoutMs);
    try {
      const report = await raceDeadline(this.#probe(ref, signal), signal);
      return report ?? { outcome: 'Timeout', detail: `no answer within ${this.#probeTimeoutMs} ms` };
    } catch (err) {
      return {
        outcome: 'Unreachable',
        detail: `probe failed: ${err instanceof Error ? err.message : String(err)}`,
      };
    }
  }

  #failureTtl(report: ProbeReport): number {
    if (report.outcome === 'RateLimited' && report.retryAfterMs !== undefined)
      return Math.max(this.#failureTtlMs, Math.min(report.retryAfterMs, this.#maxRetryAfterMs));
    return this.#failureTtlMs;
  }

  /** Marks a hit: moves the entry to the recent end unless it moved recently enough (see #entries). */
  #touch(key: string, entry: Entry): void {
    const now = ++this.#touches;
    if (now - entry.moved <= this.#maxEntries >> 2) return;
    entry.moved = now;
    this.#entries.delete(key);
    this.#entries.set(key, entry);
  }

  #store(key: string, entry: Entry): void {
    entry.moved = ++this.#touches;
    this.#entries.delete(key);
    this.#entries.set(key, entry);
    while (this.#entries.size > this.#maxEntries) {
      const oldest = this.#entries.keys().next();
      if (oldest.done) break;
      this.#entries.delete(oldest.value);
      this.#evictions++;
      this.#emit({ kind: 'eviction', candidate: oldest.value });
    }
  }

  #emit(event: OracleEvent): void {
    if (this.#observer === undefined) return;
    try {
      this.#observer(event);
    } catch {
      // A broken metrics hook must not change answers.
    }
  }
}

function answer(report: ProbeReport, cached: boolean, ageMs: number): ExistenceAnswer {
  const out: { -readonly [K in keyof ExistenceAnswer]: ExistenceAnswer[K] } = {
    outcome: report.outcome,
    cached,
    ageMs,
  };
  if (report.digest !== undefined) out.digest = report.digest;
  if (report.status !== undefined) out.status = report.status;
  if (report.detail !== undefined) out.detail = report.detail;
  return out;
}
