// User-written patterns (mutableTags, the cache's refresh rules) run on RE2 (re2js): patterns that make
// a backtracking engine take exponential time are accepted and decided on hostile 128-character tags
// like any other. The table asserts the decisions; a backtracking engine would not return from them.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ExistenceFacts } from '../../src/core/facts.ts';
import {
  analyzeMaps,
  buildSnapshot,
  DEFAULT_DECISION_SETTINGS,
  decideImage,
} from '../../src/core/mapping/index.ts';
import {
  checkTagPattern,
  checkTagPatternList,
  compileTagPatterns,
  PATTERN_LIMITS,
} from '../../src/core/tag-pattern.ts';

const noFacts: ExistenceFacts = () => undefined;

/** Whether nginx:TAG keeps its registry under a map whose only mutable tag pattern is `pattern`. */
function keptAsMutable(pattern: string, tag: string): boolean {
  const analysis = analyzeMaps([
    {
      current: {
        apiVersion: 'pullmap.dev/v1alpha1',
        kind: 'ClusterImageMap',
        metadata: { name: 'hostile' },
        spec: { mappings: [{ from: 'docker.io/', to: 'mirror.example/' }], mutableTags: [pattern] },
      },
    },
  ]);
  const verdict = analysis.verdicts[0];
  assert.equal(verdict?.verdict, 'Accepted', JSON.stringify(verdict?.findings));
  const d = decideImage(
    buildSnapshot(analysis.accepted),
    DEFAULT_DECISION_SETTINGS,
    `nginx:${tag}`,
    { namespace: 'default', namespaceLabels: {}, podLabels: {} },
    noFacts,
  );
  if (d.outcome === 'Mapped') return false;
  assert.ok(
    d.reasons.some((r) => r.code === 'MutableTagKept'),
    `${pattern} on ${tag}: ${d.outcome} ${JSON.stringify(d.reasons)}`,
  );
  return true;
}

const repeat = (c: string, n: number) => c.repeat(n);
const TAG = 128;

// [pattern, a hostile tag that does not match (128 characters), a tag that matches]
const CATASTROPHIC: ReadonlyArray<readonly [string, string, string]> = [
  // overlapping alternatives
  ['(a|a)*', `${repeat('a', TAG - 1)}-`, repeat('a', TAG)],
  ['(a|aa)+', `${repeat('a', TAG - 1)}b`, repeat('a', TAG)],
  ['(\\w|\\d)+z', repeat('1', TAG), `${repeat('1', TAG - 1)}z`],
  ['(a|a?)+b', repeat('a', TAG), `${repeat('a', TAG - 1)}b`],
  ['([a-z0-9]|[0-9a-z])*-x', `${repeat('a1', TAG / 2 - 1)}-y`, `${repeat('a1', TAG / 2 - 1)}-x`],
  // quantifier chains
  ['\\w*\\w*\\w*\\w*\\w*\\w*\\w*\\w*!', repeat('a', TAG), 'never'],
  ['a*a*a*a*a*a*a*a*a*a*b', repeat('a', TAG), `${repeat('a', TAG - 1)}b`],
  ['.*.*.*.*.*=', repeat('x', TAG), 'never'],
  ['(.*a){12}', `${repeat('a', 11)}${repeat('b', TAG - 11)}`, repeat('a', 12)],
  // nested repetition
  ['(a+)+', `${repeat('a', TAG - 1)}-`, repeat('a', TAG)],
  ['(a*)*b', repeat('a', TAG), `${repeat('a', TAG - 1)}b`],
  ['(x+x+)+y', repeat('x', TAG), `${repeat('x', TAG - 1)}y`],
  ['((a+)*)+c', repeat('a', TAG), `${repeat('a', TAG - 1)}c`],
  ['(([a-z])+.)+[0-9]', repeat('ab', TAG / 2), `${repeat('ab', TAG / 2 - 1)}a1`],
  ['(\\d+\\.?)+-rc', `${repeat('1.', TAG / 2 - 1)}1-`, '1.2.3-rc'],
];

describe('catastrophic patterns on hostile tags', () => {
  for (const [pattern, hostile, matching] of CATASTROPHIC) {
    test(`${pattern} is accepted and decided on a ${hostile.length}-character tag`, () => {
      assert.equal(checkTagPattern(pattern), undefined);
      assert.equal(hostile.length, TAG);
      assert.equal(keptAsMutable(pattern, hostile), false, 'the hostile tag does not match');
      if (matching !== 'never') assert.equal(keptAsMutable(pattern, matching), true, 'a matching tag does');
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
