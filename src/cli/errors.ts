// The CLI's codes in one list, and its error classes on core's PullmapError: each is the operator's
// input or flags, printed as one "pullmap: ..." line with exit code 2 (never a stack trace).
import { type ErrorCatalogue, PullmapError } from '../core/errors.ts';

export const CLI_ERRORS = {
  CLI_USAGE: 'the flags or input cannot be used; the message names the flag and the fix',
  CLI_INPUT_TOO_LARGE: 'an input is over --max-input-bytes',
  CLI_POD_INPUT: 'explain --pod cannot use the pod or the cluster it names',
} as const satisfies ErrorCatalogue;

export type CliErrorCode = keyof typeof CLI_ERRORS;

/** The operator's input or flags cannot be used (exit code 2). */
export class UsageError extends PullmapError<'CLI_USAGE' | 'CLI_INPUT_TOO_LARGE'> {
  override readonly name: string = 'UsageError';

  constructor(message: string, options?: ErrorOptions, code: UsageError['code'] = 'CLI_USAGE') {
    super(code, message, options);
  }
}

/** An input over the limit (its own class so a caller can say which limit). */
export class InputTooLarge extends UsageError {
  override readonly name = 'InputTooLarge';

  constructor(message: string) {
    super(message, undefined, 'CLI_INPUT_TOO_LARGE');
  }
}

/** Input explain --pod cannot use: printed as one line, exit 2 (like a usage error). */
export class PodInputError extends PullmapError<'CLI_POD_INPUT'> {
  override readonly name = 'PodInputError';

  constructor(message: string, options?: ErrorOptions) {
    super('CLI_POD_INPUT', message, options);
  }
}
