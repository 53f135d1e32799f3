// Text from users and registries (image strings, names, messages) on its way to a terminal: characters
// a terminal or text renderer acts on instead of showing are escaped, so an image string cannot recolour,
// retitle or rewrite the screen (escape sequences) or make text read differently from its bytes (bidi).

/**
 * C0 and C1 controls and DEL (escape sequences, carriage return, backspace), the bidi marks, embeddings,
 * overrides and isolates, zero-width characters, line and paragraph separators, and the BOM.
 */
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]/;
const UNPRINTABLE_ALL = new RegExp(UNPRINTABLE.source, 'g');

function escapeChar(char: string): string {
  const code = char.charCodeAt(0);
  return code <= 0xff
    ? `\\x${code.toString(16).padStart(2, '0')}`
    : `\\u${code.toString(16).padStart(4, '0')}`;
}

/** `text` with every unprintable character written as `\xHH` or `\uHHHH`; unchanged (same string) when clean. */
export function printable(text: string): string {
  return UNPRINTABLE.test(text) ? text.replace(UNPRINTABLE_ALL, escapeChar) : text;
}
