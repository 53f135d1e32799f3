// What a decision works out about an image before any pod context, and the reason and rule types it
// carries. decide.ts works these out afresh by default (pure); a caller that decides many pods passes a
// Preparation that remembers them (the webhook's, src/serve/prepared-memo.ts).

import type { ExistenceAnswer, ProbeRequest } from '../facts.ts';
import type { ImageReference } from '../reference/index.ts';
import type { MapRef, Rule } from './rule.ts';
import type { DecisionSettings } from './settings.ts';
import type { MapSnapshot } from './snapshot.ts';

type ReasonCode =
  | 'InvalidReference'
  | 'AlreadyMapped'
  | 'NoMatch'
  | 'NamespaceNotSelected'
  | 'PodNotSelected'
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

export interface MatchedRule {
  readonly map: MapRef;
  readonly mapName: string;
  /** Index in the map's spec.mappings. */
  readonly entry: number;
  /** "ClusterImageMap/hub spec.mappings[0]": how logs and the mapped-by annotation name the entry. */
  readonly entryName: string;
  readonly from: string;
  readonly to: readonly string[];
  /** The Secret the pod must name in imagePullSecrets for the target (pullmap's copy for a ClusterImageMap). */
  readonly pullSecret: string | undefined;
}

/**
 * The rules an image's index keys reach in one namespace's scopes, in the order they are tried: most
 * specific key first, namespaced before cluster per key. Selectors are applied per pod (firstApplicable).
 */
export interface ScopeMatches {
  /** Rules whose targets cover the image: it was probably mapped already. */
  readonly producers: readonly Rule[];
  readonly sources: readonly Rule[];
}

/** Something worked out before any pod context: usable, or the reason it is not. */
type Prepared<T> = { readonly ok: false; readonly invalid: Reason } | ({ readonly ok: true } & T);

/** One candidate of a rule for one image. */
export type PreparedCandidate = Prepared<{
  readonly ref: ImageReference;
  /** formatReference(ref): the name probes ask about. */
  readonly name: string;
  readonly request: ProbeRequest;
  /** The image the pod gets when this candidate is chosen (after cache routing). */
  readonly image: string;
  /** CacheRouted, or TargetInvalid when routing would not give a valid reference. */
  readonly routing: Reason | undefined;
}>;

/** What a rule makes of one image, whatever the pod. */
export interface PreparedRule {
  readonly rule: MatchedRule;
  readonly matched: Reason;
  readonly mutableKept: Reason | undefined;
  readonly candidates: readonly PreparedCandidate[];
}

/** What a snapshot can say about an image before any pod context. */
export type PreparedImage = Prepared<{
  readonly ref: ImageReference;
  /** formatReference(ref). */
  readonly formatted: string;
  readonly tag: string | undefined;
  readonly cacheRouted: boolean;
  readonly keys: readonly string[];
}>;

export type ReadyImage = Extract<PreparedImage, { ok: true }>;

/**
 * Where decideImage gets what does not depend on the pod. Each function is a pure function of its
 * arguments, so an implementation may remember results per snapshot and settings without changing any
 * decision.
 */
export interface Preparation {
  image(snapshot: MapSnapshot, settings: DecisionSettings, input: string): PreparedImage;
  /** The rules the image's keys reach in a namespace's scopes (undefined: cluster scope only). */
  matches(snapshot: MapSnapshot, image: ReadyImage, namespace: string | undefined): ScopeMatches;
  rule(snapshot: MapSnapshot, settings: DecisionSettings, image: ReadyImage, rule: Rule): PreparedRule;
}
