// AdmissionReview v1 in and out: checking what the apiserver sent, and turning a pod plan into the
// response. The decision itself is the core's planPod, through the same probe loop the CLI uses, so
// `pullmap explain` and the webhook cannot disagree.

import { type ExistenceFacts, isProbeFailure } from '../core/facts.ts';
import type { Labels } from '../core/mapping/selector.ts';
import { type PodPlan, planInputsKey, planPod, podImages } from '../core/pod/plan.ts';
import type { MapState } from '../decision/map-source.ts';
import { cachedFacts, decideFromCache, decideWithProbes, type ExistenceSource } from '../decision/resolve.ts';
import type { PlanMemo } from './plan-memo.ts';

export const ADMISSION_API_VERSION = 'admission.k8s.io/v1';

export interface GroupVersionKind {
  readonly group: string;
  readonly version: string;
  readonly kind: string;
}

/** The fields of an AdmissionRequest pullmap reads; everything else is ignored. */
export interface AdmissionRequest {
  readonly uid: string;
  readonly kind: GroupVersionKind;
  readonly resource: { readonly group: string; readonly version: string; readonly resource: string };
  readonly subResource: string;
  readonly operation: string;
  readonly namespace: string;
  readonly name: string;
  readonly object: unknown;
  readonly oldObject: unknown;
  readonly dryRun: boolean;
}

export interface AdmissionResponse {
  readonly uid: string;
  readonly allowed: boolean;
  readonly patchType?: 'JSONPatch';
  readonly patch?: string;
  readonly warnings?: readonly string[];
  readonly status?: { readonly code: number; readonly reason?: string; readonly message: string };
}

export type ParsedReview = { ok: true; request: AdmissionRequest } | { ok: false; message: string };

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => v !== null && typeof v === 'object' && !Array.isArray(v);
const text = (v: unknown): string => (typeof v === 'string' ? v : '');

/** Checks the envelope. Messages name the field and what the apiserver should have sent. */
export function parseReview(body: unknown): ParsedReview {
  if (!isObject(body)) return { ok: false, message: 'the body must be a JSON object (an AdmissionReview)' };
  if (body.kind !== 'AdmissionReview')
    return { ok: false, message: `kind must be "AdmissionReview", not ${JSON.stringify(body.kind ?? null)}` };
  if (body.apiVersion !== ADMISSION_API_VERSION)
    return {
      ok: false,
      message: `apiVersion ${JSON.stringify(body.apiVersion ?? null)} is not supported; set admissionReviewVersions: ["v1"] in the webhook configuration`,
    };
  const r = body.request;
  if (!isObject(r))
    return { ok: false, message: 'request is missing; an AdmissionReview to a webhook carries one' };
  if (typeof r.uid !== 'string' || r.uid.length === 0 || r.uid.length > 256)
    return { ok: false, message: 'request.uid must be a non-empty string of at most 256 characters' };
  if (!isObject(r.kind) || typeof r.kind.kind !== 'string')
    return { ok: false, message: 'request.kind must be an object with group, version and kind' };
  if (typeof r.operation !== 'string') return { ok: false, message: 'request.operation must be a string' };
  const resource = isObject(r.resource) ? r.resource : {};
  return {
    ok: true,
    request: {
      uid: r.uid,
      kind: { group: text(r.kind.group), version: text(r.kind.version), kind: r.kind.kind },
      resource: {
        group: text(resource.group),
        version: text(resource.version),
        resource: text(resource.resource),
      },
      subResource: text(r.subResource),
      operation: r.operation,
      namespace: text(r.namespace),
      name: text(r.name),
      object: r.object,
      oldObject: r.oldObject,
      dryRun: r.dryRun === true,
    },
  };
}

export function reviewEnvelope(response: AdmissionResponse): Json {
  return { apiVersion: ADMISSION_API_VERSION, kind: 'AdmissionReview', response };
}

/**
 * `reviewEnvelope(response)` as JSON text, written field by field: the patch is base64 (only
 * A–Z a–z 0–9 + / =), which JSON carries as it is, so the largest field is copied rather than scanned.
 */
export function reviewJson(response: AdmissionResponse): string {
  let out = `{"apiVersion":"${ADMISSION_API_VERSION}","kind":"AdmissionReview","response":{"uid":${JSON.stringify(response.uid)},"allowed":${response.allowed}`;
  if (response.patchType !== undefined) out += `,"patchType":"${response.patchType}"`;
  if (response.patch !== undefined) out += `,"patch":"${response.patch}"`;
  if (response.warnings !== undefined) out += `,"warnings":${JSON.stringify(response.warnings)}`;
  if (response.status !== undefined) out += `,"status":${JSON.stringify(response.status)}`;
  return `${out}}}`;
}

// The apiserver shows warnings to kubectl users; keep them few and short.
const MAX_WARNINGS = 8;
const MAX_WARNING_CHARS = 250;

function clip(warnings: readonly string[]): string[] {
  const out = warnings
    .slice(0, MAX_WARNINGS)
    .map((w) => (w.length > MAX_WARNING_CHARS ? `${w.slice(0, MAX_WARNING_CHARS - 1)}…` : w));
  if (warnings.length > MAX_WARNINGS)
    out.push(`pullmap: ${warnings.length - MAX_WARNINGS} more warnings not shown`);
  return out;
}

export function allow(uid: string, warnings: readonly string[] = []): AdmissionResponse {
  return warnings.length ? { uid, allowed: true, warnings: clip(warnings) } : { uid, allowed: true };
}

export function deny(uid: string, code: number, message: string, warnings: readonly string[] = []) {
  const response: AdmissionResponse = { uid, allowed: false, status: { code, message } };
  return warnings.length ? { ...response, warnings: clip(warnings) } : response;
}

/** What one pod admission concluded; the server turns it into a response, metrics and a log line. */
export type PodReviewResult =
  | { readonly kind: 'ignored'; readonly why: string; readonly response: AdmissionResponse }
  | { readonly kind: 'planned'; readonly plan: PodPlan; readonly response: AdmissionResponse };

export interface PodReviewDeps {
  readonly state: MapState;
  readonly existence: ExistenceSource;
  readonly namespaceLabels: (namespace: string) => Labels;
  /**
   * Called only when a registry must be asked: a signal that aborts when the internal deadline passes
   * (probes still pending then count as Timeout).
   */
  readonly signal: () => AbortSignal;
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
        `pullmap: container ${c.name}: could not ask ${reason.candidate ?? 'the registry'} (${reason.probe.outcome}); kept ${c.image}`,
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
export function reviewPod(
  request: AdmissionRequest,
  deps: PodReviewDeps,
): PodReviewResult | Promise<PodReviewResult> {
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
  const snapshot = deps.state.snapshot;
  const object = request.object;
  const decide = (facts: ExistenceFacts) => planPod(snapshot, object, ctx, facts);
  const key = deps.memo && planInputsKey(object, ctx);
  if (deps.memo && key !== undefined) {
    const known = deps.memo.get(snapshot, key, deps.existence);
    if (known) return planned(uid, known.plan, known.derived);
    const fresh = deps.memo.plan(snapshot, key, cachedFacts(deps.existence), decide, encodePlan);
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
