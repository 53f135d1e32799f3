// status.fill stays bounded whatever the number of images a map fills: counts over all of them, at most
// 50 listed with failures first and the newest first within a state, each last error cut to 1 KiB.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type FillItem, type FillState, fillStatus } from '../../src/controller/fill.ts';
import { parseReference } from '../../src/core/reference/index.ts';

function item(n: number, state: FillState, lastError?: string): FillItem {
  const source = `registry.example/team/app${n}:1`;
  const parsed = parseReference(source);
  assert.ok(parsed.ok);
  return {
    key: source,
    source: parsed.ref,
    target: parsed.ref,
    sourceName: source,
    targetName: `mirror.example/team/app${n}:1`,
    platforms: [],
    sourceSecrets: new Set(),
    sourceNamespace: 'default',
    secret: undefined,
    ownPush: true,
    maps: new Map(),
    state,
    digest: state === 'Filled' ? `sha256:${'a'.repeat(64)}` : undefined,
    lastError,
    // Later n: more recent.
    time: new Date(Date.UTC(2026, 0, 1, 0, 0, n)).toISOString(),
    failures: 0,
    retryAt: 0,
  };
}

describe('fillStatus', () => {
  test('counts every image, lists 50: failures first, then pending, then filled, newest first', () => {
    const items = [
      ...Array.from({ length: 40 }, (_, n) => item(n, 'Filled')),
      ...Array.from({ length: 10 }, (_, n) => item(100 + n, n % 2 ? 'Pending' : 'Copying')),
      ...Array.from({ length: 20 }, (_, n) => item(200 + n, 'Failed', `TARGET_REFUSED: ${'x'.repeat(5000)}`)),
      item(300, 'Partial'),
    ];
    const status = fillStatus(items);
    assert.deepEqual(
      { filled: status.filled, pending: status.pending, failed: status.failed },
      { filled: 41, pending: 10, failed: 20 },
    );
    assert.equal(status.images.length, 50);
    const states = status.images.map((i) => i.state);
    assert.deepEqual(states.slice(0, 20), Array(20).fill('Failed'));
    assert.deepEqual(states.slice(20, 30), Array(10).fill('Pending'), 'a copy in progress shows as Pending');
    assert.equal(status.images[0]?.image, 'registry.example/team/app219:1', 'the newest failure first');
    assert.equal(status.images[30]?.image, 'registry.example/team/app300:1', 'then the newest filled');
    for (const failed of status.images.slice(0, 20)) assert.equal(failed.lastError?.length, 1024);
    assert.ok(JSON.stringify(status).length < 100_000, 'the status stays small');
  });
});
