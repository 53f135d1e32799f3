// The catastrophic-pattern table of tag-pattern.test.ts, decided in a worker thread: a backtracking
// engine would never return from it, and only terminating the thread turns that hang into a failure.
import assert from 'node:assert/strict';
import { isMainThread, parentPort } from 'node:worker_threads';
import type { ExistenceFacts } from '../../src/core/facts.ts';
import {
  analyzeMaps,
  buildSnapshot,
  DEFAULT_DECISION_SETTINGS,
  decideImage,
} from '../../src/core/mapping/index.ts';
import { checkTagPattern } from '../../src/core/tag-pattern.ts';

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
export const TAG = 128;

// [pattern, a hostile tag that does not match (128 characters), a tag that matches]
export const CATASTROPHIC: ReadonlyArray<readonly [string, string, string]> = [
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

/** One row's answers: whether the pattern is accepted, and whether each tag keeps its registry. */
export interface RowAnswer {
  readonly row: number;
  readonly accepted: boolean;
  readonly hostileKept: boolean;
  readonly matchingKept: boolean | undefined;
}

if (!isMainThread) {
  for (const [row, [pattern, hostile, matching]] of CATASTROPHIC.entries()) {
    const answer: RowAnswer = {
      row,
      accepted: checkTagPattern(pattern) === undefined,
      hostileKept: keptAsMutable(pattern, hostile),
      matchingKept: matching === 'never' ? undefined : keptAsMutable(pattern, matching),
    };
    parentPort?.postMessage(answer);
  }
}
