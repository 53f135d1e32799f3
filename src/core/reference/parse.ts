import type { InvalidReference } from './errors.ts';
import {
  checkDigest,
  checkDomainAndPort,
  checkRemoteName,
  checkTag,
  hasUpper,
  isImageId,
  REPOSITORY_MAX_LENGTH,
  showChar,
} from './grammar.ts';
import { canonicalRegistry, canonicalRepository, DEFAULT_REGISTRY, looksLikeRegistry } from './normalize.ts';

/** A parsed, normalised image reference. Fields are always present (undefined when absent). */
export interface ImageReference {
  /** Canonical registry host, with port when given: "docker.io", "localhost:5000", "[::1]:5000". */
  readonly registry: string;
  /** Repository path below the registry: "library/nginx". */
  readonly repository: string;
  /** The tag as written, or undefined. */
  readonly tag: string | undefined;
  /** "sha256:<hex>", or undefined. */
  readonly digest: string | undefined;
}

type ParseResult =
  | { readonly ok: true; readonly ref: ImageReference }
  | { readonly ok: false; readonly error: InvalidReference };

const failed = (error: InvalidReference): ParseResult => ({ ok: false, error });

/**
 * Parses an image reference the way Docker, containerd and the kubelet read `image:` fields
 * (distribution/reference's ParseNormalizedNamed): familiar short names expand to fully qualified ones,
 * and tag and digest are both kept when both are given. Linear in the input length.
 */
export function parseReference(input: string): ParseResult {
  if (input.length === 0) return failed({ code: 'REF_EMPTY', message: 'image reference is empty' });
  const result = parseNonEmpty(input);
  if (result.ok) return result;
  // Spaces and control characters fail some production anyway; say so plainly, off the hot path.
  for (let i = 0; i < input.length; i++) {
    const c = input.charCodeAt(i);
    if (c <= 0x20 || c === 0x7f) {
      return failed({
        code: 'REF_WHITESPACE',
        message: `contains ${showChar(input, i)} at offset ${i}; remove spaces and control characters`,
      });
    }
  }
  return result;
}

function parseNonEmpty(input: string): ParseResult {
  if (isImageId(input)) {
    return failed({
      code: 'REF_IMAGE_ID',
      message:
        'a 64-character hex string is an image ID, not a repository name; add a repository name or "@sha256:"',
    });
  }

  // name [":" tag] ["@" digest]: the digest starts at the first "@"; the tag is after a ":" that
  // follows the last "/" (an earlier ":" belongs to the registry's port).
  let rest = input;
  let digest: string | undefined;
  const at = input.indexOf('@');
  if (at !== -1) {
    digest = input.slice(at + 1);
    rest = input.slice(0, at);
    const failure = checkDigest(digest);
    if (failure) return failed(failure);
    if (rest.length === 0)
      return failed({ code: 'REF_PATH_INVALID', message: 'a digest needs a repository name before the "@"' });
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/') && !rest.includes(']', colon)) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    const failure = checkTag(tag);
    if (failure) return failed(failure);
  }

  let registry = DEFAULT_REGISTRY;
  let path = rest;
  const slash = rest.indexOf('/');
  const first = slash === -1 ? rest : rest.slice(0, slash);
  if (slash !== -1 && looksLikeRegistry(first, hasUpper(first))) {
    const failure = checkDomainAndPort(first);
    if (failure) return failed(failure);
    registry = canonicalRegistry(first);
    path = rest.slice(slash + 1);
  } else if (slash === -1 && (first.includes(':') || first.startsWith('['))) {
    return failed({
      code: 'REF_PATH_INVALID',
      message: `"${first}" looks like a registry, but no repository path follows it`,
    });
  }
  const failure = checkRemoteName(path);
  if (failure) return failed(failure);
  const repository = canonicalRepository(registry, path);
  if (repository.length > REPOSITORY_MAX_LENGTH) {
    return failed({
      code: 'REF_PATH_TOO_LONG',
      message: `repository path is ${repository.length} characters long; at most ${REPOSITORY_MAX_LENGTH} are allowed (registry not counted)`,
    });
  }
  return { ok: true, ref: { registry, repository, tag, digest } };
}

/** The tag used for matching: the written tag, else "latest" unless a digest pins the image. */
export function effectiveTag(ref: ImageReference): string | undefined {
  return ref.tag ?? (ref.digest === undefined ? 'latest' : undefined);
}
