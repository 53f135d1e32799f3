// What the controller writes into a map's status for a verdict, and whether that differs from what is
// there. Pure: the clock reading comes in as `now`.

import type { MapObject, MapSpec } from '../core/api/v1alpha1.ts';
import {
  cacheUpstreamFindings,
  type MapVerdict,
  podPullSecretName,
  verdictMessage,
} from '../core/mapping/index.ts';
import type { KubeObject } from '../kube/list-watch.ts';

interface ReadyCondition {
  type: 'Ready';
  status: 'True' | 'False';
  reason: 'Accepted' | 'Conflict' | 'Invalid';
  message: string;
  lastTransitionTime: string;
  observedGeneration?: number;
}

/**
 * Said beside Ready (which they leave as it is: the map serves): something the map asks for is switched
 * off in this installation, or its cache cannot fetch a target (its host is not one of the upstreams).
 */
interface NoteCondition {
  type: 'PullSecretsCopied' | 'CacheTargetsProxied';
  status: 'False';
  reason: 'CopyDisabled' | 'NotCacheUpstream';
  message: string;
  lastTransitionTime: string;
  observedGeneration?: number;
}

/** How this installation runs, as far as a map's status reports it. */
export interface StatusContext {
  /** false: ClusterImageMap pull secrets are not copied (--no-pull-secret-copy). */
  readonly pullSecretCopy?: boolean;
  /** The cache's upstream hosts (--cache-upstreams); undefined: not checked. */
  readonly cacheUpstreams?: readonly string[] | undefined;
}

export interface MapStatus {
  observedGeneration?: number;
  servingGeneration?: number;
  mappings?: number;
  conditions: Array<ReadyCondition | NoteCondition>;
  lastAccepted?: { generation: number; spec: MapSpec };
  /** Written by the fill loop (fill.ts); kept as it is by verdict writes. */
  fill?: unknown;
}

const MAX_MESSAGE = 32_768;

function statusOf(object: KubeObject): Partial<MapStatus> | undefined {
  const status = object.status;
  return status !== null && typeof status === 'object' ? (status as Partial<MapStatus>) : undefined;
}

/** The last accepted generation recorded in status, as a map object analyzeMaps can use. */
export function lastAcceptedOf(object: KubeObject): MapObject | undefined {
  const kept = statusOf(object)?.lastAccepted as { generation?: unknown; spec?: unknown } | undefined;
  if (!kept || typeof kept.generation !== 'number' || kept.spec === undefined) return undefined;
  return {
    ...object,
    metadata: { ...object.metadata, generation: kept.generation },
    spec: kept.spec,
  } as unknown as MapObject;
}

export function readyOf(object: KubeObject): ReadyCondition | undefined {
  const conditions = statusOf(object)?.conditions;
  return Array.isArray(conditions) ? conditions.find((c) => c?.type === 'Ready') : undefined;
}

/** The status for `verdict` about `object`; `now` is an RFC 3339 time for a changed condition. */
export function desiredStatus(
  object: KubeObject,
  verdict: MapVerdict,
  now: string,
  context: StatusContext = {},
): MapStatus {
  const generation = object.metadata.generation;
  const previous = readyOf(object);
  const status: ReadyCondition['status'] = verdict.verdict === 'Accepted' ? 'True' : 'False';
  const message = verdictMessage(verdict);
  const ready: ReadyCondition = {
    type: 'Ready',
    status,
    reason: verdict.verdict,
    message: message.length > MAX_MESSAGE ? `${message.slice(0, MAX_MESSAGE - 1)}…` : message,
    lastTransitionTime:
      previous?.status === status && previous.reason === verdict.verdict && previous.lastTransitionTime
        ? previous.lastTransitionTime
        : now,
  };
  if (generation !== undefined) ready.observedGeneration = generation;
  const out: MapStatus = { conditions: [ready] };
  out.conditions.push(...notesFor(object, verdict, now, context));
  if (generation !== undefined) out.observedGeneration = generation;
  if (verdict.servingGeneration !== undefined) out.servingGeneration = verdict.servingGeneration;
  const spec = object.spec as { mappings?: unknown } | undefined;
  if (Array.isArray(spec?.mappings)) out.mappings = spec.mappings.length;
  if (verdict.verdict === 'Accepted' && generation !== undefined) {
    out.lastAccepted = { generation, spec: object.spec as MapSpec };
  } else {
    const kept = statusOf(object)?.lastAccepted;
    if (kept) out.lastAccepted = kept;
  }
  // The fill loop's part of the status (fill.ts) is its own: a verdict write carries it over.
  const fill = statusOf(object)?.fill;
  if (fill) out.fill = fill;
  return out;
}

/** The notes beside Ready that this installation's context calls for. */
function notesFor(
  object: KubeObject,
  verdict: MapVerdict,
  now: string,
  context: StatusContext,
): NoteCondition[] {
  const generation = object.metadata.generation;
  const notes: NoteCondition[] = [];
  const note = (type: NoteCondition['type'], reason: NoteCondition['reason'], text: string): void => {
    const before = statusOf(object)?.conditions?.find((c) => c?.type === type);
    const condition: NoteCondition = {
      type,
      status: 'False',
      reason,
      message: text.length > MAX_MESSAGE ? `${text.slice(0, MAX_MESSAGE - 1)}…` : text,
      lastTransitionTime: before?.lastTransitionTime ?? now,
    };
    if (generation !== undefined) condition.observedGeneration = generation;
    notes.push(condition);
  };
  const secrets = context.pullSecretCopy === false ? copiedSecrets(object) : [];
  if (secrets.length > 0)
    note(
      'PullSecretsCopied',
      'CopyDisabled',
      `pull secret copying is disabled in this installation (chart value pullSecretCopy.enabled=false, flag --no-pull-secret-copy): pods get imagePullSecrets ${secrets.map((s) => podPullSecretName('ClusterImageMap', s)).join(', ')}, which must be created in each namespace this map selects by other means, or enable copying`,
    );
  // The generation that serves (the current one, or the last accepted): what pods are sent to.
  const unproxied =
    context.cacheUpstreams !== undefined && verdict.compiled
      ? cacheUpstreamFindings([verdict.compiled], context.cacheUpstreams)
      : [];
  if (unproxied.length > 0)
    note(
      'CacheTargetsProxied',
      'NotCacheUpstream',
      `${unproxied.map((f) => `${f.path}: ${f.message}`).join('; ')} (the chart's cache.config.upstreams, flag --cache-upstreams)`,
    );
  return notes;
}

/** The pullSecrets of a ClusterImageMap's mappings (the ones pullmap copies), without duplicates. */
function copiedSecrets(object: KubeObject): string[] {
  if (object.kind !== 'ClusterImageMap') return [];
  const mappings = (object.spec as { mappings?: unknown } | undefined)?.mappings;
  if (!Array.isArray(mappings)) return [];
  const names = new Set<string>();
  for (const m of mappings) {
    const secret = (m as { pullSecret?: unknown } | null)?.pullSecret;
    if (typeof secret === 'string') names.add(secret);
  }
  return [...names];
}

/** JSON with sorted keys: the API server may return fields in any order. */
function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v !== null && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : 1)))
      : v,
  );
}

/** Whether writing `desired` would change anything in the object's status. */
export function statusDiffers(object: KubeObject, desired: MapStatus): boolean {
  const current = statusOf(object) ?? {};
  const pick = (s: Partial<MapStatus>) => ({
    observedGeneration: s.observedGeneration,
    servingGeneration: s.servingGeneration,
    mappings: s.mappings,
    conditions: s.conditions,
    lastAccepted: s.lastAccepted,
  });
  return canonical(pick(current)) !== canonical(pick(desired));
}
