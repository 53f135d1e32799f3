// The Docker/OCI image-reference grammar (the distribution/reference productions), written as
// hand-rolled forward scanners rather than regular expressions: JavaScript regexps backtrack, and the
// nested repetition in `pathComponent` makes a naive port exponential on inputs like "a-a-a-…!".
// Every production here looks at each character a bounded number of times, so parsing is linear.
//
//   reference        := name [ ":" tag ] [ "@" digest ]
//   name             := [ domainAndPort "/" ] remoteName
//   domainAndPort    := host [ ":" port ]
//   host             := domainName | "[" ipv6 "]"
//   domainName       := domainComponent ( "." domainComponent )*
//   domainComponent  := [a-zA-Z0-9] | [a-zA-Z0-9] [a-zA-Z0-9-]* [a-zA-Z0-9]
//   remoteName       := pathComponent ( "/" pathComponent )*
//   pathComponent    := alphanumeric ( separator alphanumeric )*
//   alphanumeric     := [a-z0-9]+
//   separator        := [._] | "__" | "-"+
//   tag              := [\w] [\w.-]{0,127}
//   digest           := algorithm ":" hex{32,}
//   algorithm        := algComponent ( [-_+.] algComponent )*
//   algComponent     := [A-Za-z] [A-Za-z0-9]*

import { DIGEST_ALGORITHMS, type DigestAlgorithm } from './digest.ts';
import type { ReferenceErrorCode } from './errors.ts';

/** A production failed: why, and (when known) at which offset of the string it was given. */
interface ProductionFailure {
  code: ReferenceErrorCode;
  message: string;
}

const TAG_MAX_LENGTH = 128;
export const REPOSITORY_MAX_LENGTH = 255;

const fail = (code: ReferenceErrorCode, message: string): ProductionFailure => ({ code, message });

// Character classes by code point; plain comparisons keep each scan a single pass.
const isDigit = (c: number): boolean => c >= 0x30 && c <= 0x39;
const isLower = (c: number): boolean => c >= 0x61 && c <= 0x7a;
const isUpper = (c: number): boolean => c >= 0x41 && c <= 0x5a;
const isLowerAlnum = (c: number): boolean => isLower(c) || isDigit(c);
const isAlnum = (c: number): boolean => isLower(c) || isUpper(c) || isDigit(c);
/** `\w` in the Go grammar: ASCII letters, digits and underscore. */
const isWord = (c: number): boolean => isAlnum(c) || c === 0x5f;
const isHexLower = (c: number): boolean => isDigit(c) || (c >= 0x61 && c <= 0x66);
const isHex = (c: number): boolean => isHexLower(c) || (c >= 0x41 && c <= 0x46);

const DOT = 0x2e;
const DASH = 0x2d;
const UNDERSCORE = 0x5f;
const COLON = 0x3a;

/** Shows a character in an error message; control and non-ASCII characters as code points. */
export function showChar(s: string, i: number): string {
  const c = s.codePointAt(i) ?? 0;
  return c > 0x20 && c < 0x7f
    ? `"${String.fromCodePoint(c)}"`
    : `U+${c.toString(16).toUpperCase().padStart(4, '0')}`;
}

/**
 * pathComponent: lowercase alphanumeric runs joined by one separator each. Repeated dashes are one
 * separator (hostnames used as path components have them); "__" is allowed for old names; "._" is not.
 */
function checkPathComponent(s: string, start: number, end: number): ProductionFailure | undefined {
  if (start === end)
    return fail(
      'REF_PATH_INVALID',
      'repository path has an empty component (check for "//" or a trailing "/")',
    );
  let i = start;
  for (;;) {
    // alphanumeric+
    const runStart = i;
    while (i < end && isLowerAlnum(s.charCodeAt(i))) i++;
    if (i === runStart) return badPathChar(s, i, start, end);
    if (i === end) return undefined;
    // separator: [._] | __ | -+
    const c = s.charCodeAt(i);
    if (c === DOT) i++;
    else if (c === UNDERSCORE) i += s.charCodeAt(i + 1) === UNDERSCORE && i + 1 < end ? 2 : 1;
    else if (c === DASH) while (i < end && s.charCodeAt(i) === DASH) i++;
    else return badPathChar(s, i, start, end);
    if (i === end) {
      return fail(
        'REF_PATH_INVALID',
        `repository path component "${s.slice(start, end)}" must not end with a separator`,
      );
    }
  }
}

function badPathChar(s: string, i: number, start: number, end: number): ProductionFailure {
  const component = s.slice(start, end);
  const c = s.charCodeAt(i);
  if (isUpper(c)) {
    return fail(
      'REF_PATH_UPPERCASE',
      `repository name must be lowercase (found ${showChar(s, i)} in "${component}")`,
    );
  }
  if (c === DOT || c === DASH || c === UNDERSCORE) {
    const problem = i === start ? 'must start with a-z or 0-9' : 'has two separators in a row';
    return fail(
      'REF_PATH_INVALID',
      `repository path component "${component}" ${problem} (${showChar(s, i)})`,
    );
  }
  return fail(
    'REF_PATH_INVALID',
    `repository path component "${component}" contains ${showChar(s, i)}; allowed are a-z, 0-9 and one of "." "_" "__" "-" between them`,
  );
}

/** remoteName: one or more path components separated by "/". */
export function checkRemoteName(s: string): ProductionFailure | undefined {
  let start = 0;
  for (;;) {
    let end = s.indexOf('/', start);
    if (end === -1) end = s.length;
    const failure = checkPathComponent(s, start, end);
    if (failure) return failure;
    if (end === s.length) return undefined;
    start = end + 1;
  }
}

/** domainComponent: a DNS label, letters of either case (hosts are case-insensitive), no leading or trailing dash. */
function checkDomainComponent(s: string, start: number, end: number): ProductionFailure | undefined {
  const label = s.slice(start, end);
  if (start === end) return fail('REF_HOST_INVALID', `registry host "${s}" has an empty label`);
  for (let i = start; i < end; i++) {
    const c = s.charCodeAt(i);
    if (!isAlnum(c) && c !== DASH) {
      return fail(
        'REF_HOST_INVALID',
        `registry host label "${label}" contains ${showChar(s, i)}; allowed are letters, digits and "-"`,
      );
    }
  }
  if (s.charCodeAt(start) === DASH || s.charCodeAt(end - 1) === DASH) {
    return fail('REF_HOST_INVALID', `registry host label "${label}" must not start or end with "-"`);
  }
  return undefined;
}

/**
 * domainAndPort: a host (DNS name, IPv4 in dotted decimal, or a bracketed IPv6 address without zone)
 * and an optional numeric port.
 */
export function checkDomainAndPort(s: string): ProductionFailure | undefined {
  let hostEnd: number;
  if (s.charCodeAt(0) === 0x5b /* [ */) {
    const close = s.indexOf(']');
    if (close === -1)
      return fail(
        'REF_HOST_INVALID',
        `registry host "${s}" opens "[" for an IPv6 address but never closes it`,
      );
    if (close === 1) return fail('REF_HOST_INVALID', `registry host "${s}" has an empty IPv6 address`);
    for (let i = 1; i < close; i++) {
      const c = s.charCodeAt(i);
      if (!isHex(c) && c !== COLON) {
        return fail(
          'REF_HOST_INVALID',
          `IPv6 registry host "${s}" contains ${showChar(s, i)}; only hex digits and ":" are allowed (no zone identifiers)`,
        );
      }
    }
    hostEnd = close + 1;
    if (hostEnd < s.length && s.charCodeAt(hostEnd) !== COLON) {
      return fail(
        'REF_HOST_INVALID',
        `registry host "${s}" has ${showChar(s, hostEnd)} after "]"; expected ":port" or "/"`,
      );
    }
  } else {
    hostEnd = s.indexOf(':');
    if (hostEnd === -1) hostEnd = s.length;
    let start = 0;
    for (;;) {
      let end = s.indexOf('.', start);
      if (end === -1 || end > hostEnd) end = hostEnd;
      const failure = checkDomainComponent(s, start, end);
      if (failure) return failure;
      if (end === hostEnd) break;
      start = end + 1;
    }
  }
  if (hostEnd === s.length) return undefined;
  const portStart = hostEnd + 1;
  if (portStart === s.length) return fail('REF_PORT_INVALID', `registry "${s}" has ":" but no port number`);
  for (let i = portStart; i < s.length; i++) {
    if (!isDigit(s.charCodeAt(i))) {
      return fail('REF_PORT_INVALID', `registry port "${s.slice(portStart)}" must be a number`);
    }
  }
  return undefined;
}

/** tag: a word character, then up to 127 word characters, dots or dashes. */
export function checkTag(s: string): ProductionFailure | undefined {
  if (s.length === 0) return fail('REF_TAG_INVALID', 'tag is empty after ":"; remove the ":" or name a tag');
  if (s.length > TAG_MAX_LENGTH) {
    return fail(
      'REF_TAG_INVALID',
      `tag is ${s.length} characters long; at most ${TAG_MAX_LENGTH} are allowed`,
    );
  }
  if (!isWord(s.charCodeAt(0)))
    return fail('REF_TAG_INVALID', `tag "${s}" must start with a letter, digit or "_"`);
  for (let i = 1; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (!isWord(c) && c !== DOT && c !== DASH) {
      return fail(
        'REF_TAG_INVALID',
        `tag "${s}" contains ${showChar(s, i)}; allowed are letters, digits, "_", "." and "-"`,
      );
    }
  }
  return undefined;
}

/**
 * digest: the grammar admits any algorithm name and ≥ 32 hex digits; like go-digest we then accept only
 * algorithms a registry can verify, with exactly their length in lowercase hex.
 */
export function checkDigest(s: string): ProductionFailure | undefined {
  const colon = s.indexOf(':');
  if (colon <= 0) return fail('REF_DIGEST_INVALID', `digest "${s}" must look like "sha256:<64 hex digits>"`);
  // algorithm := [A-Za-z][A-Za-z0-9]* ( [-_+.] [A-Za-z][A-Za-z0-9]* )*
  let atComponentStart = true;
  for (let i = 0; i < colon; i++) {
    const c = s.charCodeAt(i);
    if (atComponentStart) {
      if (!isLower(c) && !isUpper(c))
        return fail('REF_DIGEST_INVALID', `digest algorithm "${s.slice(0, colon)}" is malformed`);
      atComponentStart = false;
    } else if (c === DASH || c === UNDERSCORE || c === 0x2b || c === DOT) {
      atComponentStart = true;
    } else if (!isAlnum(c)) {
      return fail('REF_DIGEST_INVALID', `digest algorithm "${s.slice(0, colon)}" contains ${showChar(s, i)}`);
    }
  }
  if (atComponentStart)
    return fail('REF_DIGEST_INVALID', `digest algorithm "${s.slice(0, colon)}" is malformed`);
  const algorithm = s.slice(0, colon);
  const expected = Object.hasOwn(DIGEST_ALGORITHMS, algorithm)
    ? DIGEST_ALGORITHMS[algorithm as DigestAlgorithm]
    : undefined;
  if (expected === undefined) {
    return fail(
      'REF_DIGEST_UNSUPPORTED',
      `digest algorithm "${algorithm}" is not supported; use sha256, sha384 or sha512`,
    );
  }
  const hexLength = s.length - colon - 1;
  for (let i = colon + 1; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (!isHexLower(c)) {
      return fail(
        'REF_DIGEST_INVALID',
        isHex(c)
          ? `digest "${s}" must be lowercase hex`
          : `digest "${s}" contains ${showChar(s, i)}; only hex digits are allowed`,
      );
    }
  }
  if (hexLength !== expected) {
    return fail(
      'REF_DIGEST_INVALID',
      `${algorithm} digest must have ${expected} hex digits, found ${hexLength}`,
    );
  }
  return undefined;
}

/** A 64-hex string is an image ID, not a name: Docker refuses it as a repository to avoid ambiguity. */
export function isImageId(s: string): boolean {
  if (s.length !== 64) return false;
  for (let i = 0; i < 64; i++) if (!isHexLower(s.charCodeAt(i))) return false;
  return true;
}

/** Whether a string contains an ASCII uppercase letter (one of the signs that a first component is a host). */
export function hasUpper(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (isUpper(s.charCodeAt(i))) return true;
  return false;
}
