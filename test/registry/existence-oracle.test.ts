// The oracle's caching rules with a scripted probe and a fake clock; the same rules against a real
// registry are in existence-registry.test.ts.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ImageReference } from '../../src/core/reference/index.ts';
import {
  ExistenceOracle,
  type ExistenceOracleOptions,
  type OracleEvent,
  type ProbeReport,
} from '../../src/registry/existence-oracle.ts';

interface Script {
  /** Probes started, by normalised reference. */
  readonly calls: string[];
  /** The answer the next probe of a reference gives (default Available). */
  answers: Map<string, ProbeReport>;
  /** When set, probes wait for this before answering. */
  gate: Promise<void> | undefined;
}

function scripted(options: Partial<ExistenceOracleOptions> = {}): {
  oracle: ExistenceOracle;
  script: Script;
  clock: { now: number };
  events: OracleEvent[];
} {
  const clock = { now: 1_000_000 };
  const events: OracleEvent[] = [];
  const script: Script = { calls: [], answers: new Map(), gate: undefined };
  const oracle = new ExistenceOracle({
    now: () => clock.now,
    positiveTtlMs: 60_000,
    negativeTtlMs: 10_000,
    failureTtlMs: 1_000,
    observer: (e) => events.push(e),
    ...options,
    probe: async (ref: ImageReference) => {
      const key = `${ref.registry}/${ref.repository}:${ref.tag ?? ''}${ref.digest ? `@${ref.digest}` : ''}`;
      script.calls.push(key);
      if (script.gate) await script.gate;
      return (
        script.answers.get(key) ?? { outcome: 'Available', digest: `sha256:${'a'.repeat(64)}`, status: 200 }
      );
    },
  });
  return { oracle, script, clock, events };
}

describe('ExistenceOracle', () => {
  it('peek answers only fresh cached answers, under the asking map’s TTLs, and never probes', async () => {
    const { oracle, script, clock } = scripted();
    assert.equal(oracle.peek('zarf.local/app:1'), undefined, 'nothing cached yet');
    assert.equal(script.calls.length, 0, 'peek does not probe');
    await oracle.exists('zarf.local/app:1');
    clock.now += 20_000;
    assert.equal(oracle.peek('zarf.local/app:1')?.outcome, 'Available');
    assert.equal(oracle.peek('zarf.local/app:1')?.ageMs, 20_000);
    assert.equal(
      oracle.peek('zarf.local/app:1', { positiveTtlMs: 10_000 }),
      undefined,
      'too old for this map',
    );
    // Not yet normalised input is normalised before the lookup.
    assert.equal(oracle.peek('zarf.local/app:1@bogus'), undefined);
    clock.now += 50_000;
    assert.equal(oracle.peek('zarf.local/app:1'), undefined, 'past the default positive TTL');
    assert.equal(script.calls.length, 1);
  });

  it('answers from the cache within the positive TTL and asks again after it', async () => {
    const { oracle, script, clock } = scripted();
    const first = await oracle.exists('zarf.local/app:1');
    assert.deepEqual(first, {
      outcome: 'Available',
      digest: `sha256:${'a'.repeat(64)}`,
      status: 200,
      cached: false,
      ageMs: 0,
    });
    clock.now += 59_999;
    const second = await oracle.exists('zarf.local/app:1');
    assert.equal(second.cached, true);
    assert.equal(second.ageMs, 59_999);
    assert.equal(script.calls.length, 1);
    clock.now += 1;
    const third = await oracle.exists('zarf.local/app:1');
    assert.equal(third.cached, false);
    assert.equal(script.calls.length, 2);
  });

  it('keeps NotFound for the negative TTL only', async () => {
    const { oracle, script, clock } = scripted();
    script.answers.set('zarf.local/app:2', { outcome: 'NotFound', status: 404 });
    assert.equal((await oracle.exists('zarf.local/app:2')).outcome, 'NotFound');
    clock.now += 9_999;
    const cached = await oracle.exists('zarf.local/app:2');
    assert.deepEqual([cached.outcome, cached.cached, cached.ageMs], ['NotFound', true, 9_999]);
    clock.now += 1;
    script.answers.delete('zarf.local/app:2');
    const fresh = await oracle.exists('zarf.local/app:2');
    assert.deepEqual([fresh.outcome, fresh.cached], ['Available', false]);
    assert.equal(script.calls.length, 2);
  });

  it('treats Unauthorized like NotFound (negative TTL)', async () => {
    const { oracle, script, clock } = scripted();
    script.answers.set('zarf.local/private:1', { outcome: 'Unauthorized', status: 401 });
    await oracle.exists('zarf.local/private:1');
    clock.now += 5_000;
    assert.equal((await oracle.exists('zarf.local/private:1')).cached, true);
    clock.now += 5_000;
    assert.equal((await oracle.exists('zarf.local/private:1')).cached, false);
  });

  it('remembers failures only for the short failure TTL', async () => {
    const { oracle, script, clock } = scripted();
    for (const outcome of ['Unreachable', 'Timeout', 'Invalid'] as const) {
      const ref = `zarf.local/${outcome.toLowerCase()}:1`;
      script.answers.set(ref, { outcome });
      await oracle.exists(ref);
      clock.now += 999;
      assert.equal((await oracle.exists(ref)).cached, true, `${outcome} within failure TTL`);
      clock.now += 1;
      assert.equal((await oracle.exists(ref)).cached, false, `${outcome} after failure TTL`);
    }
  });

  it('stays away as long as a 429 Retry-After asks, up to the cap', async () => {
    const { oracle, script, clock } = scripted({ maxRetryAfterMs: 20_000 });
    script.answers.set('zarf.local/limited:1', { outcome: 'RateLimited', status: 429, retryAfterMs: 7_000 });
    script.answers.set('zarf.local/limited:2', {
      outcome: 'RateLimited',
      status: 429,
      retryAfterMs: 3_600_000,
    });
    await oracle.exists('zarf.local/limited:1');
    await oracle.exists('zarf.local/limited:2');
    clock.now += 6_999;
    assert.equal((await oracle.exists('zarf.local/limited:1')).cached, true);
    clock.now += 1;
    assert.equal((await oracle.exists('zarf.local/limited:1')).cached, false);
    clock.now += 13_000;
    assert.equal((await oracle.exists('zarf.local/limited:2')).cached, false, 'capped at 20 s');
  });

  it('honours per-call TTLs over the oracle defaults', async () => {
    const { oracle, script, clock } = scripted();
    await oracle.exists('zarf.local/app:1');
    clock.now += 2_000;
    assert.equal((await oracle.exists('zarf.local/app:1', { positiveTtlMs: 1_000 })).cached, false);
    script.answers.set('zarf.local/gone:1', { outcome: 'NotFound' });
    await oracle.exists('zarf.local/gone:1');
    clock.now += 20_000;
    assert.equal((await oracle.exists('zarf.local/gone:1', { negativeTtlMs: 60_000 })).cached, true);
    assert.equal((await oracle.exists('zarf.local/gone:1')).cached, false);
  });

  it('a TTL of 0 disables caching', async () => {
    const { oracle, script } = scripted({ positiveTtlMs: 0 });
    await oracle.exists('zarf.local/app:1');
    await oracle.exists('zarf.local/app:1');
    assert.equal(script.calls.length, 2);
  });

  it('coalesces concurrent questions about one image into one probe', async () => {
    const { oracle, script, events } = scripted();
    let open: () => void = () => {};
    script.gate = new Promise((resolve) => {
      open = resolve;
    });
    const pending = Array.from({ length: 50 }, () => oracle.exists('zarf.local/app:1'));
    const other = oracle.exists('zarf.local/other:1');
    await new Promise((r) => setImmediate(r));
    assert.equal(script.calls.length, 2);
    open();
    const answers = await Promise.all(pending);
    await other;
    assert.equal(script.calls.length, 2);
    assert.ok(answers.every((a) => a.outcome === 'Available' && !a.cached && a.ageMs === 0));
    const stats = oracle.stats();
    assert.deepEqual([stats.misses, stats.coalesced, stats.probes, stats.hits], [2, 49, 2, 0]);
    assert.equal(events.filter((e) => e.kind === 'coalesced').length, 49);
  });

  it('normalises the key: "latest" is implied, Docker Hub names expand', async () => {
    const { oracle, script } = scripted();
    await oracle.exists('docker.io/library/nginx');
    await oracle.exists('docker.io/library/nginx:latest');
    await oracle.exists('nginx:latest');
    assert.equal(script.calls.length, 1);
    await oracle.exists(`docker.io/library/nginx@sha256:${'b'.repeat(64)}`);
    assert.equal(script.calls.length, 2);
  });

  it('evicts the least recently used answer when full', async () => {
    const { oracle, script } = scripted({ maxEntries: 2 });
    await oracle.exists('r.io/a:1');
    await oracle.exists('r.io/b:1');
    await oracle.exists('r.io/a:1'); // a is now the most recent
    await oracle.exists('r.io/c:1'); // evicts b
    assert.equal(script.calls.length, 3);
    assert.equal((await oracle.exists('r.io/a:1')).cached, true);
    assert.equal((await oracle.exists('r.io/b:1')).cached, false);
    const stats = oracle.stats();
    assert.equal(stats.entries, 2);
    assert.equal(stats.evictions, 2);
  });

  it('never evicts an answer that keeps being asked for, however many others come and go', async () => {
    const { oracle, script } = scripted({ maxEntries: 16 });
    await oracle.exists('r.io/hot:1');
    for (let i = 0; i < 400; i++) {
      await oracle.exists(`r.io/cold-${i}:1`);
      // Asked every third new image: often enough to be among the 16 most recent at all times.
      if (i % 3 === 0) assert.ok(oracle.peek('r.io/hot:1'), `hot answer evicted after ${i} others`);
    }
    assert.equal(script.calls.filter((c) => c.includes('/hot')).length, 1);
    assert.equal(oracle.stats().entries, 16);
    // An answer nobody asks for again is evicted in its turn.
    assert.equal(oracle.peek('r.io/cold-0:1'), undefined);
  });

  it('answers Timeout at the caller’s deadline and still caches the late answer', async () => {
    const { oracle, script, events } = scripted();
    let open: () => void = () => {};
    script.gate = new Promise((resolve) => {
      open = resolve;
    });
    const controller = new AbortController();
    const waiting = oracle.exists('zarf.local/slow:1', { signal: controller.signal });
    controller.abort();
    const answer = await waiting;
    assert.deepEqual([answer.outcome, answer.cached], ['Timeout', false]);
    assert.equal(oracle.stats().deadlineExceeded, 1);
    assert.ok(events.some((e) => e.kind === 'deadline'));
    open();
    await new Promise((r) => setImmediate(r));
    const later = await oracle.exists('zarf.local/slow:1');
    assert.deepEqual([later.outcome, later.cached], ['Available', true]);
    assert.equal(script.calls.length, 1);
  });

  it('an already-aborted signal still gets a cached answer', async () => {
    const { oracle } = scripted();
    await oracle.exists('zarf.local/app:1');
    const answer = await oracle.exists('zarf.local/app:1', { signal: AbortSignal.abort() });
    assert.deepEqual([answer.outcome, answer.cached], ['Available', true]);
  });

  it('bounds a probe that never answers with its own timeout', async () => {
    const oracle = new ExistenceOracle({
      probe: () => new Promise<ProbeReport>(() => {}),
      probeTimeoutMs: 20,
    });
    const answer = await oracle.exists('zarf.local/hang:1');
    assert.equal(answer.outcome, 'Timeout');
  });

  it('turns a throwing probe into Unreachable, not a rejection', async () => {
    const oracle = new ExistenceOracle({
      probe: async () => {
        throw new Error('boom');
      },
    });
    const answer = await oracle.exists('zarf.local/app:1');
    assert.equal(answer.outcome, 'Unreachable');
  });

  it('answers Invalid for a reference it cannot parse, without probing', async () => {
    const { oracle, script } = scripted();
    const answer = await oracle.exists('Not A Reference');
    assert.equal(answer.outcome, 'Invalid');
    assert.equal(script.calls.length, 0);
  });

  it('reports hits, misses, probes, outcomes and latency', async () => {
    const { oracle, script, events } = scripted();
    script.answers.set('r.io/missing:1', { outcome: 'NotFound', status: 404 });
    await oracle.exists('r.io/app:1');
    await oracle.exists('r.io/app:1');
    await oracle.exists('r.io/missing:1');
    const stats = oracle.stats();
    assert.equal(stats.hits, 1);
    assert.equal(stats.misses, 2);
    assert.equal(stats.probes, 2);
    assert.equal(stats.outcomes.Available, 1);
    assert.equal(stats.outcomes.NotFound, 1);
    assert.equal(stats.probeLatencyMs.count, 2);
    assert.deepEqual(
      events.map((e) => e.kind),
      ['miss', 'probe', 'hit', 'miss', 'probe'],
    );
  });

  it('ignores an observer that throws', async () => {
    const { oracle } = scripted({
      observer: () => {
        throw new Error('metrics broke');
      },
    });
    assert.equal((await oracle.exists('r.io/app:1')).outcome, 'Available');
  });

  it('invalidate forgets a cached answer, and a probe running across it does not store its old answer', async () => {
    const { oracle, script } = scripted();
    script.answers.set('r.io/app:1', { outcome: 'NotFound', status: 404 });
    assert.equal((await oracle.exists('r.io/app:1')).outcome, 'NotFound');
    script.answers.delete('r.io/app:1');
    assert.equal((await oracle.exists('r.io/app:1')).outcome, 'NotFound', 'cached within the negative TTL');
    assert.equal(oracle.invalidate('r.io/app:1'), true);
    assert.equal((await oracle.exists('r.io/app:1')).outcome, 'Available', 'asked again at once');
    assert.equal(script.calls.length, 2);
    // A probe in flight when the content changes: its callers get its answer, the cache does not.
    script.answers.set('r.io/late:1', { outcome: 'NotFound', status: 404 });
    let open: () => void = () => {};
    script.gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    const running = oracle.exists('r.io/late:1');
    oracle.invalidate('r.io/late:1');
    open();
    assert.equal((await running).outcome, 'NotFound');
    script.answers.delete('r.io/late:1');
    script.gate = undefined;
    assert.equal((await oracle.exists('r.io/late:1')).outcome, 'Available');
    assert.equal(oracle.invalidate('not a reference'), false);
  });
});
