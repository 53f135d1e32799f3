// The decision: where one image of one pod is pulled from, and why. The webhook, `pullmap rewrite`,
// `pullmap explain` and the tests all call decideImage, so they cannot disagree.

import {
  type ExistenceAnswer,
  type ExistenceFacts,
  isProbeFailure,
  type ProbeRequest,
  probeRequest,
} from '../facts.ts';
import { defaultPullPolicy } from '../pod/locate.ts';
import {
  describeReferenceError,
  effectiveTag,
  embedRegistry,
  formatReference,
  type ImageReference,
  parseReference,
} from '../reference/index.ts';
import { applyTarget, type MapRef, mapRefName, type Rule } from './rule.ts';
import { type Labels, selects } from './selector.ts';
import { isCacheRouted, lookupKeys, type MapSnapshot, type ScopeIndex, scopesFor } from './snapshot.ts';

export interface DecisionContext {
  /** The pod's namespace; undefined considers ClusterImageMaps only. */
  readonly namespace: string | undefined;
  readonly namespaceLabels: Labels;
  readonly podLabels: Labels;
  /** The container's imagePullPolicy; when absent, Kubernetes' default for the image is assumed. */
  readonly pullPolicy?: string | undefined;
}

export type ReasonCode =
  | 'InvalidReference'
  | 'AlreadyMapped'
  | 'NoMatch'
  | 'Matched'
  | 'MutableTagKept'
  | 'PullPolicyAlwaysKept'
  | 'TargetInvalid'
  | 'CandidateAvailable'
  | 'CandidateMissing'
  | 'CandidateProbeFailed'
  | 'CandidateUnknown'
  | 'ProbeFailureKeptOriginal'
  | 'NoCandidateHasImage'
  | 'CacheRouted';

export interface Reason {
  readonly code: ReasonCode;
  readonly message: string;
  readonly candidate?: string;
  readonly probe?: ExistenceAnswer;
}

export type DecisionOutcome = 'Mapped' | 'Unchanged' | 'Invalid' | 'Pending';

export interface MatchedRule {
  readonly map: MapRef;
  readonly mapName: string;
  /** Index in the map's spec.mappings. */
  readonly entry: number;
  readonly from: string;
  readonly to: readonly string[];
}

export interface ImageDecision {
  readonly input: string;
  readonly ref: ImageReference | undefined;
  readonly outcome: DecisionOutcome;
  /** The image the container should use: the input itself unless outcome is Mapped. */
  readonly image: string;
  readonly rule: MatchedRule | undefined;
  readonly reasons: readonly Reason[];
  /**
   * Candidates whose existence answer is needed before this can be decided, each with the matched
   * map's TTLs (spec.existence).
   */
  readonly pendingProbes: readonly ProbeRequest[];
}

function matchedRule(rule: Rule): MatchedRule {
  return {
    map: rule.map.ref,
    mapName: mapRefName(rule.map.ref),
    entry: rule.index,
    from: rule.mapping.from,
    to: rule.mapping.to,
  };
}

const entryName = (rule: Rule): string => `${mapRefName(rule.map.ref)} spec.mappings[${rule.index}]`;

/** Whether a rule's map applies to this pod (scope and selectors). */
function applies(rule: Rule, ctx: DecisionContext): boolean {
  const spec = rule.map.spec;
  if (rule.map.ref.namespace === undefined && !selects(spec.namespaceSelector, ctx.namespaceLabels))
    return false;
  return selects(spec.podSelector, ctx.podLabels);
}

/** The first applicable rule for any key, most specific key first; namespaced before cluster per key. */
function find(
  scopes: readonly ScopeIndex[],
  keys: readonly string[],
  ctx: DecisionContext,
  which: 'sources' | 'targets',
): Rule | undefined {
  for (const key of keys) {
    for (const scope of scopes) {
      const rules = scope[which].get(key);
      if (rules) for (const rule of rules) if (applies(rule, ctx)) return rule;
    }
  }
  return undefined;
}

const NO_MATCH: Reason = { code: 'NoMatch', message: 'no mapping applies to this image' };

const unchanged = (
  input: string,
  ref: ImageReference | undefined,
  outcome: DecisionOutcome,
  reasons: Reason[],
  rule?: Rule,
  pendingProbes: readonly ProbeRequest[] = [],
): ImageDecision => ({
  input,
  ref,
  outcome,
  image: input,
  rule: rule && matchedRule(rule),
  reasons,
  pendingProbes,
});

function describeProbe(answer: ExistenceAnswer): string {
  const source = answer.cached ? `cached ${Math.round(answer.ageMs / 1000)}s ago` : 'asked now';
  return `${answer.outcome}${answer.status === undefined ? '' : ` (HTTP ${answer.status})`}, ${source}${answer.detail ? `: ${answer.detail}` : ''}`;
}

/** Re-parses a generated reference: what pullmap writes into a pod must itself be valid. */
function validTarget(text: string | undefined): ImageReference | undefined {
  if (text === undefined) return undefined;
  const parsed = parseReference(text);
  return parsed.ok ? parsed.ref : undefined;
}

/**
 * Decides where `input` is pulled from for a pod described by `ctx`. Pure: existence answers come
 * from `facts`; when one it needs is missing, the outcome is Pending with the probes to make.
 */
export function decideImage(
  snapshot: MapSnapshot,
  input: string,
  ctx: DecisionContext,
  facts: ExistenceFacts,
): ImageDecision {
  const parsed = parseReference(input);
  if (!parsed.ok) {
    return unchanged(input, undefined, 'Invalid', [
      { code: 'InvalidReference', message: describeReferenceError(input, parsed.error) },
    ]);
  }
  const ref = parsed.ref;
  if (isCacheRouted(snapshot, ref)) {
    return unchanged(input, ref, 'Unchanged', [
      {
        code: 'AlreadyMapped',
        message: `${ref.registry} is the pullmap cache: the image was routed already`,
      },
    ]);
  }
  const scopes = scopesFor(snapshot, ctx.namespace, ref.registry);
  if (scopes.length === 0) return unchanged(input, ref, 'Unchanged', [NO_MATCH]);
  const tag = effectiveTag(ref);
  const keys = lookupKeys(ref, tag);
  const producer = find(scopes, keys, ctx, 'targets');
  if (producer) {
    const message = `the image is already a target of ${entryName(producer)}; pullmap never maps an image twice`;
    return unchanged(input, ref, 'Unchanged', [{ code: 'AlreadyMapped', message }]);
  }
  const rule = find(scopes, keys, ctx, 'sources');
  if (!rule) return unchanged(input, ref, 'Unchanged', [NO_MATCH]);

  const map = rule.map;
  const reasons: Reason[] = [
    { code: 'Matched', message: `${entryName(rule)} matches (from ${JSON.stringify(rule.mapping.from)})` },
  ];
  if (
    ref.digest === undefined &&
    tag !== undefined &&
    map.mutableTags?.test(tag) &&
    map.spec.mutableTagPolicy !== 'Map'
  ) {
    reasons.push({
      code: 'MutableTagKept',
      message: `tag "${tag}" is a mutable tag of ${mapRefName(map.ref)}; it keeps its original registry`,
    });
    return unchanged(input, ref, 'Unchanged', reasons, rule);
  }
  if (
    map.spec.pullPolicyAlways === 'KeepOriginal' &&
    (ctx.pullPolicy ?? defaultPullPolicy(ref.tag, ref.digest)) === 'Always'
  ) {
    reasons.push({
      code: 'PullPolicyAlwaysKept',
      message: `imagePullPolicy is Always and ${mapRefName(map.ref)} keeps such images on their original registry`,
    });
    return unchanged(input, ref, 'Unchanged', reasons, rule);
  }

  // Candidates in order; with Always there is exactly one.
  let chosen: ImageReference | undefined;
  const pending: ProbeRequest[] = [];
  for (const target of rule.targets) {
    const text = applyTarget(rule, target, ref, tag);
    const candidate = validTarget(text);
    if (!candidate) {
      reasons.push({
        code: 'TargetInvalid',
        message: `target ${JSON.stringify(text ?? target.key)} would not be a valid reference (too long, or a registry that cannot be a path component)`,
      });
      continue;
    }
    if (rule.mapping.when !== 'IfExists') {
      chosen = candidate;
      break;
    }
    const name = formatReference(candidate);
    const request = probeRequest(name, map.positiveTtlMs, map.negativeTtlMs);
    const answer = facts(name, request);
    if (answer === undefined) {
      pending.push(request);
      reasons.push({ code: 'CandidateUnknown', message: `${name}: not asked yet`, candidate: name });
      continue;
    }
    if (answer.outcome === 'Available') {
      reasons.push({
        code: 'CandidateAvailable',
        message: `${name}: ${describeProbe(answer)}`,
        candidate: name,
        probe: answer,
      });
      if (pending.length === 0) chosen = candidate;
      break;
    }
    if (isProbeFailure(answer.outcome)) {
      reasons.push({
        code: 'CandidateProbeFailed',
        message: `${name}: ${describeProbe(answer)}`,
        candidate: name,
        probe: answer,
      });
      if (rule.mapping.onProbeError === 'KeepOriginal') {
        if (pending.length > 0) break;
        reasons.push({
          code: 'ProbeFailureKeptOriginal',
          message:
            'a candidate registry could not be asked; onProbeError: KeepOriginal keeps the original image',
        });
        return unchanged(input, ref, 'Unchanged', reasons, rule);
      }
      continue;
    }
    reasons.push({
      code: 'CandidateMissing',
      message: `${name}: ${describeProbe(answer)}`,
      candidate: name,
      probe: answer,
    });
  }
  if (pending.length > 0) return unchanged(input, ref, 'Pending', reasons, rule, pending);
  if (!chosen) {
    if (rule.mapping.when === 'IfExists')
      reasons.push({
        code: 'NoCandidateHasImage',
        message: 'no candidate registry has the image; it keeps its original registry',
      });
    return unchanged(input, ref, 'Unchanged', reasons, rule);
  }

  let image = formatReference(chosen);
  if (map.spec.cache?.enabled) {
    const address = map.spec.cache.address ?? snapshot.options.cacheAddress;
    const host = embedRegistry(chosen.registry);
    const routed =
      host === undefined
        ? undefined
        : validTarget(`${address}/${host}/${image.slice(chosen.registry.length + 1)}`);
    if (routed) {
      image = formatReference(routed);
      reasons.push({ code: 'CacheRouted', message: `routed through the pullmap cache at ${address}` });
    } else {
      reasons.push({
        code: 'TargetInvalid',
        message: `${image} cannot be routed through the cache at ${address} (the result would not be a valid reference); used directly`,
      });
    }
  }
  if (image === formatReference(ref)) {
    return unchanged(input, ref, 'Unchanged', reasons, rule);
  }
  return { input, ref, outcome: 'Mapped', image, rule: matchedRule(rule), reasons, pendingProbes: [] };
}
