// Planning the admission response for one Pod: a decision per container image, and the RFC 6902
// JSON Patch that applies them and records the originals. Re-admission never maps an image twice.

import { type ExistenceFacts, mergeProbeRequests, type ProbeRequest } from '../facts.ts';
import { isObject } from '../json.ts';
import {
  type DecisionContext,
  type DecisionSettings,
  decideImage,
  type ImageDecision,
  type Labels,
  type MapSnapshot,
  type Preparation,
  prepareFresh,
} from '../mapping/index.ts';
import { CONTAINER_LISTS, type ContainerImage, containerImages } from './locate.ts';
import { addPullSecrets } from './pull-secrets.ts';

export const ANNOTATION_ORIGINAL_IMAGES = 'pullmap.dev/original-images';
export const ANNOTATION_MAPPED_BY = 'pullmap.dev/mapped-by';
const OPT_OUT = 'pullmap.dev/ignore';

type JsonPatchOp = { op: 'add' | 'replace'; path: string; value: unknown };

interface ContainerPlan extends ContainerImage {
  /** Undefined when the container was skipped (see `skipped`). */
  readonly decision: ImageDecision | undefined;
  readonly skipped: string | undefined;
}

export interface PodPlan {
  /** Why the whole pod is left alone (opt-out, excluded namespace), if it is. */
  readonly skipped: string | undefined;
  readonly containers: readonly ContainerPlan[];
  readonly patch: readonly JsonPatchOp[];
  /** One request per candidate; two maps asking about one candidate get the shorter TTLs. */
  readonly pendingProbes: readonly ProbeRequest[];
  /** Short notes for the AdmissionReview `warnings` (invalid images and the like). */
  readonly warnings: readonly string[];
}

export interface PodContext {
  readonly namespace: string;
  readonly namespaceLabels: Labels;
  /**
   * On UPDATE, the container images of the stored pod (name → image). A container whose image the
   * update changes is decided afresh even when the pod records an earlier original for it.
   */
  readonly previousImages?: ReadonlyMap<string, string> | undefined;
}

/** Container name → image, for PodContext.previousImages (from an AdmissionRequest's oldObject). */
export function podImages(pod: unknown): Map<string, string> {
  const out = new Map<string, string>();
  if (isObject(pod) && isObject(pod.spec))
    for (const c of containerImages(pod.spec)) out.set(c.name, c.image);
  return out;
}

const escapePointer = (s: string): string => s.replaceAll('~', '~0').replaceAll('/', '~1');

function stringRecord(value: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (!isObject(value)) return out;
  for (const k in value) {
    const v = value[k];
    if (typeof v === 'string' && Object.hasOwn(value, k)) out[k] = v;
  }
  return out;
}

/**
 * Reads a JSON-object annotation written by an earlier admission (ANNOTATION_ORIGINAL_IMAGES,
 * ANNOTATION_MAPPED_BY) from a pod's metadata.annotations; a mangled or missing one counts as empty.
 * The one reader of the format planPod writes: the fill loop and explain --pod use it too. Read its
 * entries with `recordedFor`.
 */
export function jsonAnnotation(annotations: unknown, key: string): Record<string, string> {
  const text = isObject(annotations) ? annotations[key] : undefined;
  if (typeof text !== 'string') return {};
  try {
    return stringRecord(JSON.parse(text));
  } catch {
    return {};
  }
}

/**
 * A container's entry in such a record. Own keys only: "constructor" is a valid container name, and
 * Object.prototype must not answer for it. (A prototype-less record would do the same, at about 15%
 * of the decision bench's rate: docs/decisions.md.)
 */
export function recordedFor(record: Record<string, string>, container: string): string | undefined {
  return Object.hasOwn(record, container) ? record[container] : undefined;
}

/**
 * Every input planPod reads besides the snapshot, the settings and the existence answers, as one string:
 * two pods with the same key get the same plan under the same maps, settings and answers. Undefined for what is not worth
 * remembering (an UPDATE, which compares with the stored pod, or an object that is not a pod).
 */
export function planInputsKey(pod: unknown, ctx: PodContext): string | undefined {
  if (ctx.previousImages !== undefined || !isObject(pod) || !isObject(pod.spec)) return undefined;
  const metadata = isObject(pod.metadata) ? pod.metadata : {};
  const annotations = metadata.annotations;
  const parts: unknown[] = [
    ctx.namespace,
    ctx.namespaceLabels,
    metadata.labels ?? null,
    isObject(annotations)
      ? [annotations[OPT_OUT], annotations[ANNOTATION_ORIGINAL_IMAGES], annotations[ANNOTATION_MAPPED_BY]]
      : null,
  ];
  for (const list of CONTAINER_LISTS) {
    const containers = pod.spec[list];
    if (!Array.isArray(containers)) {
      parts.push(null);
      continue;
    }
    // Every element keeps its place, so the indexes in the patch are part of the key.
    parts.push(containers.map((c: unknown) => (isObject(c) ? [c.name, c.image, c.imagePullPolicy] : 0)));
  }
  const volumes = pod.spec.volumes;
  parts.push(pod.spec.imagePullSecrets ?? null);
  parts.push(
    Array.isArray(volumes)
      ? volumes.map((v: unknown) =>
          isObject(v) && isObject(v.image) ? [v.name, v.image.reference, v.image.pullPolicy] : 0,
        )
      : null,
  );
  return JSON.stringify(parts);
}

/**
 * The plan for one pod under the maps of `snapshot` and the operator's `settings` (excluded namespaces,
 * the cache's address): what the webhook answers for it.
 */
export function planPod(
  snapshot: MapSnapshot,
  settings: DecisionSettings,
  pod: unknown,
  ctx: PodContext,
  facts: ExistenceFacts,
  prepare: Preparation = prepareFresh,
): PodPlan {
  const empty = (skipped: string, warnings: string[] = []): PodPlan => ({
    skipped,
    containers: [],
    patch: [],
    pendingProbes: [],
    warnings,
  });
  if (!isObject(pod) || !isObject(pod.spec))
    return empty('the object is not a Pod with a spec', [
      'pullmap: the object is not a Pod with a spec; left unchanged',
    ]);
  const metadata = isObject(pod.metadata) ? pod.metadata : {};
  const labels = stringRecord(metadata.labels);
  const annotations = stringRecord(metadata.annotations);
  const skipped = podSkipReason(settings, ctx.namespace, labels, annotations);
  if (skipped !== undefined) return empty(skipped);

  const state: PlanState = {
    originals: jsonAnnotation(annotations, ANNOTATION_ORIGINAL_IMAGES),
    mappedBy: jsonAnnotation(annotations, ANNOTATION_MAPPED_BY),
    containers: [],
    patch: [],
    pending: [],
    warnings: [],
    pullSecrets: new Set<string>(),
    recorded: false,
  };
  for (const c of containerImages(pod.spec)) {
    const original = earlierAnswer(c, ctx, state);
    if (original !== undefined) {
      state.containers.push(containerPlan(c, undefined, `already mapped from ${original}`));
      continue;
    }
    const dctx: DecisionContext = {
      namespace: ctx.namespace,
      namespaceLabels: ctx.namespaceLabels,
      podLabels: labels,
      pullPolicy: c.pullPolicy,
    };
    addDecision(c, decideImage(snapshot, settings, c.image, dctx, facts, prepare), state);
  }
  const { originals, mappedBy, containers, patch, pending, warnings } = state;
  // imagePullSecrets cannot change after creation (an UPDATE that adds one is refused), so only a
  // CREATE gets them; images an update maps keep the pod's existing secrets.
  if (ctx.previousImages === undefined)
    for (const op of addPullSecrets(pod.spec, state.pullSecrets)) patch.push(op);

  if (state.recorded) patch.push(...recordOps(isObject(metadata.annotations), originals, mappedBy));
  return {
    skipped: undefined,
    containers,
    patch,
    pendingProbes: pending.length === 0 ? pending : mergeProbeRequests(pending),
    warnings,
  };
}

/** What planPod builds up, container by container. */
interface PlanState {
  readonly originals: Record<string, string>;
  readonly mappedBy: Record<string, string>;
  readonly containers: ContainerPlan[];
  readonly patch: JsonPatchOp[];
  readonly pending: ProbeRequest[];
  readonly warnings: string[];
  readonly pullSecrets: Set<string>;
  /** Whether the annotations must be written. */
  recorded: boolean;
}

/**
 * The original image when the container's image is pullmap's own earlier answer (reinvocation, or an
 * update that leaves it as it was). An update that sets a new image drops the record instead.
 */
function earlierAnswer(c: ContainerImage, ctx: PodContext, state: PlanState): string | undefined {
  const original = recordedFor(state.originals, c.name);
  if (original === undefined) return undefined;
  const previous = ctx.previousImages?.get(c.name);
  if (previous === undefined || previous === c.image) return original !== c.image ? original : undefined;
  delete state.originals[c.name];
  delete state.mappedBy[c.name];
  state.recorded = true;
  return undefined;
}

/** One container's decision into the plan: its patch op, record, pull secret, probes and warning. */
function addDecision(c: ContainerImage, decision: ImageDecision, state: PlanState): void {
  state.containers.push(containerPlan(c, decision, undefined));
  for (const probe of decision.pendingProbes) state.pending.push(probe);
  if (decision.outcome === 'Invalid')
    state.warnings.push(
      `pullmap: ${describeImage(c)}: ${decision.reasons[0]?.message ?? 'invalid image'}; left unchanged`,
    );
  if (decision.outcome !== 'Mapped' || !decision.rule) return;
  state.patch.push({ op: 'replace', path: `/spec/${c.path.join('/')}`, value: decision.image });
  state.originals[c.name] = c.image;
  state.mappedBy[c.name] = decision.rule.entryName;
  if (decision.rule.pullSecret !== undefined) state.pullSecrets.add(decision.rule.pullSecret);
  state.recorded = true;
}

/**
 * Why pullmap leaves the whole pod alone, if it does: an opt-out, or an excluded namespace. The one
 * rule: planPod applies it and explain --pod reports it.
 */
export function podSkipReason(
  settings: DecisionSettings,
  namespace: string,
  labels: Readonly<Record<string, unknown>>,
  annotations: Readonly<Record<string, unknown>>,
): string | undefined {
  if (labels[OPT_OUT] === 'true' || annotations[OPT_OUT] === 'true')
    return `the pod opts out with ${OPT_OUT}: "true"`;
  if (settings.excludedNamespaces.includes(namespace)) return `namespace ${namespace} is excluded`;
  return undefined;
}

/** The ops that write the originals and mapped-by annotations, creating the annotations map if need be. */
function recordOps(
  hasAnnotations: boolean,
  originals: Record<string, string>,
  mappedBy: Record<string, string>,
): JsonPatchOp[] {
  const values = {
    [ANNOTATION_ORIGINAL_IMAGES]: JSON.stringify(originals),
    [ANNOTATION_MAPPED_BY]: JSON.stringify(mappedBy),
  };
  if (!hasAnnotations) return [{ op: 'add', path: '/metadata/annotations', value: values }];
  return Object.entries(values).map(([k, v]) => ({
    op: 'add',
    path: `/metadata/annotations/${escapePointer(k)}`,
    value: v,
  }));
}

/** "container app" or "image volume data", for warnings. */
export const describeImage = (c: ContainerImage): string =>
  c.list === 'volumes' ? `image volume ${c.name.slice('volume:'.length)}` : `container ${c.name}`;

const containerPlan = (
  c: ContainerImage,
  decision: ImageDecision | undefined,
  skipped: string | undefined,
): ContainerPlan => ({
  list: c.list,
  index: c.index,
  name: c.name,
  image: c.image,
  pullPolicy: c.pullPolicy,
  path: c.path,
  decision,
  skipped,
});
