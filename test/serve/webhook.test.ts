// The webhook handler's failure policy, in process: a map source that has not loaded yet is pullmap's
// own failure, so the pod is admitted unchanged (Ignore) or refused (Fail), with a metric either way.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseReview } from '../../src/core/api/admission.ts';
import type { ProbeOutcome } from '../../src/core/facts.ts';
import { DEFAULT_DECISION_SETTINGS, loadMapsFromText } from '../../src/core/mapping/index.ts';
import { createLogger, LogLimiter, silentLogger } from '../../src/observe/log.ts';
import { MetricsRegistry } from '../../src/observe/metrics.ts';
import { existenceMetrics, MAX_REGISTRIES } from '../../src/serve/existence-metrics.ts';
import {
  createPodWebhook,
  type FailurePolicy,
  PROBE_WARNING_INTERVAL_MS,
  probeDeadline,
} from '../../src/serve/webhook.ts';
import type { MapSource } from '../../src/sources/map-source.ts';
import { podReview } from '../harness/pullmap.ts';

const notLoaded: MapSource = { current: () => undefined, close: async () => {} };

function handler(policy: FailurePolicy) {
  const metrics = new MetricsRegistry();
  const webhook = createPodWebhook({
    source: notLoaded,
    existence: { exists: async () => ({ outcome: 'NotFound', cached: false, ageMs: 0 }) },
    namespaceLabels: () => ({}),
    settings: DEFAULT_DECISION_SETTINGS,
    deadlineMs: 1000,
    failurePolicy: policy,
    metrics,
    logger: silentLogger,
    now: () => 0,
  });
  return { webhook, metrics };
}

function request() {
  const parsed = parseReview(podReview({ app: 'nginx:1.27' }, { uid: 'u1' }));
  assert.ok(parsed.ok);
  return parsed.request;
}

describe('failure policy', () => {
  it('Ignore admits the pod unchanged with a warning and counts it', async () => {
    const { webhook, metrics } = handler('Ignore');
    const response = await webhook(request());
    assert.equal(response.uid, 'u1');
    assert.equal(response.allowed, true);
    assert.equal(response.patch, undefined);
    assert.match(response.warnings?.[0] ?? '', /maps are not loaded yet; the pod was admitted unchanged/);
    assert.match(metrics.render(), /pullmap_admissions_total\{result="failed_open"\} 1/);
    assert.match(metrics.render(), /pullmap_admission_failures_total\{reason="not_ready"\} 1/);
  });

  it('Fail refuses the pod with a 503 status naming the cause', async () => {
    const { webhook, metrics } = handler('Fail');
    const response = await webhook(request());
    assert.equal(response.allowed, false);
    assert.equal(response.status?.code, 503);
    assert.match(response.status?.message ?? '', /maps are not loaded yet/);
    assert.match(metrics.render(), /pullmap_admissions_total\{result="denied"\} 1/);
  });

  it('cuts probes off before the hard deadline, leaving time to answer', () => {
    assert.equal(probeDeadline(3000), 2750);
    assert.equal(probeDeadline(500), 400);
    assert.ok(probeDeadline(1) >= 1);
  });
});

/** A webhook on one IfExists map whose candidate registry answers `outcome`; logs collected as objects. */
function probing(outcome: ProbeOutcome, level: 'debug' | 'info' = 'info') {
  const loaded = loadMapsFromText(
    [
      'apiVersion: pullmap.dev/v1alpha1',
      'kind: ClusterImageMap',
      'metadata: { name: airgap }',
      'spec:',
      '  mappings:',
      '    - { from: docker.io/, to: mirror.local/hub/, when: IfExists }',
    ].join('\n'),
    'test.yaml',
  );
  assert.deepEqual(loaded.errors, []);
  const state = { snapshot: loaded.snapshot, analysis: loaded.analysis, version: 1 };
  const lines: Record<string, any>[] = [];
  const out = { write: (line: string) => lines.push(JSON.parse(line)) } as unknown as NodeJS.WritableStream;
  let clock = 0;
  const webhook = createPodWebhook({
    source: { current: () => state, close: async () => {} },
    existence: { exists: async () => ({ outcome, cached: false, ageMs: 0, detail: 'test' }) },
    namespaceLabels: () => ({}),
    settings: DEFAULT_DECISION_SETTINGS,
    deadlineMs: 1000,
    failurePolicy: 'Ignore',
    metrics: new MetricsRegistry(),
    logger: createLogger({ level, out: out as never }),
    now: () => clock,
  });
  return { webhook, lines, advance: (ms: number) => (clock += ms) };
}

const review = (image: string) => {
  const parsed = parseReview(podReview({ app: image }));
  assert.ok(parsed.ok);
  return parsed.request;
};

describe('signals for the on-call engineer', () => {
  it('a failed probe that kept the original image is a warning, once a minute per image and registry', async () => {
    const { webhook, lines, advance } = probing('Unreachable');
    for (let i = 0; i < 3; i++) await webhook(review('nginx:1.27'));
    await webhook(review('redis:7'));
    const warned = () => lines.filter((l) => l.msg === 'registry probe failed; kept the original image');
    assert.equal(warned().length, 2, 'one line for nginx (two held back), one for redis');
    const first = warned()[0]!;
    assert.equal(first.level, 'warn');
    assert.equal(first.image, 'nginx:1.27');
    assert.equal(first.registry, 'mirror.local');
    assert.equal(first.candidate, 'mirror.local/hub/library/nginx:1.27');
    assert.equal(first.outcome, 'Unreachable');
    assert.equal(first.rule, 'ClusterImageMap/airgap spec.mappings[0]');
    assert.equal(first.suppressed, 0);
    advance(PROBE_WARNING_INTERVAL_MS);
    await webhook(review('nginx:1.27'));
    assert.equal(warned().length, 3);
    assert.equal(warned()[2]!.suppressed, 2, 'the next line counts what was held back');
  });

  it('a registry that answers NotFound is not a failure: no warning', async () => {
    const { webhook, lines } = probing('NotFound');
    await webhook(review('nginx:1.27'));
    assert.equal(lines.filter((l) => l.level === 'warn').length, 0);
  });

  it('the debug decision line gives the conclusion (NoCandidateHasImage), not the match', async () => {
    const { webhook, lines } = probing('NotFound', 'debug');
    await webhook(review('nginx:1.27'));
    const decision = lines.find((l) => l.msg === 'decision')!;
    assert.equal(decision.containers[0].outcome, 'Unchanged');
    assert.equal(decision.containers[0].reason, 'NoCandidateHasImage');
  });

  it('LogLimiter forgets the oldest key past its bound', () => {
    let now = 0;
    const limiter = new LogLimiter({ intervalMs: 1000, now: () => now, maxKeys: 2 });
    assert.deepEqual(limiter.take('a'), { suppressed: 0 });
    assert.equal(limiter.take('a'), undefined);
    limiter.take('b');
    limiter.take('c'); // forgets a
    assert.deepEqual(limiter.take('a'), { suppressed: 0 }, 'a forgotten key logs at once');
    now = 1000;
    assert.deepEqual(limiter.take('c'), { suppressed: 0 });
  });
});

describe('probe metrics by registry', () => {
  it('label the first MAX_REGISTRIES registries by host and the rest "other", so a pod cannot grow the series', () => {
    const metrics = new MetricsRegistry();
    const observe = existenceMetrics(metrics);
    for (let i = 0; i < MAX_REGISTRIES + 8; i++)
      observe({ kind: 'probe', candidate: `r${i}.example/app:1`, outcome: 'Unreachable', latencyMs: 5 });
    observe({ kind: 'probe', candidate: 'r0.example/other:2', outcome: 'Available', latencyMs: 1 });
    observe({ kind: 'deadline', candidate: 'r1.example/app:1' });
    const text = metrics.render();
    const hosts = new Set(
      [...text.matchAll(/pullmap_existence_probes_total\{registry="([^"]+)"/g)].map((m) => m[1]),
    );
    assert.equal(hosts.size, MAX_REGISTRIES + 1);
    assert.ok(hosts.has('other'));
    assert.match(text, /pullmap_existence_probes_total\{registry="other",outcome="Unreachable"\} 8/);
    assert.match(text, /pullmap_existence_probes_total\{registry="r0\.example",outcome="Available"\} 1/);
    assert.match(text, /pullmap_existence_probe_duration_seconds_count\{registry="r0\.example"\} 2/);
    assert.match(text, /pullmap_existence_deadline_exceeded_total\{registry="r1\.example"\} 1/);
  });
});
