// The copiers' shared ledger on its own: one push per object at a time (others wait, and push only if
// it failed), one manifest write per repository at a time, and a wait that a copy's signal ends.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { PushLedger } from '../../src/mirror/push-ledger.ts';

const cancelled = () => new Error('cancelled');
const never = new AbortController().signal;

describe('PushLedger.once', () => {
  it('runs one push per key; the others wait for it and do not push', async () => {
    const ledger = new PushLedger();
    let pushes = 0;
    const push = async () => {
      pushes++;
      await sleep(20);
    };
    const shares = await Promise.all([1, 2, 3].map(() => ledger.once('k', never, cancelled, push)));
    assert.equal(pushes, 1);
    assert.deepEqual(shares.sort(), ['joined', 'joined', 'mine']);
    // Another key is not held up, and a key is free again once its push ended.
    assert.equal(await ledger.once('other', never, cancelled, push), 'mine');
    assert.equal(await ledger.once('k', never, cancelled, push), 'mine');
    assert.equal(pushes, 3);
  });

  it('a waiter pushes itself when the push it waited for failed', async () => {
    const ledger = new PushLedger();
    const failing = ledger.once('k', never, cancelled, async () => {
      await sleep(10);
      throw new Error('refused');
    });
    let second = 0;
    const waiting = ledger.once('k', never, cancelled, async () => {
      second++;
    });
    await assert.rejects(failing, /refused/);
    assert.equal(await waiting, 'mine');
    assert.equal(second, 1);
  });

  it("a waiter's signal ends its wait with cancelled(), not the push", async () => {
    const ledger = new PushLedger();
    let finish = () => {};
    const pushing = ledger.once('k', never, cancelled, () => new Promise<void>((r) => (finish = r)));
    const stop = new AbortController();
    const waiting = ledger.once('k', stop.signal, cancelled, async () => assert.fail('pushed twice'));
    stop.abort();
    await assert.rejects(waiting, /cancelled/);
    finish();
    assert.equal(await pushing, 'mine');
  });
});

describe('PushLedger.alone', () => {
  it('runs writes with one key one at a time, in order; other keys run beside them', async () => {
    const ledger = new PushLedger();
    let running = 0;
    let most = 0;
    const order: number[] = [];
    const write = (n: number) => async () => {
      running++;
      most = Math.max(most, running);
      await sleep(5);
      order.push(n);
      running--;
      return n;
    };
    const results = await Promise.all(
      [1, 2, 3, 4].map((n) => ledger.alone('repo', never, cancelled, write(n))),
    );
    assert.deepEqual(results, [1, 2, 3, 4]);
    assert.deepEqual(order, [1, 2, 3, 4]);
    assert.equal(most, 1);
    most = 0;
    await Promise.all(['a', 'b'].map((key, n) => ledger.alone(key, never, cancelled, write(n))));
    assert.equal(most, 2);
  });

  it('a write that throws releases the key; a cancelled wait never runs', async () => {
    const ledger = new PushLedger();
    await assert.rejects(
      ledger.alone('repo', never, cancelled, async () => {
        throw new Error('refused');
      }),
      /refused/,
    );
    let release = () => {};
    const holding = ledger.alone('repo', never, cancelled, () => new Promise<void>((r) => (release = r)));
    const stop = new AbortController();
    const waiting = ledger.alone('repo', stop.signal, cancelled, async () => assert.fail('ran after cancel'));
    stop.abort();
    await assert.rejects(waiting, /cancelled/);
    release();
    await holding;
    assert.equal(await ledger.alone('repo', never, cancelled, async () => 'free'), 'free');
  });
});
