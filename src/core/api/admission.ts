// AdmissionReview v1 in and out: checking the envelope the apiserver sent, and writing the response
// envelope. Pure; both webhooks (pods in serve/, map objects in controller/) use it.
import { isObject, type Json } from '../json.ts';

import { printable } from '../text.ts';

const ADMISSION_API_VERSION = 'admission.k8s.io/v1';

interface GroupVersionKind {
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

type ParsedReview = { ok: true; request: AdmissionRequest } | { ok: false; message: string };

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

/**
 * At most MAX_WARNINGS warnings of at most MAX_WARNING_CHARS each, escaped: kubectl prints them to the
 * user's terminal, and they echo image strings nobody validated.
 */
export function clip(warnings: readonly string[]): string[] {
  const out = warnings.slice(0, MAX_WARNINGS).map((raw) => {
    const w = printable(raw);
    return w.length > MAX_WARNING_CHARS ? `${w.slice(0, MAX_WARNING_CHARS - 1)}…` : w;
  });
  if (warnings.length > MAX_WARNINGS)
    out.push(`pullmap: ${warnings.length - MAX_WARNINGS} more warnings not shown`);
  return out;
}

export function allow(uid: string, warnings: readonly string[] = []): AdmissionResponse {
  return warnings.length ? { uid, allowed: true, warnings: clip(warnings) } : { uid, allowed: true };
}

export function deny(uid: string, code: number, message: string, warnings: readonly string[] = []) {
  const response: AdmissionResponse = { uid, allowed: false, status: { code, message: printable(message) } };
  return warnings.length ? { ...response, warnings: clip(warnings) } : response;
}
