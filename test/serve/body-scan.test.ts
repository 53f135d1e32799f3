// The pre-scan of review bodies: counts and depth outside strings only, request.uid found wherever the
// chunks split, escapes honoured.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BodyScan } from '../../src/serve/body-scan.ts';

const LIMITS = { maxValues: 1000, maxDepth: 10 };

function scanIn(parts: ReadonlyArray<string | Buffer>) {
  const scan = new BodyScan(LIMITS);
  for (const p of parts) scan.feed(Buffer.from(p));
  return { uid: scan.uid, values: scan.values, excess: scan.excess };
}

describe('BodyScan', () => {
  const doc = JSON.stringify({
    kind: 'AdmissionReview',
    object: { uid: 'not-this-one', s: 'a "quoted" [{,}] \\ back' },
    request: { name: 'x', uid: 'ü-"1"\\', nested: { uid: 'nor-this' }, list: [1, [2, 3], { a: 'b' }] },
  });

  it('finds request.uid however the body is split, and counts the same', () => {
    const whole = scanIn([doc]);
    assert.equal(whole.uid, 'ü-"1"\\');
    assert.equal(whole.excess, undefined);
    const bytes = Buffer.from(doc);
    for (let i = 0; i <= bytes.length; i++)
      assert.deepEqual(scanIn([bytes.subarray(0, i), bytes.subarray(i)]), whole);
    assert.deepEqual(scanIn([...bytes].map((b) => Buffer.from([b]))), whole);
  });

  it('ignores brackets and commas inside strings', () => {
    assert.equal(scanIn(['["[[[[,,,,{{{{"]']).values, 1);
    assert.equal(scanIn(['["\\"[[[["]']).values, 1);
  });

  it('reports too many values and too deep nesting', () => {
    assert.equal(scanIn([`[${'0,'.repeat(1000)}0]`]).excess, 'values');
    assert.equal(scanIn(['['.repeat(11)]).excess, 'depth');
    assert.equal(scanIn(['['.repeat(10) + ']'.repeat(10)]).excess, undefined);
  });

  it('finds no uid outside the envelope request', () => {
    assert.equal(scanIn(['[{"request":{"uid":"a"}}]']).uid, undefined);
    assert.equal(scanIn(['{"request":[{"uid":"a"}]}']).uid, undefined);
    assert.equal(scanIn(['{"request":{"uid":1,"x":"a"}}']).uid, undefined);
  });
});
