// Reading JSON of unknown shape (admission reviews, Kubernetes objects, docker config files).

/** A JSON object: what isObject narrows to. */
export type Json = Record<string, unknown>;

/** Whether a parsed JSON value is an object (not null, not an array). */
export const isObject = (v: unknown): v is Json => v !== null && typeof v === 'object' && !Array.isArray(v);
