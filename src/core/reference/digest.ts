// Which digests pullmap can verify: the one list the reference grammar, the registry client and the
// cache's store and hashing all read, so a reference that parses can also be fetched and verified.

/** The registered OCI digest algorithms (node:crypto names them the same), with their hex length. */
export const DIGEST_ALGORITHMS = { sha256: 64, sha384: 96, sha512: 128 } as const;
export type DigestAlgorithm = keyof typeof DIGEST_ALGORITHMS;

/** A digest pullmap can verify: a supported algorithm and exactly its length in lowercase hex. */
export const DIGEST: RegExp = new RegExp(
  `^(?:${Object.entries(DIGEST_ALGORITHMS)
    .map(([algorithm, hex]) => `${algorithm}:[a-f0-9]{${hex}}`)
    .join('|')})$`,
);

/**
 * The hash a digest names ("sha384:…" → "sha384"). Callers check DIGEST first; for a digest it does
 * not match this says sha256, whose result then cannot equal the digest, so verification fails.
 */
export function digestAlgorithm(digest: string): DigestAlgorithm {
  const colon = digest.indexOf(':');
  const algorithm = colon < 0 ? '' : digest.slice(0, colon);
  return Object.hasOwn(DIGEST_ALGORITHMS, algorithm) ? (algorithm as DigestAlgorithm) : 'sha256';
}
