// printable(): what a terminal would act on is escaped; everything else, non-ASCII included, is kept.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { printable } from '../../src/core/text.ts';

describe('printable', () => {
  it('escapes escape sequences, controls and bidi characters', () => {
    assert.equal(printable('a\u001b[31mred\u001b[0m'), 'a\\u{001B}[31mred\\u{001B}[0m');
    assert.equal(printable('title\u001b]0;pwned\u0007'), 'title\\u{001B}]0;pwned\\u{0007}');
    assert.equal(
      printable('line\r\nnext\ttab\u007f\u009b'),
      'line\\u{000D}\\u{000A}next\\u{0009}tab\\u{007F}\\u{009B}',
    );
    assert.equal(printable('abc\u202egnp.exe'), 'abc\\u{202E}gnp.exe');
    for (const c of [
      '\u061c',
      '\u200b',
      '\u200e',
      '\u200f',
      '\u2028',
      '\u202a',
      '\u2066',
      '\u2069',
      '\ufeff',
    ])
      assert.equal(printable(c), `\\u{${c.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}}`);
  });

  it('keeps printable text as it is, the same string', () => {
    const clean = 'registry.example.com/équipe/app:v1 — 日本 🐳';
    assert.equal(printable(clean), clean);
  });
});
