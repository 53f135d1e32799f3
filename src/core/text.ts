// Text from outside (image strings, map fields, registry answers) made safe to print on a terminal:
// control characters (C0, DEL, C1) could move the cursor, retitle the window or hide text, and bidi
// controls could reorder what is shown (Trojan Source, CVE-2021-42574). Each is written as \u{XXXX}
// so the reader sees exactly which character was there.

// C0 (tab and newline included: one printed field must stay on one line), DEL, C1, the bidi
// embeddings, overrides, isolates and marks, and the line and paragraph separators.
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/gu;

/** `text` with every control and bidi character written as \u{XXXX}; the same string when it has none. */
export function printable(text: string): string {
  return text.replace(
    UNPRINTABLE,
    (c) => `\\u{${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}}`,
  );
}
