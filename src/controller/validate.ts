// The validating webhook's decision for ImageMap and ClusterImageMap writes: the candidate object is
// analysed together with every map the source holds (replacing its own older version), exactly as the
// controller would analyse it once stored, and denied when the controller would reject it, with the same
// words. Maps that the candidate would get rejected are named in warnings. Pure: the HTTP server (src/serve)
// parses the body and writes the answer.

import { GROUP, KINDS } from '../core/api/v1alpha1.ts';
import { analyzeMaps, findingLines, type MapInput } from '../core/mapping/index.ts';

export interface AdmissionReviewAnswer {
  apiVersion: 'admission.k8s.io/v1';
  kind: 'AdmissionReview';
  response: {
    uid: string;
    allowed: boolean;
    status?: { code: number; reason: string; message: string };
    warnings?: string[];
  };
}

export type MapReviewResult =
  | { readonly ok: true; readonly answer: AdmissionReviewAnswer }
  /** Not an AdmissionReview: the server answers 400 with this message. */
  | { readonly ok: false; readonly message: string };

interface ReviewRequest {
  uid?: unknown;
  kind?: { group?: unknown; kind?: unknown };
  operation?: unknown;
  namespace?: unknown;
  object?: unknown;
}

const MAX_WARNINGS = 10;

const identity = (o: unknown): string => {
  const m = (o as { kind?: unknown; metadata?: { namespace?: unknown; name?: unknown } } | null) ?? {};
  return `${String(m.kind)}/${String(m.metadata?.namespace ?? '')}/${String(m.metadata?.name)}`;
};

/**
 * Decides one AdmissionReview. `inputs` are the source's current maps, undefined while it has not
 * listed them yet (then the write is allowed: the controller checks it once it is stored).
 */
export function reviewMapAdmission(
  review: unknown,
  inputs: readonly MapInput[] | undefined,
): MapReviewResult {
  const request = (review as { request?: ReviewRequest } | null)?.request;
  if (
    review === null ||
    typeof review !== 'object' ||
    (review as { kind?: unknown }).kind !== 'AdmissionReview' ||
    !request ||
    typeof request.uid !== 'string'
  ) {
    return { ok: false, message: 'expected an admission.k8s.io/v1 AdmissionReview with request.uid' };
  }
  const answer = (
    allowed: boolean,
    extra: Partial<AdmissionReviewAnswer['response']> = {},
  ): MapReviewResult => ({
    ok: true,
    answer: {
      apiVersion: 'admission.k8s.io/v1',
      kind: 'AdmissionReview',
      response: { uid: request.uid as string, allowed, ...extra },
    },
  });
  const kind = request.kind?.kind;
  if (
    request.kind?.group !== GROUP ||
    !(KINDS as readonly unknown[]).includes(kind) ||
    (request.operation !== 'CREATE' && request.operation !== 'UPDATE')
  ) {
    return answer(true);
  }
  if (inputs === undefined) {
    return answer(true, {
      warnings: ['pullmap has not loaded the maps yet; the controller checks this map once it is stored'],
    });
  }
  const raw = request.object;
  if (raw === null || typeof raw !== 'object') {
    return answer(false, {
      status: { code: 400, reason: 'BadRequest', message: 'request.object is missing' },
    });
  }
  // The namespace comes from the request when the object leaves it out (kubectl apply -n).
  const candidate = { ...(raw as Record<string, unknown>) };
  const metadata = { ...((candidate.metadata ?? {}) as Record<string, unknown>) };
  if (kind === 'ImageMap' && metadata.namespace === undefined && typeof request.namespace === 'string')
    metadata.namespace = request.namespace;
  candidate.metadata = metadata;
  delete candidate.status;

  const id = identity(candidate);
  const others = inputs.filter((input) => identity(input.current) !== id);
  const before = new Map(analyzeMaps(others).verdicts.map((v) => [v.name, v]));
  const analysis = analyzeMaps([...others, { current: candidate }]);
  const verdict = analysis.verdicts[analysis.verdicts.length - 1]!;
  if (verdict.verdict !== 'Accepted') {
    return answer(false, {
      status: {
        code: 422,
        reason: verdict.verdict === 'Conflict' ? 'Conflict' : 'Invalid',
        message: `${verdict.name} is rejected (${verdict.verdict}): ${findingLines(verdict).join('; ')}`,
      },
    });
  }
  const pushedOut = analysis.verdicts
    .filter((v) => v.verdict !== 'Accepted' && before.get(v.name)?.verdict === 'Accepted')
    .map((v) => `${v.name} would be rejected (${v.verdict}): ${findingLines(v).join('; ')}`);
  const warnings =
    pushedOut.length > MAX_WARNINGS
      ? [...pushedOut.slice(0, MAX_WARNINGS), `and ${pushedOut.length - MAX_WARNINGS} more maps`]
      : pushedOut;
  return answer(true, warnings.length > 0 ? { warnings } : {});
}
