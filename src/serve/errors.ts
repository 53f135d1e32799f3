// The serve layer's codes in one list (the webhook server's refusals, the map file, the review
// deadline), and its error classes on core's PullmapError. http.ts's answerOf turns them into answers.
import { type ErrorCatalogue, PullmapError } from '../core/errors.ts';

export const SERVE_ERRORS = {
  SERVE_CONFIG: 'the map file cannot be used (unreadable, not a regular file, too large, or maps rejected)',
  SERVE_BAD_REQUEST: 'the request body could not be read or is not an AdmissionReview',
  SERVE_NOT_FOUND: 'no such path on this server',
  SERVE_METHOD_NOT_ALLOWED: 'the path does not accept this method',
  SERVE_UNSUPPORTED_MEDIA_TYPE: 'a review must be sent as application/json',
  SERVE_TOO_LARGE: 'the review body is over --max-request-bytes',
  SERVE_TOO_COMPLEX: 'the review body has more JSON values, or nests deeper, than its size allows',
  SERVE_BUSY: 'the review bodies held across requests are at their byte budget',
  SERVE_DEADLINE: 'no decision within --deadline (registries did not answer in time)',
} as const satisfies ErrorCatalogue;

export type ServeErrorCode = keyof typeof SERVE_ERRORS;

/** A map file that cannot be taken; `findings` lists each rejected map's problems, one a line. */
export class ConfigError extends PullmapError<'SERVE_CONFIG'> {
  override readonly name = 'ConfigError';
  readonly findings: readonly string[] | undefined;

  constructor(message: string, options: { findings?: readonly string[]; cause?: unknown } = {}) {
    super('SERVE_CONFIG', message, options.cause === undefined ? undefined : { cause: options.cause });
    this.findings = options.findings;
  }
}

/** A request the webhook server refuses; http.ts's answerOf gives its status. */
export class HttpError extends PullmapError<Exclude<ServeErrorCode, 'SERVE_CONFIG' | 'SERVE_DEADLINE'>> {
  override readonly name: string = 'HttpError';
}

/** A review's decision did not finish within the deadline. */
export class DeadlineExceeded extends PullmapError<'SERVE_DEADLINE'> {
  override readonly name = 'DeadlineExceeded';

  constructor(deadlineMs: number) {
    super('SERVE_DEADLINE', `no decision within ${deadlineMs} ms`);
  }
}
