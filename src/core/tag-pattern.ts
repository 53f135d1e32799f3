// mutableTags are regular expressions over tags. Tags are at most 128 characters, but a pattern with
// nested repetition can still take exponential time on them, so such patterns are refused up front.

/** A message saying what is wrong with the pattern, or undefined when it is usable. */
export function checkTagPattern(pattern: string): string | undefined {
  try {
    new RegExp(pattern, 'u');
  } catch (err) {
    return `is not a valid regular expression (${(err as Error).message.replace(/^Invalid regular expression: /, '')})`;
  }
  if (hasNestedRepetition(pattern)) {
    return 'has a repeated group that itself repeats (like "(a+)+"), which can take exponential time; flatten it';
  }
  return undefined;
}

/** Compiles patterns anchored at both ends: "latest" must not match "latest-1.2". */
export function compileTagPatterns(patterns: readonly string[]): RegExp | undefined {
  if (patterns.length === 0) return undefined;
  return new RegExp(`^(?:${patterns.map((p) => `(?:${p})`).join('|')})$`, 'u');
}

const isQuantifier = (c: string | undefined): boolean => c === '*' || c === '+' || c === '?' || c === '{';

/** Whether a group containing a quantifier is itself quantified. A linear scan over the pattern. */
function hasNestedRepetition(pattern: string): boolean {
  // For each open group: does it contain a quantifier (anywhere inside, including nested groups)?
  const stack: boolean[] = [];
  let inClass = false;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '\\') {
      i++;
      if (isQuantifier(pattern[i + 1]) && stack.length > 0) stack[stack.length - 1] = true;
      continue;
    }
    if (inClass) {
      if (c === ']') {
        inClass = false;
        if (isQuantifier(pattern[i + 1]) && stack.length > 0) stack[stack.length - 1] = true;
      }
      continue;
    }
    if (c === '[') inClass = true;
    else if (c === '(') {
      stack.push(false);
      // Group modifiers "(?:", "(?=", "(?<name>" are not quantifiers.
      if (pattern[i + 1] === '?') {
        i++;
        if (pattern[i + 1] === '<' && pattern[i + 2] !== '=' && pattern[i + 2] !== '!') {
          const close = pattern.indexOf('>', i);
          i = close === -1 ? pattern.length : close;
        } else i++;
      }
    } else if (c === ')') {
      const innerRepeats = stack.pop() ?? false;
      const quantified = isQuantifier(pattern[i + 1]) && pattern[i + 1] !== '?';
      if (innerRepeats && quantified) return true;
      if ((innerRepeats || quantified) && stack.length > 0) stack[stack.length - 1] = true;
    } else if (isQuantifier(c) && stack.length > 0) stack[stack.length - 1] = true;
  }
  return false;
}
