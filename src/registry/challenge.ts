// WWW-Authenticate parsing (RFC 9110 §11.6.1): one header may carry several challenges, each a scheme
// followed by a token68 or by comma-separated parameters whose values may be quoted strings.
// Hand-written scanner: linear in the header length, never throws, skips what it cannot read.

export interface AuthChallenge {
  /** Lower-cased scheme: "basic", "bearer", ... */
  readonly scheme: string;
  /** Parameters with lower-cased names: realm, service, scope, error, ... */
  readonly params: Readonly<Record<string, string>>;
  /** The token68 form ("Negotiate abc=="), when the challenge used it instead of parameters. */
  readonly token68?: string;
}

// tchar from RFC 9110 §5.6.2.
function isTokenChar(c: number): boolean {
  return (
    (c >= 0x30 && c <= 0x39) ||
    (c >= 0x41 && c <= 0x5a) ||
    (c >= 0x61 && c <= 0x7a) ||
    c === 0x21 ||
    (c >= 0x23 && c <= 0x27) ||
    c === 0x2a ||
    c === 0x2b ||
    c === 0x2d ||
    c === 0x2e ||
    c === 0x5e ||
    c === 0x5f ||
    c === 0x60 ||
    c === 0x7c ||
    c === 0x7e
  );
}

// token68 adds "/" to the token characters it shares and may end in "=" padding.
function isToken68Char(c: number): boolean {
  return isTokenChar(c) || c === 0x2f;
}

const SP = 0x20;
const TAB = 0x09;
const COMMA = 0x2c;
const EQUALS = 0x3d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

class Scanner {
  pos = 0;
  readonly text: string;

  constructor(text: string) {
    this.text = text;
  }

  get done(): boolean {
    return this.pos >= this.text.length;
  }

  peek(offset = 0): number {
    return this.pos + offset < this.text.length ? this.text.charCodeAt(this.pos + offset) : -1;
  }

  skipSpaces(): void {
    while (this.peek() === SP || this.peek() === TAB) this.pos++;
  }

  /** Skips spaces and commas: what separates challenges and parameters. */
  skipSeparators(): void {
    while (this.peek() === SP || this.peek() === TAB || this.peek() === COMMA) this.pos++;
  }

  token(): string {
    const start = this.pos;
    while (!this.done && isTokenChar(this.peek())) this.pos++;
    return this.text.slice(start, this.pos);
  }

  /** An unquoted value; lenient: anything up to a comma or space (some servers send bare URLs). */
  bareValue(): string {
    const start = this.pos;
    while (
      !this.done &&
      this.peek() !== COMMA &&
      this.peek() !== SP &&
      this.peek() !== TAB &&
      this.peek() !== QUOTE
    )
      this.pos++;
    return this.text.slice(start, this.pos);
  }

  /** A quoted-string starting at the opening quote; undefined when it never closes. */
  quoted(): string | undefined {
    this.pos++; // opening quote
    let value = '';
    while (!this.done) {
      const c = this.peek();
      if (c === QUOTE) {
        this.pos++;
        return value;
      }
      if (c === BACKSLASH && this.pos + 1 < this.text.length) {
        value += this.text[this.pos + 1];
        this.pos += 2;
        continue;
      }
      value += this.text[this.pos];
      this.pos++;
    }
    return undefined;
  }

  /** Skips to just after the next comma outside quotes (recovery from malformed input). */
  skipElement(): void {
    while (!this.done) {
      const c = this.peek();
      if (c === QUOTE) {
        if (this.quoted() === undefined) return;
        continue;
      }
      this.pos++;
      if (c === COMMA) return;
    }
  }

  /** Whether a parameter (token, optional spaces, "=" not followed by "=") starts here. */
  atParam(): boolean {
    let i = this.pos;
    const text = this.text;
    while (i < text.length && isTokenChar(text.charCodeAt(i))) i++;
    if (i === this.pos) return false;
    while (i < text.length && (text.charCodeAt(i) === SP || text.charCodeAt(i) === TAB)) i++;
    return text.charCodeAt(i) === EQUALS && text.charCodeAt(i + 1) !== EQUALS;
  }
}

/** Reads a token68 when one starts here and is followed by the end, a comma or spaces. */
function readToken68(s: Scanner): string | undefined {
  let i = s.pos;
  const text = s.text;
  while (i < text.length && isToken68Char(text.charCodeAt(i))) i++;
  if (i === s.pos) return undefined;
  while (i < text.length && text.charCodeAt(i) === EQUALS) i++;
  let j = i;
  while (j < text.length && (text.charCodeAt(j) === SP || text.charCodeAt(j) === TAB)) j++;
  if (j < text.length && text.charCodeAt(j) !== COMMA) return undefined;
  const value = text.slice(s.pos, i);
  s.pos = j;
  return value;
}

/**
 * auth-params: name = (token / quoted-string), separated by commas; a comma followed by something
 * that is not a parameter starts the next challenge. A Map, so that names like "__proto__" stay data.
 */
function readParams(s: Scanner): Map<string, string> {
  const params = new Map<string, string>();
  for (;;) {
    s.skipSpaces();
    if (!s.atParam()) return params;
    const name = s.token().toLowerCase();
    s.skipSpaces();
    s.pos++; // "="
    s.skipSpaces();
    const value = s.peek() === QUOTE ? s.quoted() : s.bareValue();
    if (value === undefined) return params; // unterminated quote: keep what we have
    if (!params.has(name)) params.set(name, value);
    s.skipSpaces();
    if (s.peek() !== COMMA) {
      if (!s.done) s.skipElement();
      return params;
    }
    s.skipSeparators(); // the comma(s); what follows decides
  }
}

/** One challenge starting at a token; undefined (the element skipped) when it is malformed. */
function readChallenge(s: Scanner): AuthChallenge | undefined {
  const scheme = s.token();
  const afterScheme = s.peek();
  // No scheme, or garbage glued to it ("Bearer\"x"): drop this challenge.
  if (
    scheme.length === 0 ||
    (afterScheme !== SP && afterScheme !== TAB && afterScheme !== COMMA && afterScheme !== -1)
  ) {
    s.skipElement();
    return undefined;
  }
  s.skipSpaces();
  if (!s.done && s.peek() !== COMMA && !s.atParam()) {
    const token68 = readToken68(s);
    if (token68 === undefined) s.skipElement();
    return token68 === undefined ? undefined : { scheme: scheme.toLowerCase(), params: {}, token68 };
  }
  return { scheme: scheme.toLowerCase(), params: Object.fromEntries(readParams(s)) };
}

/** Parses one or more WWW-Authenticate header values into challenges, in order. */
export function parseChallenges(header: string | readonly string[] | undefined): AuthChallenge[] {
  if (header === undefined) return [];
  if (typeof header !== 'string') return header.flatMap((h) => parseChallenges(h));
  const s = new Scanner(header);
  const out: AuthChallenge[] = [];
  for (;;) {
    s.skipSeparators();
    if (s.done) return out;
    const challenge = readChallenge(s);
    if (challenge !== undefined) out.push(challenge);
  }
}
