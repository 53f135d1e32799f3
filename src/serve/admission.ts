// A pod's AdmissionReview: turning a pod plan into the response (the envelope is core/api/admission.ts).
// The decision itself is the core's planPod, through the same probe loop the CLI uses, so
// `pullmap explain` and the webhook cannot disagree.

import { type AdmissionRequest, type AdmissionResponse, allow, clip } from '../core/api/admission.ts';
import { type ExistenceFacts, isProbeFailure } from '../core/facts.ts';
import { isObject } from '../core/json.ts';
import type { DecisionSettings, Labels, Preparation } from '../core/mapping/index.ts';
import { describeImage, type PodPlan, planInputsKey, planPod, podImages } from '../core/pod/plan.ts';
import type { MapState } from '../sources/map-source.ts';
import { cachedFacts, decideFromCache, decideWithProbes, type ExistenceSource } from '../sources/resolve.ts';
import type { PlanMemo } from './plan-memo.ts';

const text = (v: unknown): string => (typeof v === 'string' ? v : '');

/** What one pod admission concluded; the server turns it into a response, metrics and a log line. */
export type PodReviewResult =
  | { readonly kind: 'ignored'; readonly why: string; readonly response: AdmissionResponse }
  | { readonly kind: 'planned'; readonly plan: PodPlan; readonly response: AdmissionResponse };

interface PodReviewDeps {
  readonly state: MapState;
  readonly settings: DecisionSettings;
  readonly existence: ExistenceSource;
  readonly namespaceLabels: (namespace: string) => Labels;
  /**
   * Called only when a registry must be asked: a signal that aborts when the internal deadline passes
   * (probes still pending then count as Timeout).
   */
  readonly signal: () => AbortSignal;
  /** What decisions work out per image, remembered across reviews (the webhook's PreparedMemo). */
  readonly prepare?: Preparation | undefined;
  /** Whole plans remembered across reviews (the webhook keeps one); absent: every pod is decided afresh. */
  readonly memo?: PlanMemo<EncodedPlan> | undefined;
}

const POD_OPERATIONS = new Set(['CREATE', 'UPDATE']);

/** Warnings for containers whose registry could not be asked (the image was kept). */
function probeWarnings(plan: PodPlan): readonly string[] {
  let out: string[] | undefined;
  for (const c of plan.containers) {
    const decision = c.decision;
    if (decision === undefined || decision.outcome === 'Mapped') continue;
    for (const reason of decision.reasons) {
      if (reason.probe === undefined || !isProbeFailure(reason.probe.outcome)) continue;
      out ??= [];
      out.push(
        `pullmap: ${describeImage(c)}: could not ask ${reason.candidate ?? 'the registry'} (${reason.probe.outcome}); kept ${c.image}`,
      );
      break;
    }
  }
  return out ?? NONE;
}

const NONE: readonly string[] = [];

/**
 * Mutates a Pod (CREATE, UPDATE, or the ephemeralcontainers subresource). Requests for anything else
 * are allowed unchanged: the webhook's rules decide what is sent, and a mis-scoped rule must not break
 * the cluster. Synchronous when every existence answer it needs is cached (the common case); a
 * promise when a registry has to be asked.
 */
/** The answer to a review that is not about a pod's images (the webhook's rules sent more), if it is not. */
function ignored(request: AdmissionRequest): PodReviewResult | undefined {
  const { uid } = request;
  const isPod =
    request.kind.group === '' && request.kind.kind === 'Pod' && request.resource.resource === 'pods';
  if (!isPod) {
    const why = `pullmap only changes Pods, not ${request.kind.kind}; check the webhook's rules`;
    return { kind: 'ignored', why, response: allow(uid, [`pullmap: ${why}`]) };
  }
  if (request.subResource !== '' && request.subResource !== 'ephemeralcontainers')
    return { kind: 'ignored', why: `subresource ${request.subResource}`, response: allow(uid) };
  if (!POD_OPERATIONS.has(request.operation))
    return { kind: 'ignored', why: `operation ${request.operation}`, response: allow(uid) };
  return undefined;
}

export function reviewPod(
  request: AdmissionRequest,
  deps: PodReviewDeps,
): PodReviewResult | Promise<PodReviewResult> {
  const { uid } = request;
  const skip = ignored(request);
  if (skip !== undefined) return skip;
  if (!isObject(request.object))
    return {
      kind: 'ignored',
      why: 'no object',
      response: allow(uid, ['pullmap: the review carries no Pod object; the pod was admitted unchanged']),
    };

  const namespace =
    request.namespace || text(isObject(request.object.metadata) ? request.object.metadata.namespace : '');
  const ctx = {
    namespace,
    namespaceLabels: deps.namespaceLabels(namespace),
    previousImages: request.operation === 'UPDATE' ? podImages(request.oldObject) : undefined,
  };
  const { snapshot } = deps.state;
  const { settings } = deps;
  const object = request.object;
  const decide = (facts: ExistenceFacts) => planPod(snapshot, settings, object, ctx, facts, deps.prepare);
  const key = deps.memo && planInputsKey(object, ctx);
  if (deps.memo && key !== undefined) {
    const known = deps.memo.get(snapshot, settings, key, deps.existence);
    if (known) return planned(uid, known.plan, known.derived);
    const fresh = deps.memo.plan(snapshot, settings, key, cachedFacts(deps.existence), decide, encodePlan);
    if (fresh.plan.pendingProbes.length === 0) return planned(uid, fresh.plan, fresh.derived);
  } else {
    const cached = decideFromCache(decide, deps.existence);
    if (cached.pendingProbes.length === 0) return planned(uid, cached, encodePlan(cached));
  }
  return decideWithProbes(decide, deps.existence, deps.signal).then((plan) =>
    planned(uid, plan, encodePlan(plan)),
  );
}

/** What a response needs from a plan, whoever the pod: the encoded patch and the warnings. */
export interface EncodedPlan {
  readonly patch: string | undefined;
  readonly warnings: readonly string[];
}

function encodePlan(plan: PodPlan): EncodedPlan {
  const failed = probeWarnings(plan);
  return {
    patch: plan.patch.length === 0 ? undefined : Buffer.from(JSON.stringify(plan.patch)).toString('base64'),
    warnings: failed.length === 0 ? plan.warnings : [...plan.warnings, ...failed],
  };
}

function planned(uid: string, plan: PodPlan, { patch, warnings }: EncodedPlan): PodReviewResult {
  if (patch === undefined) return { kind: 'planned', plan, response: allow(uid, warnings) };
  const response: AdmissionResponse =
    warnings.length === 0
      ? { uid, allowed: true, patchType: 'JSONPatch', patch }
      : { uid, allowed: true, patchType: 'JSONPatch', patch, warnings: clip(warnings) };
  return { kind: 'planned', plan, response };
}
