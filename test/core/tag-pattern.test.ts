// User-written patterns (mutableTags, the cache's refresh rules) run on RE2 (re2js): patterns that make
// a backtracking engine take exponential time are accepted and decided on hostile 128-character tags
// like any other. The table (tag-pattern-table.ts) asserts the decisions, made in a worker thread that is
// terminated if it does not answer, so a backtracking engine fails the rows instead of hanging the run.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Worker } from 'node:worker_threads';
import {
  checkTagPattern,
  checkTagPatternList,
  compileTagPatterns,
  PATTERN_LIMITS,
} from '../../src/core/tag-pattern.ts';
import { CATASTROPHIC, type RowAnswer, TAG } from './tag-pattern-table.ts';

describe('catastrophic patterns on hostile tags', () => {
  // The table runs in a worker, given far more than it needs (RE2 decides it in milliseconds): a
  // backtracking engine hangs there, and the thread is terminated so each row fails instead.
  const answers = new Map<number, RowAnswer>();
  let stopped = '';
  const decided = new Promise<void>((resolve) => {
    const worker = new Worker(new URL('./tag-pattern-table.ts', import.meta.url));
    const watchdog = setTimeout(() => {
      stopped = 'no answer in 60 s (a backtracking engine?)';
      void worker.terminate();
    }, 60_000);
    worker.on('message', (answer: RowAnswer) => answers.set(answer.row, answer));
    worker.on('error', (err) => {
      stopped = `the worker failed: ${err.message}`;
    });
    worker.on('exit', () => {
      clearTimeout(watchdog);
      resolve();
    });
  });
  for (const [row, [pattern, hostile, matching]] of CATASTROPHIC.entries()) {
    test(`${pattern} is accepted and decided on a ${hostile.length}-character tag`, async () => {
      await decided;
      const answer = answers.get(row);
      assert.ok(answer, `${pattern}: ${stopped}`);
      assert.equal(answer.accepted, true);
      assert.equal(hostile.length, TAG);
      assert.equal(answer.hostileKept, false, 'the hostile tag does not match');
      if (matching !== 'never') assert.equal(answer.matchingKept, true, 'a matching tag does');
    });
  }
});

describe('pattern semantics', () => {
  test('a pattern matches whole tags only', () => {
    const m = compileTagPatterns(['latest', 'v?[0-9]+(\\.[0-9]+)?']);
    assert.ok(m);
    for (const yes of ['latest', '15', 'v1.27']) assert.equal(m.matches(yes), true, yes);
    for (const no of ['latest-1.2', 'my-latest', '1.2.3', 'v1.27-alpine', ''])
      assert.equal(m.matches(no), false, no);
  });

  test('plain tags (compared as strings) and patterns mix in one list', () => {
    const m = compileTagPatterns(['latest', '1\\.27', 'v1.2', 'nightly-[0-9]+']);
    assert.ok(m);
    for (const yes of ['latest', '1.27', 'v1.2', 'v1x2', 'nightly-20261206'])
      assert.equal(m.matches(yes), true, yes);
    for (const no of ['1x27', 'Latest', 'latest1', 'nightly-', 'v1.2.3'])
      assert.equal(m.matches(no), false, no);
  });

  test('flags stay inside the pattern that sets them', () => {
    const m = compileTagPatterns(['(?i)stable', 'edge']);
    assert.ok(m);
    assert.equal(m.matches('STABLE'), true);
    assert.equal(m.matches('EDGE'), false);
  });

  test('no patterns: no matcher', () => {
    assert.equal(compileTagPatterns([]), undefined);
  });

  test('what RE2 cannot express is refused with the reason', () => {
    const cases: ReadonlyArray<readonly [string, RegExp]> = [
      ['(?=v)[0-9a-z.]+', /lookaround \(\?= .*linear time/],
      ['(?!rc)[a-z]+', /lookaround \(\?! /],
      ['(?<=v)1', /lookaround \(\?<= /],
      ['(?<!v)1', /lookaround \(\?<! /],
      ['(a)\\1', /backreference \\1/],
      ['(?<n>a)\\k<n>', /backreference \\k/],
      ['a{2,1}', /not a valid RE2 regular expression: invalid repeat count/],
      ['(a', /missing closing \)/],
      ['a**', /invalid nested repetition operator/],
    ];
    for (const [pattern, message] of cases)
      assert.match(checkTagPattern(pattern) ?? 'accepted', message, pattern);
  });

  test('patterns that compile to too many steps are refused before compiling, and lists too', () => {
    assert.match(checkTagPattern('[0-9a-f]{40}') ?? 'accepted', /accepted/);
    assert.match(checkTagPattern('[a-z]{1000}[a-z]{1000}') ?? 'accepted', /about 2\d{3} steps; at most 1000/);
    assert.match(checkTagPattern('((a{10}){10}){10}') ?? 'accepted', /steps; at most 1000/);
    assert.match(checkTagPattern('\\p{L}{999}'.repeat(20)) ?? 'accepted', /steps; at most 1000/);
    const many = Array.from({ length: 9 }, (_, i) => `t${i}[a-z]{500}`);
    assert.equal(checkTagPattern(many[0] as string), undefined);
    assert.match(
      checkTagPatternList(many) ?? 'accepted',
      new RegExp(`together compile to about \\d+ steps; at most ${PATTERN_LIMITS.listSteps}`),
    );
  });
});
