// The mutating webhook's request handler: reads the maps in force, decides under an internal deadline,
// and fails open (admits the pod unchanged, with a warning and a metric) on any failure of its own,
// unless the operator chose failurePolicy Fail. One debug line per decision.

import { type AdmissionRequest, type AdmissionResponse, allow, deny } from '../core/api/admission.ts';
import { isProbeFailure } from '../core/facts.ts';
import type { DecisionSettings, Labels } from '../core/mapping/index.ts';
import type { PodPlan } from '../core/pod/plan.ts';
import { type Logger, LogLimiter } from '../observe/log.ts';
import type { MetricsRegistry } from '../observe/metrics.ts';
import type { MapSource, MapState } from '../sources/map-source.ts';
import type { ExistenceSource } from '../sources/resolve.ts';
import { type EncodedPlan, type PodReviewResult, reviewPod } from './admission.ts';
import { DeadlineExceeded } from './errors.ts';
import { registryOf } from './existence-metrics.ts';
import type { RefusalReason, ReviewHandler } from './http.ts';
import { PlanMemo } from './plan-memo.ts';
import { PreparedMemo } from './prepared-memo.ts';

export type FailurePolicy = 'Ignore' | 'Fail';

interface WebhookOptions {
  readonly source: MapSource;
  readonly existence: ExistenceSource;
  readonly namespaceLabels: (namespace: string) => Labels;
  /** The operator's settings (--cache-address, --exclude-namespaces), fixed for the webhook's life. */
  readonly settings: DecisionSettings;
  /** Below the webhook configuration's timeoutSeconds, so pullmap answers before the apiserver gives up. */
  readonly deadlineMs: number;
  readonly failurePolicy: FailurePolicy;
  readonly metrics: MetricsRegistry;
  readonly logger: Logger;
  readonly now: () => number;
}

type PlannedContainer = PodPlan['containers'][number];
type Decision = NonNullable<PlannedContainer['decision']>;
type Reason = Decision['reasons'][number];

/** Calls `fn` for each reason of a kept container that says a registry probe failed. */
function forEachProbeFailure(
  plan: PodPlan,
  fn: (c: PlannedContainer, decision: Decision, reason: Reason, probe: NonNullable<Reason['probe']>) => void,
): void {
  for (const c of plan.containers) {
    const decision = c.decision;
    if (decision === undefined || decision.outcome === 'Mapped') continue;
    for (const reason of decision.reasons)
      if (reason.probe !== undefined && isProbeFailure(reason.probe.outcome))
        fn(c, decision, reason, reason.probe);
  }
}

function mappedCount(plan: PodPlan): number {
  let mapped = 0;
  for (const c of plan.containers) if (c.decision?.outcome === 'Mapped') mapped++;
  return mapped;
}

/** The admissions metric's result label for a planned review. */
function reviewResult(plan: PodPlan, mapped: number): 'skipped' | 'mutated' | 'unchanged' {
  if (plan.skipped) return 'skipped';
  return mapped > 0 ? 'mutated' : 'unchanged';
}

/** The debug line of one decision: the review, the maps' version, and each container's outcome. */
function decisionFields(request: AdmissionRequest, state: MapState, plan: PodPlan) {
  return {
    uid: request.uid,
    namespace: request.namespace,
    pod: request.name || undefined,
    operation: request.operation,
    subResource: request.subResource || undefined,
    mapsVersion: state.version,
    skipped: plan.skipped,
    containers: plan.containers.map((c) => ({
      name: c.name,
      image: c.image,
      outcome: c.skipped ? 'Skipped' : c.decision?.outcome,
      to: c.decision?.outcome === 'Mapped' ? c.decision.image : undefined,
      rule: c.decision?.rule?.entryName,
      // The last reason is the conclusion (NoCandidateHasImage, CacheRouted...); the first is the match.
      reason: c.skipped ?? c.decision?.reasons.at(-1)?.code,
    })),
  };
}

/** Probes stop 20% (at most 250 ms) before the deadline, leaving time to decide and answer. */
export function probeDeadline(deadlineMs: number): number {
  return Math.max(1, deadlineMs - Math.min(250, deadlineMs * 0.2));
}

/** How often one image's probe failure against one registry is logged at warn. */
export const PROBE_WARNING_INTERVAL_MS = 60_000;

export function createPodWebhook(options: WebhookOptions): ReviewHandler {
  const { metrics, logger, now } = options;
  const admissions = metrics.counter(
    'pullmap_admissions_total',
    'Pod admission reviews by result: mutated, unchanged, skipped (opt-out, excluded, not a pod), failed_open, denied.',
    ['result'],
  );
  const rewrites = metrics.counter('pullmap_image_rewrites_total', 'Container images rewritten.');
  const failures = metrics.counter(
    'pullmap_admission_failures_total',
    'Reviews pullmap could not decide (the pod was admitted unchanged or denied, per failure policy), by reason.',
    ['reason'],
  );
  const latency = metrics.histogram('pullmap_admission_duration_seconds', 'Time to answer a pod review.');
  // Pods reuse a small set of images: what a decision works out per image is remembered per snapshot.
  const prepare = new PreparedMemo();
  metrics
    .gauge(
      'pullmap_decision_memo_images',
      'Images whose preparation the webhook remembers under the maps in force.',
    )
    .collect(() => prepare.size);
  // Pods of one workload share containers, labels and annotations: their plans are reused while the
  // maps and the existence answers they consulted stay the same.
  const memo = new PlanMemo<EncodedPlan>();
  const memoLookups = metrics.counter(
    'pullmap_plan_memo_lookups_total',
    'Pod reviews answered with a plan remembered from an identical pod (hit), or decided (miss).',
    ['result'],
  );
  memoLookups.collect(() => memo.hits, { result: 'hit' });
  memoLookups.collect(() => memo.misses, { result: 'miss' });

  // A probe that failed and kept an original image is the pull that fails next at an air-gapped site:
  // said at warn, once a minute per image and registry, with the count held back in between.
  const probeWarnings = new LogLimiter({ intervalMs: PROBE_WARNING_INTERVAL_MS, now });
  const warnKeptAfterProbeFailure = (request: AdmissionRequest, plan: PodPlan): void =>
    forEachProbeFailure(plan, (c, decision, reason, probe) => {
      const registry = registryOf(reason.candidate ?? '');
      const due = probeWarnings.take(`${c.image}\u0000${registry}`);
      if (due)
        logger.warn('registry probe failed; kept the original image', {
          image: c.image,
          registry,
          candidate: reason.candidate,
          outcome: probe.outcome,
          detail: probe.detail,
          rule: decision.rule?.entryName,
          namespace: request.namespace,
          pod: request.name || undefined,
          suppressed: due.suppressed,
        });
    });

  const fail = (
    request: Pick<AdmissionRequest, 'uid' | 'namespace'>,
    reason: string,
    message: string,
  ): AdmissionResponse => {
    failures.inc({ reason });
    logger.warn('admission failed', {
      uid: request.uid,
      namespace: request.namespace || undefined,
      reason,
      message,
    });
    if (options.failurePolicy === 'Fail') {
      admissions.inc({ result: 'denied' });
      return deny(request.uid, 503, `pullmap could not decide the images of this pod: ${message}`);
    }
    admissions.inc({ result: 'failed_open' });
    return allow(request.uid, [`pullmap: ${message}; the pod was admitted unchanged`]);
  };

  /** Counts, logs and answers a finished review. */
  const conclude = (
    request: AdmissionRequest,
    state: MapState,
    result: PodReviewResult,
  ): AdmissionResponse => {
    if (result.kind === 'ignored') {
      admissions.inc({ result: 'skipped' });
      logger.debug('review ignored', { uid: request.uid, why: result.why });
      return result.response;
    }
    const { plan } = result;
    const mapped = mappedCount(plan);
    admissions.inc({ result: reviewResult(plan, mapped) });
    rewrites.inc(undefined, mapped);
    if (mapped < plan.containers.length) warnKeptAfterProbeFailure(request, plan);
    if (logger.enabled('debug')) logger.debug('decision', decisionFields(request, state, plan));
    return result.response;
  };

  const crashed = (request: AdmissionRequest, err: unknown): AdmissionResponse => {
    if (err instanceof DeadlineExceeded) return fail(request, 'deadline', err.message);
    logger.error('admission crashed', { uid: request.uid, err });
    return fail(request, 'internal_error', 'internal error');
  };

  /** A review that needs registries: probes cut off before the hard deadline, which covers the rest. */
  const slow = async (
    request: AdmissionRequest,
    state: MapState,
    outcome: Promise<PodReviewResult>,
    remaining: () => number,
    timers: { probe?: NodeJS.Timeout },
  ): Promise<AdmissionResponse> => {
    outcome.catch(() => {}); // when the deadline wins, a late failure is already answered
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new DeadlineExceeded(options.deadlineMs)), remaining());
    });
    try {
      return conclude(request, state, await Promise.race([outcome, deadline]));
    } finally {
      clearTimeout(timer);
      clearTimeout(timers.probe);
    }
  };

  // Cached decisions are answered synchronously: no timers, no promises. Only a review that has to ask
  // a registry goes through `slow`, with the internal deadline armed.
  const handler = (request: AdmissionRequest): AdmissionResponse | Promise<AdmissionResponse> => {
    const started = now();
    const observe = () => latency.observe((now() - started) / 1000);
    try {
      const state = options.source.current();
      if (!state) {
        observe();
        return fail(request, 'not_ready', 'the maps are not loaded yet');
      }
      const remaining = () => Math.max(1, options.deadlineMs - (now() - started));
      let controller: AbortController | undefined;
      const timers: { probe?: NodeJS.Timeout } = {};
      const signal = () => {
        if (!controller) {
          controller = new AbortController();
          timers.probe = setTimeout(() => controller?.abort(), probeDeadline(remaining()));
        }
        return controller.signal;
      };
      const outcome = reviewPod(request, {
        state,
        settings: options.settings,
        existence: options.existence,
        namespaceLabels: options.namespaceLabels,
        signal,
        prepare,
        memo,
      });
      if (!(outcome instanceof Promise)) {
        observe();
        return conclude(request, state, outcome);
      }
      return slow(request, state, outcome, remaining, timers)
        .catch((err) => crashed(request, err))
        .finally(observe);
    } catch (err) {
      observe();
      return crashed(request, err);
    }
  };
  // Bodies the server refused before parsing (http.ts): the same failure policy, reason and metric.
  const refuse = (uid: string, reason: RefusalReason, message: string) =>
    fail({ uid, namespace: '' }, reason, message);
  return Object.assign(handler, { refuse });
}
