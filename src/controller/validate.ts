// The validating webhook's decision for ImageMap and ClusterImageMap writes: the candidate object is
// analysed together with the maps in its scope (its namespace's and the cluster's, replacing its own
// older version), exactly as the controller would analyse it once stored, and denied when the
// controller would reject it, with the same words. Maps that the candidate would get rejected are
// named in warnings. Pure: the HTTP server (src/serve) parses the review and writes the answer.

import { type AdmissionRequest, type AdmissionResponse, allow, deny } from '../core/api/admission.ts';
import { GROUP, KINDS } from '../core/api/v1alpha1.ts';
import { analyzeMaps, findingLines, type MapInput, type MapVerdict } from '../core/mapping/index.ts';
import { printable } from '../core/text.ts';

const rejection = (v: MapVerdict, what: string): string =>
  `${v.name} ${what} (${v.verdict}): ${findingLines(v).join('; ')}`;

/** The maps the source holds now: their inputs and the verdicts they were given. */
export interface MapsInForce {
  readonly inputs: readonly MapInput[];
  readonly verdicts: readonly MapVerdict[];
}

const namespaceOf = (o: unknown): string | undefined => {
  const ns = (o as { metadata?: { namespace?: unknown } } | null)?.metadata?.namespace;
  return typeof ns === 'string' ? ns : undefined;
};
const isClusterMap = (o: unknown): boolean => (o as { kind?: unknown } | null)?.kind === 'ClusterImageMap';

/**
 * Decides one map write. `maps` is undefined while the source has not listed the maps yet (then the
 * write is allowed: the controller checks it once it is stored).
 */
export function reviewMapAdmission(
  request: AdmissionRequest,
  maps: MapsInForce | undefined,
): AdmissionResponse {
  const kind = request.kind.kind;
  if (
    request.kind.group !== GROUP ||
    !(KINDS as readonly string[]).includes(kind) ||
    (request.operation !== 'CREATE' && request.operation !== 'UPDATE')
  )
    return allow(request.uid);
  if (maps === undefined)
    return allow(request.uid, [
      'pullmap has not loaded the maps yet; the controller checks this map once it is stored',
    ]);
  const raw = request.object;
  if (raw === null || typeof raw !== 'object') return deny(request.uid, 400, 'request.object is missing');
  // The namespace comes from the request when the object leaves it out (kubectl apply -n).
  const candidate = { ...(raw as Record<string, unknown>) };
  const metadata = { ...((candidate.metadata ?? {}) as Record<string, unknown>) };
  if (kind === 'ImageMap' && metadata.namespace === undefined && request.namespace)
    metadata.namespace = request.namespace;
  candidate.metadata = metadata;
  delete candidate.status;

  // An ImageMap is judged against its own namespace and the cluster maps; a ClusterImageMap against all.
  const scope =
    kind === 'ImageMap'
      ? maps.inputs.filter((i) => isClusterMap(i.current) || namespaceOf(i.current) === metadata.namespace)
      : maps.inputs;
  const others = scope.filter(
    (i) =>
      !(
        isClusterMap(i.current) === (kind === 'ClusterImageMap') &&
        namespaceOf(i.current) === (kind === 'ImageMap' ? metadata.namespace : undefined) &&
        (i.current as { metadata?: { name?: unknown } }).metadata?.name === metadata.name
      ),
  );
  const analysis = analyzeMaps([...others, { current: candidate }]);
  const verdict = analysis.verdicts[analysis.verdicts.length - 1]!;
  if (verdict.verdict !== 'Accepted')
    return {
      uid: request.uid,
      allowed: false,
      status: { code: 422, reason: verdict.verdict, message: printable(rejection(verdict, 'is rejected')) },
    };
  const acceptedNow = new Set(maps.verdicts.filter((v) => v.verdict === 'Accepted').map((v) => v.name));
  const pushedOut = analysis.verdicts
    .filter((v) => v.verdict !== 'Accepted' && v !== verdict && acceptedNow.has(v.name))
    .map((v) => `pullmap: ${rejection(v, 'would be rejected')}`);
  return allow(request.uid, pushedOut);
}
