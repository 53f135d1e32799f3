// Benchmark 3: wall time of `pullmap explain nginx` as a fresh process, against `node -e 0`, so the
// difference is what pullmap itself costs on top of starting Node.

import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { type BenchResult, median, percentile } from './measure.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BUNDLE = 'dist/pullmap.js';
const RUNS = 15;
const WARMUP_RUNS = 2;
const TARGET_MS = 150;

interface Run {
  readonly ms: number;
  readonly stdout: string;
}

function timed(args: readonly string[]): Run {
  const start = performance.now();
  const result = spawnSync(process.execPath, args, { cwd: ROOT, encoding: 'utf8', timeout: 10_000 });
  const ms = performance.now() - start;
  if (result.error) throw result.error;
  if (result.status !== 0)
    throw new Error(`node ${args.join(' ')} exited with ${result.status ?? result.signal}: ${result.stderr}`);
  return { ms, stdout: result.stdout };
}

export function runColdStartBench(): BenchResult {
  if (!existsSync(`${ROOT}${BUNDLE}`)) throw new Error(`${BUNDLE} is missing; run "npm run build" first`);
  const explain = [BUNDLE, 'explain', 'nginx'];
  const bare = ['-e', '0'];
  const first = timed(explain);
  if (!first.stdout.includes('docker.io/library/nginx:latest'))
    throw new Error(`unexpected explain output:\n${first.stdout}`);
  for (let i = 1; i < WARMUP_RUNS; i++) timed(explain);
  for (let i = 0; i < WARMUP_RUNS; i++) timed(bare);

  // Interleaved so that load from other processes lands on both series alike.
  const pullmap: number[] = [];
  const node: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    pullmap.push(timed(explain).ms);
    node.push(timed(bare).ms);
  }
  const pm = median(pullmap);
  const base = median(node);

  console.log('## 3. cold start');
  console.log(`runs       ${RUNS} each, interleaved, after ${WARMUP_RUNS} warm-up runs`);
  console.log(
    `pullmap    median ${pm.toFixed(1)} ms, p90 ${percentile(pullmap, 90).toFixed(1)} ms  (node ${BUNDLE} explain nginx)`,
  );
  console.log(
    `baseline   median ${base.toFixed(1)} ms, p90 ${percentile(node, 90).toFixed(1)} ms  (node -e 0)`,
  );
  console.log(
    `RATIO      pullmap/baseline = ${(pm / base).toFixed(2)}, difference ${(pm - base).toFixed(1)} ms`,
  );
  console.log('');
  return {
    name: 'cold start: explain nginx',
    target: `< ${TARGET_MS} ms`,
    measured: `${pm.toFixed(1)} ms median`,
    ratio: `${(pm / base).toFixed(2)} x node -e 0 (+${(pm - base).toFixed(1)} ms)`,
    pass: pm < TARGET_MS,
  };
}
