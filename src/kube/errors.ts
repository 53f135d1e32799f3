// The kube layer's error codes in one list, and its error classes on core's PullmapError.

import { type ErrorCatalogue, PullmapError } from '../core/errors.ts';

export const KUBE_ERRORS = {
  KUBE_HTTP: 'the API server answered with an error status (see status and reason)',
  KUBE_TIMEOUT: 'a request outlived its deadline, or a watch went quiet',
  KUBE_UNREACHABLE: 'the API server could not be reached (the cause says why)',
  KUBE_TOO_LARGE: 'an answer or a watch line was over the size cap',
  KUBE_BAD_RESPONSE: 'an answer was not the JSON expected',
  KUBE_CONFIG: 'the kubeconfig or service account names no usable cluster and credentials',
} as const satisfies ErrorCatalogue;

export type KubeErrorCode = keyof typeof KUBE_ERRORS;

/** A failed API request or watch. */
export class KubeApiError extends PullmapError<Exclude<KubeErrorCode, 'KUBE_CONFIG'>> {
  override readonly name = 'KubeApiError';
  /** HTTP status, or the `code` of a Status object in a watch stream. */
  readonly status: number | undefined;
  /** The Status object's reason, like "Conflict", "NotFound", "Expired". */
  readonly reason: string | undefined;

  constructor(
    code: KubeApiError['code'],
    message: string,
    details: { status?: number | undefined; reason?: string | undefined; cause?: unknown } = {},
  ) {
    super(code, message, details.cause === undefined ? undefined : { cause: details.cause });
    this.status = details.status;
    this.reason = details.reason;
  }
}

/** Credentials that cannot be used: the message names the file and field and the fix. */
export class KubeConfigError extends PullmapError<'KUBE_CONFIG'> {
  override readonly name = 'KubeConfigError';

  constructor(message: string, options?: ErrorOptions) {
    super('KUBE_CONFIG', message, options);
  }
}

/** Whether `err` is the API server's answer with this HTTP status. */
export const isStatus = (err: unknown, status: number): boolean =>
  err instanceof KubeApiError && err.code === 'KUBE_HTTP' && err.status === status;
