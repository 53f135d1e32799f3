// The mirror layer's codes in one list, and its error on core's PullmapError. The codes have no layer
// prefix: pullmap_fill_failures_total's `code` label and the map status messages show them as they are.
import { type ErrorCatalogue, PullmapError } from '../core/errors.ts';
import type { RegistryError } from '../registry/errors.ts';

export const COPY_ERRORS = {
  SOURCE_FAILED: 'the source registry could not give the image (missing, refused, unreachable)',
  TARGET_REFUSED: 'the target refused the push (credentials, permissions, method): retrying will not help',
  TARGET_FAILED: 'the target failed (5xx, network, timeout) after the retries',
  UNSUPPORTED: 'a manifest that cannot be copied (schema 1, malformed)',
  NO_PLATFORM: "the platform filter selects none of the index's manifests",
  CONTENT_MISMATCH: "a blob's bytes do not match its descriptor (size or digest)",
  CANCELLED: 'the copy was cancelled (shutdown, leadership lost)',
  CREDENTIALS_UNREADABLE:
    "a Secret the copy needs (fill.secret, an ImageMap's pods' imagePullSecrets) cannot be read or used",
} as const satisfies ErrorCatalogue;

export type CopyErrorCode = keyof typeof COPY_ERRORS;

/** A failed copy as copyImage returns it. */
export interface CopyError {
  readonly code: CopyErrorCode;
  readonly message: string;
  /** The registry failure behind SOURCE_FAILED, TARGET_REFUSED or TARGET_FAILED. */
  readonly registry?: RegistryError | undefined;
}

/** Thrown inside a copy, returned as its CopyError at the copy's boundary. */
export class CopyFailure extends PullmapError<CopyErrorCode> {
  override readonly name = 'CopyFailure';
  readonly error: CopyError;

  constructor(error: CopyError) {
    super(error.code, error.message);
    this.error = error;
  }
}
