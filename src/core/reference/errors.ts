/** Stable codes for every way an image reference can be wrong; callers branch on these, never on text. */
export type ReferenceErrorCode =
  | 'REF_EMPTY'
  | 'REF_WHITESPACE'
  | 'REF_HOST_INVALID'
  | 'REF_PORT_INVALID'
  | 'REF_PATH_INVALID'
  | 'REF_PATH_UPPERCASE'
  | 'REF_PATH_TOO_LONG'
  | 'REF_IMAGE_ID'
  | 'REF_TAG_INVALID'
  | 'REF_DIGEST_INVALID'
  | 'REF_DIGEST_UNSUPPORTED';

export interface InvalidReference {
  readonly code: ReferenceErrorCode;
  /** What is wrong, without the input itself (callers quote the input where they show it). */
  readonly message: string;
}

/** One line for a person: the input, and what is wrong with it. */
export function describeReferenceError(input: string, error: InvalidReference): string {
  return `${JSON.stringify(input)} is not a valid image reference: ${error.message}`;
}
