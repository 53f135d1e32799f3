import type { CoreErrorCode } from '../errors.ts';

/** Stable codes for every way an image reference can be wrong (listed in core's catalogue, errors.ts). */
export type ReferenceErrorCode = Extract<CoreErrorCode, `REF_${string}`>;

export interface InvalidReference {
  readonly code: ReferenceErrorCode;
  /** What is wrong, without the input itself (callers quote the input where they show it). */
  readonly message: string;
}

/** One line for a person: the input, and what is wrong with it. */
export function describeReferenceError(input: string, error: InvalidReference): string {
  return `${JSON.stringify(input)} is not a valid image reference: ${error.message}`;
}
