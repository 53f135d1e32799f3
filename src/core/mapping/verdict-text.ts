// The words for a verdict, shared by `pullmap check`, the controller's Ready condition and the
// validating webhook, so that all three say the same thing about the same map.

import type { MapVerdict } from './consistency.ts';

/** One line per finding: "spec.mappings[1].from: ...". */
export function findingLines(v: MapVerdict): string[] {
  return v.findings.map((f) => `${f.path}: ${f.message}`);
}

/** What a rejected map still serves, or undefined when nothing needs saying. */
export function servingNote(v: MapVerdict): string | undefined {
  if (v.verdict === 'Accepted') return undefined;
  return v.serving === 'previous'
    ? `generation ${v.servingGeneration} keeps serving`
    : 'no generation of this map is serving';
}

/** The whole verdict as one message (a condition message, an admission denial). */
export function verdictMessage(v: MapVerdict): string {
  if (v.verdict === 'Accepted') return `accepted; generation ${v.servingGeneration ?? '?'} is serving`;
  const note = servingNote(v);
  return `${findingLines(v).join('; ')}${note ? ` (${note})` : ''}`;
}
