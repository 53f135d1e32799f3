// The webhook handler's failure policy, in process: a map source that has not loaded yet is pullmap's
// own failure, so the pod is admitted unchanged (Ignore) or refused (Fail), with a metric either way.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseReview } from '../../src/core/api/admission.ts';
import type { MapSource } from '../../src/decision/map-source.ts';
import { silentLogger } from '../../src/observe/log.ts';
import { Registry } from '../../src/observe/metrics.ts';
import { createPodWebhook, type FailurePolicy, probeDeadline } from '../../src/serve/webhook.ts';
import { podReview } from '../harness/pullmap.ts';

const notLoaded: MapSource = { current: () => undefined, close: async () => {} };

function handler(policy: FailurePolicy) {
  const metrics = new Registry();
  const webhook = createPodWebhook({
    source: notLoaded,
    existence: { exists: async () => ({ outcome: 'NotFound', cached: false, ageMs: 0 }) },
    namespaceLabels: () => ({}),
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
