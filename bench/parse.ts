// Benchmark 1: parse + normalise throughput over a realistic corpus, against a naive split-based
// reader that does the same string work but checks nothing.

import { formatNormalized, parseReference } from '../src/core/reference/index.ts';
import { type BenchResult, compareThroughput, formatRate, formatSpread, sink } from './measure.ts';
import { referenceCorpus } from './reference-corpus.ts';

const CORPUS_SIZE = 10_000;
const TARGET_PER_SECOND = 1_000_000;

/**
 * The cheapest plausible "parser": split on "@", a ":" after the last "/" is the tag, the first
 * component is a registry if it has "." or ":". No validation, so it is the floor for the string work.
 */
export function naiveNormalize(input: string): string {
  const [name = '', digest] = input.split('@');
  let rest = name;
  let tag = '';
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
  }
  let registry = 'docker.io';
  const slash = rest.indexOf('/');
  if (slash !== -1) {
    const first = rest.slice(0, slash);
    if (first.includes('.') || first.includes(':') || first === 'localhost') {
      registry = first;
      rest = rest.slice(slash + 1);
    }
  }
  if (registry === 'docker.io' && !rest.includes('/')) rest = `library/${rest}`;
  if (tag === '' && digest === undefined) tag = 'latest';
  return `${registry}/${rest}${tag === '' ? '' : `:${tag}`}${digest === undefined ? '' : `@${digest}`}`;
}

export function runParseBench(): BenchResult {
  const corpus = referenceCorpus(CORPUS_SIZE);
  // The corpus is meant to be valid; a reject here means the generator or the parser is wrong.
  let disagreements = 0;
  for (const input of corpus) {
    const parsed = parseReference(input);
    if (!parsed.ok)
      throw new Error(`corpus reference ${JSON.stringify(input)} rejected: ${parsed.error.message}`);
    if (formatNormalized(parsed.ref) !== naiveNormalize(input)) disagreements++;
  }

  const pullmap = (): number => {
    let acc = 0;
    for (const input of corpus) {
      const parsed = parseReference(input);
      if (parsed.ok) acc += formatNormalized(parsed.ref).length;
    }
    sink.value += acc;
    return corpus.length;
  };
  const naive = (): number => {
    let acc = 0;
    for (const input of corpus) acc += naiveNormalize(input).length;
    sink.value += acc;
    return corpus.length;
  };
  const cpu0 = process.threadCpuUsage();
  const wall0 = performance.now();
  const { subject, baseline } = compareThroughput(pullmap, naive, {
    warmupMs: 500,
    roundMs: 400,
    rounds: 7,
  });
  const cpu = process.threadCpuUsage(cpu0);
  // On a shared machine the thread gets less than a core and every rate drops with it; the share says
  // how much, and the ratio to the baseline (measured in alternating rounds) stays comparable.
  const share = (cpu.user + cpu.system) / 1000 / (performance.now() - wall0);
  const ratio = subject.perSecond / baseline.perSecond;

  console.log('## 1. parse + normalise');
  console.log(`corpus     ${corpus.length} distinct references (naive reader differs on ${disagreements})`);
  console.log(`pullmap    ${formatRate(subject.perSecond)} refs/s  (${formatSpread(subject)})`);
  console.log(`baseline   ${formatRate(baseline.perSecond)} refs/s  (${formatSpread(baseline)})`);
  console.log(`RATIO      pullmap/baseline = ${ratio.toFixed(3)}`);
  console.log(
    `CPU        the benchmark thread ran ${(share * 100).toFixed(0)}% of the time${share < 0.9 ? ' (a busy machine: rates are low by about that much)' : ''}`,
  );
  console.log('');
  return {
    name: 'parse+normalise',
    target: `>= ${formatRate(TARGET_PER_SECOND)} refs/s`,
    measured: `${formatRate(subject.perSecond)} refs/s`,
    ratio: `${ratio.toFixed(3)} x naive`,
    pass: subject.perSecond >= TARGET_PER_SECOND,
  };
}
