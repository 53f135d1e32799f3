export { DIGEST, DIGEST_ALGORITHMS, type DigestAlgorithm, digestAlgorithm } from './digest.ts';
export { embedRegistry, unembedRegistry } from './embed.ts';
export { describeReferenceError, type InvalidReference, type ReferenceErrorCode } from './errors.ts';
export { formatFamiliar, formatName, formatNormalized, formatReference } from './format.ts';
export {
  checkDigest,
  checkDomainAndPort,
  checkTag,
  REPOSITORY_MAX_LENGTH,
  TAG_MAX_LENGTH,
} from './grammar.ts';
export {
  canonicalRegistry,
  DEFAULT_REGISTRY,
  DEFAULT_TAG,
  DOCKER_HUB_API_HOST,
  foldDockerHubHost,
  looksLikeRegistry,
} from './normalize.ts';
export { effectiveTag, type ImageReference, type ParseResult, parseReference } from './parse.ts';
