// Every regular expression a user writes (map mutableTags, the cache's refresh rules) is matched by
// re2js, a pure JavaScript port of RE2: time linear in the text, whatever the pattern, so no pattern can
// freeze the webhook the way "(a|a)*" freezes a backtracking engine. RE2 syntax has no backreferences
// and no lookaround; those are refused with the reason. docs/decisions.md says why re2js.

import { RE2JS, RE2JSException } from 're2js';

/**
 * Bounds on the compiled size ("steps": RE2 program instructions). A counted repetition copies what it
 * repeats, so a 256-character pattern can compile to 36,000 steps, taking 0.2 s to compile and tens of
 * milliseconds per tag; real tag patterns take a few dozen.
 */
export const PATTERN_LIMITS = { steps: 1000, listSteps: 4000 } as const;

/** Patterns matched against whole strings. */
export interface WholeMatch {
  /** Whether one of the patterns matches all of `text` (not a part of it). */
  matches(text: string): boolean;
}

// Most patterns are plain tags ("latest", "stable", "1\.27"): those are compared as strings, so the
// engine is not even compiled for them (`pullmap explain` cold start: docs/decisions.md).
const LITERAL = /^(?:[A-Za-z0-9_-]|\\\.)+$/;
const literalOf = (pattern: string): string | undefined =>
  LITERAL.test(pattern) ? pattern.replaceAll('\\.', '.') : undefined;

/** A message saying what is wrong with the pattern, or undefined when it is usable. */
export function checkTagPattern(pattern: string): string | undefined {
  if (literalOf(pattern) !== undefined) return undefined;
  // Estimated before compiling, so a huge pattern is refused without paying for its compilation.
  const estimate = estimateSteps(pattern);
  if (estimate > PATTERN_LIMITS.steps) return tooLarge(`about ${estimate}`);
  let compiled: RE2JS;
  try {
    compiled = RE2JS.compile(pattern);
  } catch (err) {
    return syntaxProblem(err);
  }
  const steps = compiled.programSize();
  return steps > PATTERN_LIMITS.steps ? tooLarge(String(steps)) : undefined;
}

/** For a whole list of patterns: a message when together they are too large, else undefined. */
export function checkTagPatternList(patterns: readonly string[]): string | undefined {
  const total = patterns.reduce((n, p) => n + estimateSteps(p), 0);
  return total > PATTERN_LIMITS.listSteps
    ? `the patterns together compile to about ${total} steps; at most ${PATTERN_LIMITS.listSteps} are allowed: merge or shorten them`
    : undefined;
}

/** Compiles valid patterns into one matcher of whole strings: "latest" does not match "latest-1.2". */
export function compileTagPatterns(patterns: readonly string[]): WholeMatch | undefined {
  if (patterns.length === 0) return undefined;
  const literals = new Set<string>();
  const others: string[] = [];
  for (const p of patterns) {
    const literal = literalOf(p);
    if (literal === undefined) others.push(p);
    else literals.add(literal);
  }
  if (others.length === 0) return { matches: (text) => literals.has(text) };
  // Each pattern in its own group: flags such as (?i) stay inside it, and each was checked alone.
  const compiled = RE2JS.compile(others.map((p) => `(?:${p})`).join('|'));
  return { matches: (text) => literals.has(text) || compiled.matches(text) };
}

const tooLarge = (steps: string): string =>
  `compiles to ${steps} steps; at most ${PATTERN_LIMITS.steps} are allowed (a counted repetition such as {100} copies what it repeats): use smaller counts`;

function syntaxProblem(err: unknown): string {
  if (!(err instanceof RE2JSException)) throw err;
  const e = err as RE2JSException & { getDescription?: () => string; getPattern?: () => string | null };
  const description = e.getDescription?.() ?? e.message;
  const at = e.getPattern?.() ?? '';
  const linear = 'patterns are matched by RE2, which runs in linear time and has no such construct';
  const lookaround = /^\(\?<?[=!]/.exec(at);
  if (lookaround)
    return `uses the lookaround ${lookaround[0]} ...): ${linear}; rewrite it to match the text itself`;
  if (/^\\([1-9]|k)/.test(at))
    return `uses the backreference ${at.slice(0, 2)}: ${linear}; spell the repeated text out`;
  return `is not a valid RE2 regular expression: ${description}${at ? ` at ${JSON.stringify(at.length > 40 ? `${at.slice(0, 37)}...` : at)}` : ''}`;
}

const COUNT = /^\{(\d{1,9})(,(\d{0,9}))?\}/;

/**
 * An estimate of the compiled size, read from the text: one step per atom, a group is the sum of its
 * parts, and {n,m} multiplies what it follows. It only guards compilation (RE2JS parses the pattern
 * properly afterwards, and its real size is checked too).
 */
function estimateSteps(pattern: string): number {
  const frames: Array<{ sum: number; last: number }> = [{ sum: 0, last: 0 }];
  const top = () => frames[frames.length - 1] as { sum: number; last: number };
  const atom = (weight: number) => {
    const f = top();
    f.sum += weight;
    f.last = weight;
  };
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '\\') {
      const next = pattern[i + 1];
      if (next === 'Q') {
        const end = pattern.indexOf('\\E', i + 2);
        const literal = (end < 0 ? pattern.length : end) - (i + 2);
        i = end < 0 ? pattern.length : end + 1;
        atom(Math.max(literal, 1));
        top().last = 1; // a quantifier after \E repeats the last character only
        continue;
      }
      i++;
      if ((next === 'p' || next === 'P' || next === 'x') && pattern[i + 1] === '{') {
        const close = pattern.indexOf('}', i);
        i = close < 0 ? pattern.length : close;
      }
      atom(1);
    } else if (c === '[') {
      i++;
      if (pattern[i] === '^') i++;
      if (pattern[i] === ']') i++;
      while (i < pattern.length && pattern[i] !== ']') {
        if (pattern[i] === '\\') i++;
        else if (pattern[i] === '[' && pattern[i + 1] === ':') {
          const close = pattern.indexOf(':]', i + 2);
          if (close >= 0) i = close + 1;
        }
        i++;
      }
      atom(1);
    } else if (c === '(') {
      frames.push({ sum: 0, last: 0 });
    } else if (c === ')') {
      const inner = frames.length > 1 ? (frames.pop() as { sum: number }).sum : 0;
      atom(inner + 2);
    } else if (c === '{' && COUNT.test(pattern.slice(i, i + 24))) {
      const m = COUNT.exec(pattern.slice(i, i + 24)) as RegExpExecArray;
      const low = Number(m[1]);
      // {n,m}: n copies, then m-n optional ones costing two steps each; {n,}: n copies and a loop.
      const copies =
        m[2] === undefined ? low : m[3] === '' ? low + 1 : low + 2 * Math.max(Number(m[3]) - low, 0);
      const f = top();
      f.sum += f.last * (Math.max(copies, 1) - 1);
      f.last *= Math.max(copies, 1);
      i += m[0].length - 1;
    } else atom(1);
  }
  return frames.reduce((n, f) => n + f.sum, 0);
}
