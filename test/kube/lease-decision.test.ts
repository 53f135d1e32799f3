// The Lease election's decisions without a cluster: a Lease object and clock readings in, the action
// and the campaign state out. The real Lease round trips are in test/e2e/controller.test.ts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  afterAttempt,
  afterFailure,
  type CampaignState,
  decide,
  heldSpec,
  INITIAL_STATE,
  isLeading,
  type LeaseObject,
  microTime,
  releasedSpec,
  requestBudget,
} from '../../src/kube/lease-decision.ts';

const timing = { leaseDurationMs: 15_000, renewDeadlineMs: 10_000 };
const lease = (
  holderIdentity: string | null,
  renewTime = '2026-01-01T00:00:00.000000Z',
  seconds = 15,
): LeaseObject => ({
  metadata: { name: 'pullmap-controller', namespace: 'pullmap' },
  spec: { holderIdentity, renewTime, leaseDurationSeconds: seconds },
});

test('no Lease: create it', () => {
  assert.equal(decide(undefined, INITIAL_STATE, 'me', 0).action, 'create');
});

test('a free or own Lease is written at once', () => {
  assert.equal(decide(lease(null), INITIAL_STATE, 'me', 5).action, 'write');
  assert.equal(decide(lease(''), INITIAL_STATE, 'me', 5).action, 'write');
  assert.equal(decide(lease('me'), INITIAL_STATE, 'me', 5).action, 'write');
});

test("another holder's record is taken over only after it stayed unchanged for its duration on this clock", () => {
  const theirs = lease('other');
  let step = decide(theirs, INITIAL_STATE, 'me', 1_000);
  assert.equal(step.action, 'wait');
  assert.equal(step.state.observedAt, 1_000);
  step = decide(theirs, step.state, 'me', 15_999);
  assert.equal(step.action, 'wait', 'just under 15 s since first seen');
  assert.equal(step.state.observedAt, 1_000, 'the same record keeps its first sighting');
  assert.equal(decide(theirs, step.state, 'me', 16_000).action, 'write');

  // A renewal by the holder restarts the count, whatever the times written in it say (skew is harmless).
  const renewed = lease('other', '2020-01-01T00:00:00.000000Z');
  step = decide(renewed, step.state, 'me', 16_000);
  assert.equal(step.action, 'wait');
  assert.equal(step.state.observedAt, 16_000);
  // The holder's own leaseDurationSeconds counts, not this replica's.
  assert.equal(decide(lease('other', 'x', 2), INITIAL_STATE, 'me', 0).action, 'wait');
  const seen = decide(lease('other', 'x', 2), INITIAL_STATE, 'me', 0).state;
  assert.equal(decide(lease('other', 'x', 2), seen, 'me', 2_000).action, 'write');
});

test('leading follows successful writes, and ends past the renew deadline even before the loop runs', () => {
  let state: CampaignState = afterAttempt(INITIAL_STATE, true, 100);
  assert.equal(isLeading(state, 100, timing), true);
  assert.equal(isLeading(state, 10_099, timing), true);
  assert.equal(isLeading(state, 10_100, timing), false, 'the deadline passed without a renewal');
  state = afterAttempt(state, false, 200);
  assert.equal(state.leading, false, 'another holder is fresh: not leading');
});

test('a failed renewal: a conflict ends leadership at once, other errors only past the deadline', () => {
  const leading = afterAttempt(INITIAL_STATE, true, 0);
  assert.equal(afterFailure(leading, true, 1, timing).leading, false);
  assert.equal(afterFailure(leading, false, 10_000, timing).leading, true, 'within the deadline');
  assert.equal(afterFailure(leading, false, 10_001, timing).leading, false);
  assert.equal(afterFailure(INITIAL_STATE, true, 1, timing), INITIAL_STATE, 'a follower stays as it was');
});

test("while leading, a request's budget is what is left of the renew deadline (at least 1 ms)", () => {
  assert.equal(requestBudget(INITIAL_STATE, 5_000, timing), undefined);
  const leading = afterAttempt(INITIAL_STATE, true, 1_000);
  assert.equal(requestBudget(leading, 4_000, timing), 7_000);
  assert.equal(requestBudget(leading, 50_000, timing), 1);
});

test('the written spec: acquire time and transitions move only when the holder changes', () => {
  const t0 = new Date('2026-01-01T00:00:00.123Z');
  const t1 = new Date('2026-01-01T00:00:02.456Z');
  assert.equal(microTime(t0), '2026-01-01T00:00:00.123000Z');
  const created = heldSpec(undefined, 'me', 15_500, t0);
  assert.deepEqual(created, {
    holderIdentity: 'me',
    leaseDurationSeconds: 16,
    acquireTime: '2026-01-01T00:00:00.123000Z',
    renewTime: '2026-01-01T00:00:00.123000Z',
    leaseTransitions: 0,
  });
  const renewed = heldSpec(created, 'me', 15_500, t1);
  assert.equal(renewed.acquireTime, created.acquireTime);
  assert.equal(renewed.renewTime, '2026-01-01T00:00:02.456000Z');
  assert.equal(renewed.leaseTransitions, 0);
  const taken = heldSpec({ ...created, holderIdentity: 'other' }, 'me', 15_000, t1);
  assert.equal(taken.acquireTime, '2026-01-01T00:00:02.456000Z');
  assert.equal(taken.leaseTransitions, 1);
  const released = releasedSpec(renewed, t1);
  assert.equal(released.holderIdentity, null);
  assert.equal(released.leaseDurationSeconds, 1);
  assert.equal(released.acquireTime, created.acquireTime);
});
