// The decision: where one image of one pod is pulled from, and why. The webhook, `pullmap rewrite`,
// `pullmap explain` and the tests all call decideImage, so they cannot disagree.

import type { Mapping } from '../api/v1alpha1.ts';
import {
  type ExistenceAnswer,
  type ExistenceFacts,
  isProbeFailure,
  type ProbeRequest,
  probeRequest,
} from '../facts.ts';
import {
  DEFAULT_TAG,
  describeReferenceError,
  effectiveTag,
  embedRegistry,
  formatReference,
  type ImageReference,
  parseReference,
} from '../reference/index.ts';
import type {
  MatchedRule,
  Preparation,
  PreparedCandidate,
  PreparedImage,
  PreparedRule,
  ReadyImage,
  Reason,
  ScopeMatches,
} from './prepared.ts';
import { applyTarget, mapRefName, type Pattern, podPullSecretName, type Rule } from './rule.ts';
import { type Labels, selects } from './selector.ts';
import type { DecisionSettings } from './settings.ts';
import { isCacheRouted, lookupKeys, type MapSnapshot, type ScopeIndex, scopesFor } from './snapshot.ts';

export interface DecisionContext {
  /** The pod's namespace; undefined considers ClusterImageMaps only. */
  readonly namespace: string | undefined;
  readonly namespaceLabels: Labels;
  readonly podLabels: Labels;
  /** The container's imagePullPolicy; when absent, Kubernetes' default for the image is assumed. */
  readonly pullPolicy?: string | undefined;
}

type DecisionOutcome = 'Mapped' | 'Unchanged' | 'Invalid' | 'Pending';

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

/** The pull policy Kubernetes defaults to when none is written: Always for :latest or no tag. */
function defaultPullPolicy(tag: string | undefined, digest: string | undefined): string {
  return digest === undefined && (tag === undefined || tag === DEFAULT_TAG) ? 'Always' : 'IfNotPresent';
}

const entryName = (rule: Rule): string => `${mapRefName(rule.map.ref)} spec.mappings[${rule.index}]`;

function matchedRule(rule: Rule): MatchedRule {
  return {
    map: rule.map.ref,
    mapName: mapRefName(rule.map.ref),
    entry: rule.index,
    entryName: entryName(rule),
    from: rule.mapping.from,
    to: rule.mapping.to,
    pullSecret:
      rule.mapping.pullSecret === undefined
        ? undefined
        : podPullSecretName(rule.map.ref.kind, rule.mapping.pullSecret),
  };
}

/** Whether a rule's map applies to this pod (scope and selectors). */
function applies(rule: Rule, ctx: DecisionContext): boolean {
  const spec = rule.map.spec;
  if (rule.map.ref.namespace === undefined && !selects(spec.namespaceSelector, ctx.namespaceLabels))
    return false;
  return selects(spec.podSelector, ctx.podLabels);
}

function rulesFor(scopes: readonly ScopeIndex[], keys: readonly string[], targets: boolean): Rule[] {
  const out: Rule[] = [];
  for (const key of keys)
    for (const scope of scopes) {
      const rules = (targets ? scope.targets : scope.sources).get(key);
      if (rules) for (const rule of rules) out.push(rule);
    }
  return out;
}

function firstApplicable(rules: readonly Rule[], ctx: DecisionContext): Rule | undefined {
  for (const rule of rules) if (applies(rule, ctx)) return rule;
  return undefined;
}

function matchesIn(snapshot: MapSnapshot, image: ReadyImage, namespace: string | undefined): ScopeMatches {
  const scopes = scopesFor(snapshot, namespace, image.ref.registry);
  return { producers: rulesFor(scopes, image.keys, true), sources: rulesFor(scopes, image.keys, false) };
}

const NO_MATCH: Reason = { code: 'NoMatch', message: 'no mapping applies to this image' };

/** Why the most specific rule for the image does not apply to this pod: a selector left it out. */
function notSelected(rule: Rule | undefined, ctx: DecisionContext): Reason | undefined {
  if (rule === undefined) return undefined;
  const spec = rule.map.spec;
  if (rule.map.ref.namespace === undefined && !selects(spec.namespaceSelector, ctx.namespaceLabels)) {
    const labels = Object.entries(ctx.namespaceLabels).map(([k, v]) => `${k}=${v}`);
    return {
      code: 'NamespaceNotSelected',
      message: `${entryName(rule)} matches the image, but its namespaceSelector does not select namespace ${ctx.namespace ?? '(none)'} (labels: ${labels.join(', ') || 'none'})`,
    };
  }
  return {
    code: 'PodNotSelected',
    message: `${entryName(rule)} matches the image, but its podSelector does not select this pod`,
  };
}

/** A decision that leaves the image as written, whatever the outcome (Unchanged, Invalid or Pending). */
const keepImage = (
  input: string,
  ref: ImageReference | undefined,
  outcome: DecisionOutcome,
  reasons: Reason[],
  rule?: MatchedRule,
  pendingProbes: readonly ProbeRequest[] = [],
): ImageDecision => ({
  input,
  ref,
  outcome,
  image: input,
  rule,
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

function prepareImage(snapshot: MapSnapshot, settings: DecisionSettings, input: string): PreparedImage {
  const parsed = parseReference(input);
  if (!parsed.ok)
    return {
      ok: false,
      invalid: { code: 'InvalidReference', message: describeReferenceError(input, parsed.error) },
    };
  const ref = parsed.ref;
  const tag = effectiveTag(ref);
  return {
    ok: true,
    ref,
    formatted: formatReference(ref),
    tag,
    cacheRouted: isCacheRouted(snapshot, settings, ref),
    keys: lookupKeys(ref, tag),
  };
}

function prepareCandidate(
  settings: DecisionSettings,
  rule: Rule,
  target: Pattern,
  ref: ImageReference,
  tag: string | undefined,
): PreparedCandidate {
  const map = rule.map;
  const text = applyTarget(rule, target, ref, tag);
  const candidate = validTarget(text);
  if (!candidate)
    return {
      ok: false,
      invalid: {
        code: 'TargetInvalid',
        message: `target ${JSON.stringify(text ?? target.key)} would not be a valid reference (too long, or a registry that cannot be a path component)`,
      },
    };
  const name = formatReference(candidate);
  let image = name;
  let routing: Reason | undefined;
  if (map.spec.cache?.enabled) {
    const address = map.spec.cache.address ?? settings.cacheAddress;
    const host = embedRegistry(candidate.registry);
    const routed =
      host === undefined
        ? undefined
        : validTarget(`${address}/${host}/${name.slice(candidate.registry.length + 1)}`);
    if (routed) {
      image = formatReference(routed);
      routing = { code: 'CacheRouted', message: `routed through the pullmap cache at ${address}` };
    } else {
      routing = {
        code: 'TargetInvalid',
        message: `${name} cannot be routed through the cache at ${address} (the result would not be a valid reference); used directly`,
      };
    }
  }
  return {
    ok: true,
    ref: candidate,
    name,
    request: probeRequest(name, map.positiveTtlMs, map.negativeTtlMs),
    image,
    routing,
  };
}

function prepareRule(
  _snapshot: MapSnapshot,
  settings: DecisionSettings,
  image: ReadyImage,
  rule: Rule,
): PreparedRule {
  const { ref, tag } = image;
  const map = rule.map;
  const mutable =
    ref.digest === undefined &&
    tag !== undefined &&
    map.mutableTags?.matches(tag) === true &&
    map.spec.mutableTagPolicy !== 'Map';
  return {
    rule: matchedRule(rule),
    matched: {
      code: 'Matched',
      message: `${entryName(rule)} matches (from ${JSON.stringify(rule.mapping.from)})`,
    },
    mutableKept: mutable
      ? {
          code: 'MutableTagKept',
          message: `tag "${tag}" is a mutable tag of ${mapRefName(map.ref)}; it keeps its original registry`,
        }
      : undefined,
    // With mutable tags kept the candidates are never needed.
    candidates: mutable ? [] : rule.targets.map((t) => prepareCandidate(settings, rule, t, ref, tag)),
  };
}

/** Everything worked out afresh on each call: no state, what the CLI and tests use. */
export const prepareFresh: Preparation = { image: prepareImage, matches: matchesIn, rule: prepareRule };

/** Whether the rule's map keeps this container's image because it is always pulled (pullPolicyAlways). */
function keepsAlwaysPulled(rule: Rule, ref: ImageReference, ctx: DecisionContext): boolean {
  return (
    rule.map.spec.pullPolicyAlways === 'KeepOriginal' &&
    (ctx.pullPolicy ?? defaultPullPolicy(ref.tag, ref.digest)) === 'Always'
  );
}

type ReadyCandidate = Extract<PreparedCandidate, { ok: true }>;

/** What one existence answer means for the search through a rule's candidates. */
type Consulted = 'next' | 'available' | 'stop' | 'keepOriginal';

/**
 * Consults the existence answer for one candidate of an IfExists rule, noting the reason, and the
 * probe when the answer is missing: try the next candidate, use this one, stop undecided (a probe
 * failed while others are pending), or keep the original image (onProbeError: KeepOriginal).
 */
function consult(
  rule: Rule,
  { name, request }: ReadyCandidate,
  facts: ExistenceFacts,
  reasons: Reason[],
  pending: ProbeRequest[],
): Consulted {
  const answer = facts(name, request);
  if (answer === undefined) {
    pending.push(request);
    reasons.push({ code: 'CandidateUnknown', message: `${name}: not asked yet`, candidate: name });
    return 'next';
  }
  const message = `${name}: ${describeProbe(answer)}`;
  if (answer.outcome === 'Available') {
    reasons.push({ code: 'CandidateAvailable', message, candidate: name, probe: answer });
    return 'available';
  }
  if (!isProbeFailure(answer.outcome)) {
    reasons.push({ code: 'CandidateMissing', message, candidate: name, probe: answer });
    return 'next';
  }
  reasons.push({ code: 'CandidateProbeFailed', message, candidate: name, probe: answer });
  if (rule.mapping.onProbeError !== 'KeepOriginal') return 'next';
  if (pending.length > 0) return 'stop';
  reasons.push({
    code: 'ProbeFailureKeptOriginal',
    message: 'a candidate registry could not be asked; onProbeError: KeepOriginal keeps the original image',
  });
  return 'keepOriginal';
}

/**
 * The candidate to use, in order (with Always, the first valid one), noting a reason for each one
 * looked at and the probes still needed: undefined when none can be used yet or at all, 'keepOriginal'
 * when a failed probe keeps the image.
 */
function chooseCandidate(
  rule: Rule,
  candidates: readonly PreparedCandidate[],
  facts: ExistenceFacts,
  reasons: Reason[],
  pending: ProbeRequest[],
): ReadyCandidate | 'keepOriginal' | undefined {
  for (const candidate of candidates) {
    if (!candidate.ok) {
      reasons.push(candidate.invalid);
      continue;
    }
    if (rule.mapping.when !== 'IfExists') return candidate;
    const step = consult(rule, candidate, facts, reasons, pending);
    if (step === 'available') return pending.length === 0 ? candidate : undefined;
    if (step === 'stop') return undefined;
    if (step === 'keepOriginal') return step;
  }
  return undefined;
}

/**
 * Decides where `input` is pulled from for a pod described by `ctx`, under the maps of `snapshot` and
 * the operator's `settings`. Pure: existence answers come from `facts`; when one it needs is missing,
 * the outcome is Pending with the probes to make. What does not depend on the pod (parsing, index
 * keys, candidates) comes from `prepare`.
 */
export function decideImage(
  snapshot: MapSnapshot,
  settings: DecisionSettings,
  input: string,
  ctx: DecisionContext,
  facts: ExistenceFacts,
  prepare: Preparation = prepareFresh,
): ImageDecision {
  const image = prepare.image(snapshot, settings, input);
  if (!image.ok) return keepImage(input, undefined, 'Invalid', [image.invalid]);
  const ref = image.ref;
  if (image.cacheRouted) {
    return keepImage(input, ref, 'Unchanged', [
      {
        code: 'AlreadyMapped',
        message: `${ref.registry} is the pullmap cache: the image was routed already`,
      },
    ]);
  }
  const matches = prepare.matches(snapshot, image, ctx.namespace);
  const producer = firstApplicable(matches.producers, ctx);
  if (producer) {
    const message = `the image is already a target of ${entryName(producer)}; pullmap never maps an image twice`;
    return keepImage(input, ref, 'Unchanged', [{ code: 'AlreadyMapped', message }]);
  }
  const rule = firstApplicable(matches.sources, ctx);
  if (!rule) return keepImage(input, ref, 'Unchanged', [notSelected(matches.sources[0], ctx) ?? NO_MATCH]);

  const prepared = prepare.rule(snapshot, settings, image, rule);
  const reasons: Reason[] = [prepared.matched];
  if (prepared.mutableKept) {
    reasons.push(prepared.mutableKept);
    return keepImage(input, ref, 'Unchanged', reasons, prepared.rule);
  }
  if (keepsAlwaysPulled(rule, ref, ctx)) {
    reasons.push({
      code: 'PullPolicyAlwaysKept',
      message: `imagePullPolicy is Always and ${mapRefName(rule.map.ref)} keeps such images on their original registry`,
    });
    return keepImage(input, ref, 'Unchanged', reasons, prepared.rule);
  }
  return decideByCandidates(input, image, rule, prepared, facts, reasons);
}

/** The end of decideImage, once a rule applies and keeps nothing: its candidates decide. */
function decideByCandidates(
  input: string,
  image: ReadyImage,
  rule: Rule,
  prepared: PreparedRule,
  facts: ExistenceFacts,
  reasons: Reason[],
): ImageDecision {
  const ref = image.ref;
  const pending: ProbeRequest[] = [];
  const chosen = chooseCandidate(rule, prepared.candidates, facts, reasons, pending);
  if (pending.length > 0) return keepImage(input, ref, 'Pending', reasons, prepared.rule, pending);
  if (chosen === 'keepOriginal') return keepImage(input, ref, 'Unchanged', reasons, prepared.rule);
  if (!chosen) {
    if (rule.mapping.when === 'IfExists')
      reasons.push({
        code: 'NoCandidateHasImage',
        message: 'no candidate registry has the image; it keeps its original registry',
      });
    return keepImage(input, ref, 'Unchanged', reasons, prepared.rule);
  }
  if (chosen.routing) reasons.push(chosen.routing);
  if (chosen.image === image.formatted) return keepImage(input, ref, 'Unchanged', reasons, prepared.rule);
  return {
    input,
    ref,
    outcome: 'Mapped',
    image: chosen.image,
    rule: prepared.rule,
    reasons,
    pendingProbes: [],
  };
}

/** Where a fill copies an image: the source, the mapping's first target, and its fill settings. */
export interface FillPlan {
  readonly source: ImageReference;
  readonly target: ImageReference;
  readonly rule: MatchedRule;
  /** The mapping's `fill`; undefined when the mapping does not ask for it (`pullmap copy` copies anyway). */
  readonly fill: Mapping['fill'];
}

type FillDecision =
  | { readonly ok: true; readonly plan: FillPlan }
  | { readonly ok: false; readonly reason: Reason };

/**
 * The target a copy of `input` goes to, worked out exactly as decideImage works out candidates (the same
 * rule, the same naming), so a filled target is the one the webhook probes and maps to. Images the
 * decision would never map (already mapped, mutable tags kept, pull policy kept) are not filled.
 */
export function fillTarget(
  snapshot: MapSnapshot,
  settings: DecisionSettings,
  input: string,
  ctx: DecisionContext,
  prepare: Preparation = prepareFresh,
): FillDecision {
  const image = prepare.image(snapshot, settings, input);
  if (!image.ok) return { ok: false, reason: image.invalid };
  const ref = image.ref;
  if (image.cacheRouted)
    return { ok: false, reason: { code: 'AlreadyMapped', message: `${ref.registry} is the pullmap cache` } };
  const matches = prepare.matches(snapshot, image, ctx.namespace);
  const producer = firstApplicable(matches.producers, ctx);
  if (producer)
    return {
      ok: false,
      reason: { code: 'AlreadyMapped', message: `the image is already a target of ${entryName(producer)}` },
    };
  const rule = firstApplicable(matches.sources, ctx);
  if (!rule) return { ok: false, reason: NO_MATCH };
  const prepared = prepare.rule(snapshot, settings, image, rule);
  if (prepared.mutableKept) return { ok: false, reason: prepared.mutableKept };
  if (keepsAlwaysPulled(rule, ref, ctx))
    return {
      ok: false,
      reason: {
        code: 'PullPolicyAlwaysKept',
        message: 'imagePullPolicy Always keeps this image on its registry',
      },
    };
  const first = prepared.candidates[0];
  if (first === undefined) return { ok: false, reason: NO_MATCH };
  if (!first.ok) return { ok: false, reason: first.invalid };
  if (first.name === image.formatted)
    return { ok: false, reason: { code: 'AlreadyMapped', message: 'the target is the image itself' } };
  return { ok: true, plan: { source: ref, target: first.ref, rule: prepared.rule, fill: rule.mapping.fill } };
}
