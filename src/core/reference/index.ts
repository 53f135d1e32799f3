export { DIGEST, DIGEST_ALGORITHMS, digestAlgorithm } from './digest.ts';
export { embedRegistry, unembedRegistry } from './embed.ts';
export { describeReferenceError, type ReferenceErrorCode } from './errors.ts';
export { formatFamiliar, formatName, formatNormalized, formatReference } from './format.ts';
export { checkDigest, checkDomainAndPort, checkTag } from './grammar.ts';
export {
  canonicalRegistry,
  DEFAULT_REGISTRY,
  DEFAULT_TAG,
  DOCKER_HUB_API_HOST,
  foldDockerHubHost,
  looksLikeRegistry,
} from './normalize.ts';
export { effectiveTag, type ImageReference, parseReference } from './parse.ts';
