// Go-style durations as Kubernetes objects spell them: sums of number+unit runs, bounded in length and size.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseDuration } from '../../src/core/duration.ts';

test('parseDuration reads each number+unit run and sums them', () => {
  assert.deepEqual(parseDuration('0'), { ok: true, ms: 0 });
  assert.deepEqual(parseDuration('500ms'), { ok: true, ms: 500 });
  assert.deepEqual(parseDuration('1h30m'), { ok: true, ms: 5_400_000 });
  assert.deepEqual(parseDuration('1.5s'), { ok: true, ms: 1500 });
  assert.deepEqual(parseDuration('8784h'), { ok: true, ms: 8784 * 3_600_000 });
});

test('parseDuration refuses what is no duration, and tells an over-large one apart', () => {
  for (const text of ['', '10', 's', '10x', '10S', '1h 30m', '-5s', '1..2s', 'x'.repeat(33)]) {
    const parsed = parseDuration(text);
    assert.equal(parsed.ok, false, text);
    if (!parsed.ok) assert.equal(parsed.tooLarge, false, text);
  }
  const big = parseDuration('8785h');
  assert.equal(big.ok, false);
  if (!big.ok) assert.equal(big.tooLarge, true);
});
