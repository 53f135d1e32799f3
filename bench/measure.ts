// Timing primitives shared by the benchmarks: fixed-length rounds, medians, percentiles. Subject and
// baseline rounds alternate so that CPU frequency drift and GC pressure hit both sides alike.

import { readFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { parse as parseYaml } from 'yaml';

export interface RoundPlan {
  /** Unmeasured time per side before the first round, so the JIT has settled. */
  readonly warmupMs: number;
  readonly roundMs: number;
  readonly rounds: number;
}

export interface Throughput {
  /** Median of the rounds, in operations per second. */
  readonly perSecond: number;
  readonly rounds: readonly number[];
}

/** One call does a batch of work and returns how many operations it did. */
export type Batch = () => number;

/** Results the optimiser cannot prove unused; benchmarks fold their outputs into it. */
export const sink = { value: 0 };

export function median(values: readonly number[]): number {
  return percentile(values, 50);
}

/** Nearest-rank percentile: an observed value, never an interpolation between two runs. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) throw new Error('percentile of no values');
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1]!;
}

/** Runs batches for about `ms` milliseconds; returns operations per second. */
function round(batch: Batch, ms: number): number {
  let ops = 0;
  const start = performance.now();
  let elapsed = 0;
  do {
    ops += batch();
    elapsed = performance.now() - start;
  } while (elapsed < ms);
  return (ops * 1000) / elapsed;
}

/** Throughput of `subject` and `baseline`, measured in alternating rounds after a warm-up of each. */
export function compareThroughput(
  subject: Batch,
  baseline: Batch,
  plan: RoundPlan,
): { subject: Throughput; baseline: Throughput } {
  round(subject, plan.warmupMs);
  round(baseline, plan.warmupMs);
  const s: number[] = [];
  const b: number[] = [];
  for (let i = 0; i < plan.rounds; i++) {
    s.push(round(subject, plan.roundMs));
    b.push(round(baseline, plan.roundMs));
  }
  return {
    subject: { perSecond: median(s), rounds: s },
    baseline: { perSecond: median(b), rounds: b },
  };
}

/** A rate with an SI prefix; the caller adds the unit ("1.36 M" + " refs/s"). */
export function formatRate(perSecond: number): string {
  if (perSecond >= 1e6) return `${(perSecond / 1e6).toFixed(2)} M`;
  if (perSecond >= 1e3) return `${(perSecond / 1e3).toFixed(1)} k`;
  return perSecond.toFixed(0);
}

/** Spread of the rounds, so a noisy machine shows up in the report rather than in a wrong verdict. */
export function formatSpread(t: Throughput): string {
  const lo = Math.min(...t.rounds);
  const hi = Math.max(...t.rounds);
  return `rounds ${formatRate(lo)} .. ${formatRate(hi)}`;
}

/** What each benchmark hands to the summary table. */
export interface BenchResult {
  readonly name: string;
  readonly target: string;
  readonly measured: string;
  readonly ratio: string;
  readonly pass: boolean;
}

export interface ClosedLoop {
  /** Tasks completed. */
  readonly count: number;
  readonly ms: number;
  readonly perSecond: number;
  /** Latency of each task, in completion order. */
  readonly latenciesMs: number[];
}

/**
 * Closed-loop load: `concurrency` workers each run `task(i)` for the next i, until `count` tasks have
 * started or `ms` have passed (whichever comes first). A task that throws stops the run.
 */
export async function closedLoop(
  plan: { readonly concurrency: number; readonly count?: number; readonly ms?: number },
  task: (i: number) => Promise<void>,
): Promise<ClosedLoop> {
  const count = plan.count ?? Number.POSITIVE_INFINITY;
  const ms = plan.ms ?? Number.POSITIVE_INFINITY;
  const latenciesMs: number[] = [];
  let next = 0;
  const started = performance.now();
  const worker = async (): Promise<void> => {
    while (next < count && performance.now() - started < ms) {
      const t0 = performance.now();
      await task(next++);
      latenciesMs.push(performance.now() - t0);
    }
  };
  await Promise.all(Array.from({ length: plan.concurrency }, worker));
  const elapsed = performance.now() - started;
  return {
    count: latenciesMs.length,
    ms: elapsed,
    perSecond: (latenciesMs.length * 1000) / elapsed,
    latenciesMs,
  };
}

/**
 * The Node flags the image runs pullmap with, read from the Dockerfile's ENTRYPOINT, so the benchmarks
 * measure what ships.
 */
/** FLAGS="--a --b" from the environment (an A/B of Node flags), else the image's. */
export async function nodeFlags(): Promise<string[]> {
  return process.env.FLAGS?.split(' ').filter(Boolean) ?? imageNodeFlags();
}

/**
 * The Node flags the cache runs with: the image's, then the chart's `cache.nodeFlags` (the chart and
 * deploy/cache* start the cache with both; test/deploy/helm.test.ts keeps them in step).
 */
export async function cacheNodeFlags(): Promise<string[]> {
  const values = parseYaml(
    await readFile(new URL('../deploy/helm/pullmap/values.yaml', import.meta.url), 'utf8'),
  ) as { cache?: { nodeFlags?: string[] } };
  return [...(await imageNodeFlags()), ...(values.cache?.nodeFlags ?? [])];
}

export async function imageNodeFlags(): Promise<string[]> {
  const dockerfile = await readFile(new URL('../Dockerfile', import.meta.url), 'utf8');
  const entrypoint = /^ENTRYPOINT\s+(\[.*\])\s*$/m.exec(dockerfile)?.[1];
  if (!entrypoint) throw new Error('Dockerfile: no ENTRYPOINT in exec form');
  return (JSON.parse(entrypoint) as string[]).filter((arg) => arg.startsWith('--'));
}

/** CPU time (user + system) a process has used so far, in microseconds, from /proc. */
export async function cpuMicros(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces) start at ") "; utime and stime are 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1e6) / CLOCK_TICKS;
}
const CLOCK_TICKS = 100; // USER_HZ on Linux

/** One mapping of a process, from /proc/PID/smaps. */
export interface Mapping {
  /** First and one-past-last address. */
  readonly start: number;
  readonly end: number;
  /** Like "r-xp". */
  readonly perms: string;
  /** Offset in the file mapped. */
  readonly offset: number;
  /** The file, or "[heap]", "[stack]", ...; "" for anonymous memory. */
  readonly path: string;
  /** Resident kilobytes. */
  readonly rssKb: number;
}

/** A process's mappings and how much of each is resident. */
export async function mappingsOf(pid: number): Promise<Mapping[]> {
  const text = await readFile(`/proc/${pid}/smaps`, 'utf8');
  const out: Mapping[] = [];
  // Each mapping: a header line, then "Rss: N kB" among its fields.
  for (const block of text.split(/\n(?=[0-9a-f]+-[0-9a-f]+ )/)) {
    const head = /^([0-9a-f]+)-([0-9a-f]+) (\S+) ([0-9a-f]+) \S+ \S+ *(.*)$/m.exec(block);
    if (!head) continue;
    out.push({
      start: Number.parseInt(head[1]!, 16),
      end: Number.parseInt(head[2]!, 16),
      perms: head[3]!,
      offset: Number.parseInt(head[4]!, 16),
      path: head[5]!.trim(),
      rssKb: Number(/\nRss:\s+(\d+) kB/.exec(block)?.[1] ?? 0),
    });
  }
  return out;
}
