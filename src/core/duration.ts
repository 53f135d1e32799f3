// Go-style durations ("90s", "10m", "1h30m", "500ms"), the spelling Kubernetes objects use.

const UNIT_MS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
/** The longest duration accepted: 366 days. */
const MAX_DURATION_MS = 366 * 24 * 3_600_000;
export const MAX_DURATION_TEXT = '8784h (366 days)';

/**
 * Milliseconds, or a message saying what is wrong (starting with the text); `tooLarge` tells a
 * well-formed duration over the maximum from text that is no duration at all.
 */
export function parseDuration(
  text: string,
): { ok: true; ms: number } | { ok: false; message: string; tooLarge: boolean } {
  const bad = {
    ok: false as const,
    message: `${JSON.stringify(text)} is not a duration; write it like "90s", "10m" or "1h30m"`,
    tooLarge: false,
  };
  if (text === '0') return { ok: true, ms: 0 };
  let i = 0;
  let total = 0;
  if (text.length === 0 || text.length > 32) return bad;
  while (i < text.length) {
    const numStart = i;
    i = skip(text, i, isDigitOrDot);
    if (i === numStart) return bad;
    const value = Number(text.slice(numStart, i));
    const unitStart = i;
    i = skip(text, i, isLowercase);
    const unit = UNIT_MS[text.slice(unitStart, i)];
    if (!Number.isFinite(value) || unit === undefined) return bad;
    total += value * unit;
  }
  if (total > MAX_DURATION_MS)
    return {
      ok: false,
      message: `${JSON.stringify(text)} is too large; the maximum is ${MAX_DURATION_TEXT}`,
      tooLarge: true,
    };
  return { ok: true, ms: Math.round(total) };
}

const isDigitOrDot = (c: number): boolean => (c >= 0x30 && c <= 0x39) || c === 0x2e;
const isLowercase = (c: number): boolean => c >= 0x61 && c <= 0x7a;

/** The index after the run of characters from `i` that `accepts` takes. */
function skip(text: string, i: number, accepts: (c: number) => boolean): number {
  let j = i;
  while (j < text.length && accepts(text.charCodeAt(j))) j++;
  return j;
}
