// Text from outside (image strings, names, map fields, registry answers) made safe to print on a terminal
// or in a kubectl warning: control characters (C0, DEL, C1) could move the cursor, retitle the window or
// hide text, and bidi and zero-width characters could make text read differently from its bytes (Trojan
// Source, CVE-2021-42574). Each is written as \u{XXXX} so the reader sees exactly which character was there.

// C0 (tab and newline included: one printed field must stay on one line), DEL, C1, the Arabic letter mark,
// zero-width characters and bidi marks, the line and paragraph separators, bidi embeddings, overrides and
// isolates, word joiners, and the BOM.
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]/;
const UNPRINTABLE_ALL = new RegExp(UNPRINTABLE.source, 'g');

const escapeChar = (c: string): string =>
  `\\u{${c.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}}`;

/** `text` with every control, bidi and zero-width character written as \u{XXXX}; the same string when clean. */
export function printable(text: string): string {
  return UNPRINTABLE.test(text) ? text.replace(UNPRINTABLE_ALL, escapeChar) : text;
}
