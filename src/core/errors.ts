// One error shape for every layer: a stable `code` callers branch on (never the message, which is for
// people), the ES2022 `cause` for what went wrong underneath, and one result type for functions that
// return their failure instead of throwing. Each layer lists its codes in one catalogue, as fastify's
// lib/errors.js does: core's is here, kube's in src/kube/errors.ts.

/** A layer's codes, each with what it means for the person reading a log or an answer. */
export type ErrorCatalogue = Readonly<Record<string, string>>;

export class PullmapError<Code extends string = string> extends Error {
  override readonly name: string = 'PullmapError';
  readonly code: Code;

  constructor(code: Code, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
  }
}

/** Whether `err` is a PullmapError with one of `codes` (any code when none is given). */
export function hasCode<Code extends string>(err: unknown, ...codes: Code[]): err is PullmapError<Code> {
  return err instanceof PullmapError && (codes.length === 0 || codes.includes(err.code as Code));
}

/** A value, or the reason there is none. */
export type Result<T, E = PullmapError> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly error: E };

export const ok = <T>(value: T): Result<T, never> => ({ ok: true, value });
export const fail = <E>(error: E): Result<never, E> => ({ ok: false, error });

/** The message of anything thrown, for a log line (never to branch on). */
export const messageOf = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/** Core's codes: every way an image reference can be wrong (src/core/reference returns these). */
export const CORE_ERRORS = {
  REF_EMPTY: 'the reference is empty',
  REF_WHITESPACE: 'the reference contains whitespace',
  REF_HOST_INVALID: 'the registry host is not a valid host name or address',
  REF_PORT_INVALID: 'the registry port is missing or not a number',
  REF_PATH_INVALID: 'a repository path component breaks the distribution grammar',
  REF_PATH_UPPERCASE: 'the repository has upper-case letters',
  REF_PATH_TOO_LONG: 'the repository name is longer than 255 characters',
  REF_IMAGE_ID: 'a bare 64-hex image id, not a reference',
  REF_TAG_INVALID: 'the tag breaks the tag grammar',
  REF_DIGEST_INVALID: 'the digest is malformed',
  REF_DIGEST_UNSUPPORTED: 'the digest algorithm is not supported',
} as const satisfies ErrorCatalogue;

export type CoreErrorCode = keyof typeof CORE_ERRORS;
