// Linear time shown without a wall-clock bound: the same work on an input ten times longer must take
// about ten times the CPU (a quadratic parser takes about a hundred times), whatever the machine's
// speed and however busy it is.
import assert from 'node:assert/strict';

/** Above this growth factor the work is superlinear: linear gives about 10, quadratic about 100. */
export const LINEAR_GROWTH_LIMIT = 40;

/**
 * Fails unless `run` on `input(10 * n)` takes less than LINEAR_GROWTH_LIMIT times as long as on
 * `input(n)`. A GC pause or a cache flushed by another process can only inflate a measurement, so a
 * factor over the limit is measured again (five times at most) and the lowest one counts.
 */
export function assertLinear(run: (input: string) => unknown, input: (n: number) => string, n: number): void {
  let lowest = Number.POSITIVE_INFINITY;
  for (let attempt = 0; attempt < 5 && lowest >= LINEAR_GROWTH_LIMIT; attempt++)
    lowest = Math.min(lowest, growthFactor(run, input, n));
  assert.ok(
    lowest < LINEAR_GROWTH_LIMIT,
    `${JSON.stringify(input(4))}…: 10× longer took ${lowest.toFixed(1)}× the time`,
  );
}

/**
 * How many times more CPU `run` takes on `input(10 * n)` than on `input(n)`: each size is the best of
 * two batches, and a batch repeats `run` until the small input takes 20 ms of CPU, so the
 * granularity of CPU accounting does not count.
 */
export function growthFactor(
  run: (input: string) => unknown,
  input: (n: number) => string,
  n: number,
): number {
  const small = input(n);
  const large = input(10 * n);
  let repeat = 1;
  while (batch(run, small, repeat) < 20 && repeat < 1 << 20) repeat *= 2;
  return best(run, large, repeat) / best(run, small, repeat);
}

function best(run: (input: string) => unknown, input: string, repeat: number): number {
  let min = Number.POSITIVE_INFINITY;
  for (let i = 0; i < 2; i++) min = Math.min(min, batch(run, input, repeat));
  return min;
}

/** Milliseconds of this thread's CPU: time other processes take on a shared machine does not count. */
function batch(run: (input: string) => unknown, input: string, repeat: number): number {
  const start = process.threadCpuUsage();
  for (let i = 0; i < repeat; i++) run(input);
  const used = process.threadCpuUsage(start);
  return (used.user + used.system) / 1000;
}
