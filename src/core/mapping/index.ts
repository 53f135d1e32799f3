export { cacheUpstreamFindings, parseCacheUpstreams, type UpstreamFinding } from './cache-upstreams.ts';
export { type Analysis, analyzeMaps, type MapInput, type MapVerdict } from './consistency.ts';
export {
  type DecisionContext,
  decideImage,
  type FillPlan,
  fillTarget,
  type ImageDecision,
  prepareFresh,
} from './decide.ts';
export {
  configFileNames,
  type LoadedMaps,
  loadMapsFromText,
  loadMapsFromTexts,
  type MapText,
} from './load.ts';
export type { Preparation, PreparedImage, PreparedRule, ReadyImage, ScopeMatches } from './prepared.ts';
export { type CompiledMap, mapRefName, podPullSecretName, type Rule } from './rule.ts';
export { type Labels, selectorLabelKeys, selects } from './selector.ts';
export { DEFAULT_DECISION_SETTINGS, type DecisionSettings, decisionSettings } from './settings.ts';
export { buildSnapshot, type MapSnapshot, updateSnapshot } from './snapshot.ts';
export { findingLines, servingNote, verdictMessage } from './verdict-text.ts';
