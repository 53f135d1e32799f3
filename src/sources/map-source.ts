// Where the webhook's maps come from. Admissions read `current()`, an in-memory snapshot that is
// swapped whole when maps change; no admission ever calls the Kubernetes API or reads a file.
// Implementations: a config file (serve/file-source.ts: the embedded default or --config) and the
// cluster controller (controller/map-source.ts); the webhook reads it. It lives here, below both, as
// the existence source (resolve.ts) does: the two things a decision is made against.

import type { Analysis, MapSnapshot } from '../core/mapping/index.ts';

export interface MapState {
  /** The index admissions decide against (accepted maps only). */
  readonly snapshot: MapSnapshot;
  /** The verdicts that produced it: the validating webhook and `/readyz` read these. */
  readonly analysis: Analysis;
  /** Increments on every swap; logged with decisions so a decision can be traced to a map set. */
  readonly version: number;
}

export interface MapSource {
  /** The maps in force, or undefined until the first complete load (then the server is not ready). */
  current(): MapState | undefined;
  /** Stops watches and timers. */
  close(): Promise<void>;
}
