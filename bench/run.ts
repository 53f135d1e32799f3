// `npm run bench`: the acceptance benchmarks of issues 2 and 3, each with its baseline, then a summary.
// A report, not a test: a missed target is printed as MISS and the exit code stays 0.
// `npm run bench -- parse controller` runs only the sections named (parse, decision, cold-start,
// existence, webhook, controller, cache, copy), in this order.

import os from 'node:os';
import { runCacheBench } from './cache.ts';
import { runColdStartBench } from './cold-start.ts';
import { runControllerBench } from './controller.ts';
import { runCopyBench } from './copy.ts';
import { runDecisionBench } from './decision.ts';
import { runExistenceBench } from './existence.ts';
import type { BenchResult } from './measure.ts';
import { sink } from './measure.ts';
import { runParseBench } from './parse.ts';
import { runWebhookBench } from './webhook.ts';

const started = performance.now();
const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
console.log(`# pullmap benchmarks: node ${process.version}, ${cpu}, ${os.availableParallelism()} cores\n`);

const sections: ReadonlyArray<readonly [string, () => BenchResult[] | Promise<BenchResult[]>]> = [
  ['parse', () => [runParseBench()]],
  ['decision', () => [runDecisionBench()]],
  ['cold-start', () => [runColdStartBench()]],
  ['existence', runExistenceBench],
  ['webhook', runWebhookBench],
  ['controller', async () => [await runControllerBench()]],
  ['cache', runCacheBench],
  ['copy', runCopyBench],
];
const asked = process.argv.slice(2);
const unknown = asked.filter((name) => !sections.some(([n]) => n === name));
if (unknown.length > 0) {
  console.error(`unknown section ${unknown.join(', ')}; sections: ${sections.map(([n]) => n).join(', ')}`);
  process.exit(2);
}
const results: BenchResult[] = [];
for (const [section, run] of sections)
  if (asked.length === 0 || asked.includes(section)) results.push(...(await run()));

const rows = [
  ['benchmark', 'target', 'measured', 'ratio vs baseline', 'verdict'],
  ...results.map((r) => [r.name, r.target, r.measured, r.ratio, r.pass ? 'PASS' : 'MISS']),
];
const widths = rows[0]!.map((_, col) => Math.max(...rows.map((row) => row[col]!.length)));
const line = (row: string[]): string => row.map((cell, col) => cell.padEnd(widths[col]!)).join('  ');
console.log('## summary');
console.log(line(rows[0]!));
console.log(widths.map((w) => '-'.repeat(w)).join('  '));
for (const row of rows.slice(1)) console.log(line(row));
// Printing the sink keeps every benchmarked result observable.
console.log(`\n${((performance.now() - started) / 1000).toFixed(1)} s total (checksum ${sink.value % 1e9})`);
