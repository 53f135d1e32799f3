// Which stored credentials apply to an image, matched the way the kubelet's credential keyring does:
// keys may carry a scheme, a path and /v1/ or /v2/; the host must have the same number of labels and
// port as the image's registry, each label may be a glob ("*.example.com"), and the key's path must
// prefix the repository path. All matches are returned, most specific key (reverse-sorted) first.
import { splitHostPort } from '../core/net.ts';
import { foldDockerHubHost } from '../core/reference/index.ts';
import type { CredentialEntry, RegistryCredential } from './credentials.ts';

export interface CredentialSource {
  /** Credentials to try, in order, for `registry/repository` ("docker.io", "library/nginx"). */
  lookup(registry: string, repository: string): readonly RegistryCredential[];
}

interface KeyPattern {
  readonly key: string;
  readonly labels: readonly string[];
  readonly port: string;
  readonly path: string;
}

/**
 * The canonical form of a stored key: scheme dropped, "/v1/" or "/v2/" and a lone "/" dropped,
 * Docker Hub aliases folded into "docker.io". "https://index.docker.io/v1/" → "docker.io".
 * Undefined for a key with no host.
 */
export function normalizeCredentialKey(key: string): string | undefined {
  let rest = key.trim();
  const scheme = /^https?:\/\//i.exec(rest);
  if (scheme) rest = rest.slice(scheme[0].length);
  const end = rest.search(/[?#]/);
  if (end !== -1) rest = rest.slice(0, end);
  const slash = rest.indexOf('/');
  let host = slash === -1 ? rest : rest.slice(0, slash);
  let path = slash === -1 ? '' : rest.slice(slash);
  if (host.length === 0) return undefined;
  if (path.startsWith('/v1/') || path.startsWith('/v2/')) path = path.slice(3);
  if (path === '/') path = '';
  // Docker Hub's names all apply to "docker.io" images.
  host = foldDockerHubHost(host);
  return host + path;
}

function patternOf(normalized: string): KeyPattern {
  const slash = normalized.indexOf('/');
  const hostPort = slash === -1 ? normalized : normalized.slice(0, slash);
  const path = slash === -1 ? '' : normalized.slice(slash);
  const { host, port } = splitHostPort(hostPort);
  return { key: normalized, labels: host.split('.'), port, path };
}

/**
 * Go's filepath.Match for one host label: "*", "?", "[a-z]", "[^a-z]" and "\" escapes.
 * A malformed pattern matches nothing.
 */
export function globMatch(pattern: string, name: string): boolean {
  let p = 0;
  let n = 0;
  let starP = -1;
  let starN = 0;
  while (n < name.length) {
    const step = p < pattern.length ? stepAt(pattern, p, name[n] as string) : 'no';
    if (step === 'bad') return false;
    if (step === 'star') {
      starP = p++;
      starN = n;
    } else if (step !== 'no') {
      p = step;
      n++;
    } else if (starP === -1) return false;
    else {
      // Backtrack: let the last "*" swallow one more character.
      p = starP + 1;
      n = ++starN;
    }
  }
  while (pattern[p] === '*') p++;
  return p === pattern.length;
}

/**
 * How the pattern element at `p` meets `ch`: the position after it when it matches, "no" when it does
 * not, "star" for "*", "bad" when the pattern is malformed there.
 */
function stepAt(pattern: string, p: number, ch: string): number | 'no' | 'star' | 'bad' {
  const c = pattern[p];
  if (c === '*') return 'star';
  if (c === '?') return p + 1;
  if (c === '[') {
    const cls = matchClass(pattern, p, ch);
    if (cls === undefined) return 'bad';
    return cls.matched ? cls.next : 'no';
  }
  if (c === '\\') {
    if (p + 1 >= pattern.length) return 'bad';
    return pattern[p + 1] === ch ? p + 2 : 'no';
  }
  return c === ch ? p + 1 : 'no';
}

/** One character of a class range at pattern[i], "\\"-escaped or not; an unescaped "-" or "]" is malformed. */
function classChar(pattern: string, i: number): { ch: string; next: number } | undefined {
  let c = pattern[i];
  if (c === '\\') c = pattern[++i];
  else if (c === '-' || c === ']') return undefined;
  return c === undefined ? undefined : { ch: c, next: i + 1 };
}

/** One range of a class at pattern[i]: "a-z", or a single character as the range from it to itself. */
function classRange(pattern: string, i: number): { lo: string; hi: string; next: number } | undefined {
  const lo = classChar(pattern, i);
  if (lo === undefined) return undefined;
  if (pattern[lo.next] !== '-') return { lo: lo.ch, hi: lo.ch, next: lo.next };
  const hi = classChar(pattern, lo.next + 1);
  if (hi === undefined) return undefined;
  return { lo: lo.ch, hi: hi.ch, next: hi.next };
}

/** Matches `ch` against the class starting at pattern[start] === "["; undefined when malformed. */
function matchClass(
  pattern: string,
  start: number,
  ch: string,
): { matched: boolean; next: number } | undefined {
  let i = start + 1;
  const negated = pattern[i] === '^';
  if (negated) i++;
  let matched = false;
  // A "]" right after "[" or "[^" does not close the class: "[]" is malformed, never an empty set.
  for (let first = true; ; first = false) {
    if (i >= pattern.length) return undefined;
    if (pattern[i] === ']' && !first) return { matched: matched !== negated, next: i + 1 };
    const range = classRange(pattern, i);
    if (range === undefined) return undefined;
    i = range.next;
    if (range.lo <= ch && ch <= range.hi) matched = true;
  }
}

function matches(pattern: KeyPattern, target: KeyPattern): boolean {
  if (pattern.port !== target.port) return false;
  if (pattern.labels.length !== target.labels.length) return false;
  // A plain string prefix, as in the kubelet: "quay.io/acme" also matches "quay.io/acme-labs/x".
  if (!target.path.startsWith(pattern.path)) return false;
  return pattern.labels.every((label, i) => globMatch(label, target.labels[i] as string));
}

/** Credentials indexed by normalised key; lookups return every match, most specific key first. */
export class CredentialKeyring implements CredentialSource {
  readonly #byKey = new Map<string, RegistryCredential[]>();
  #index: KeyPattern[] = [];

  constructor(entries: readonly CredentialEntry[] = []) {
    this.add(entries);
  }

  add(entries: readonly CredentialEntry[]): void {
    for (const entry of entries) {
      const key = normalizeCredentialKey(entry.key);
      if (key === undefined) continue;
      const list = this.#byKey.get(key);
      if (list) list.push(entry.credential);
      else this.#byKey.set(key, [entry.credential]);
    }
    // Reverse byte order puts "quay.io/coreos" before "quay.io", like the kubelet's sorted index.
    this.#index = [...this.#byKey.keys()]
      .sort((a, b) => (a < b ? 1 : a > b ? -1 : 0))
      .map((key) => patternOf(key));
  }

  /** The normalised keys, in match order. */
  keys(): readonly string[] {
    return this.#index.map((p) => p.key);
  }

  lookup(registry: string, repository: string): readonly RegistryCredential[] {
    const host = foldDockerHubHost(registry);
    const target = patternOf(`${host}/${repository}`);
    const out: RegistryCredential[] = [];
    for (const pattern of this.#index) {
      if (matches(pattern, target)) out.push(...(this.#byKey.get(pattern.key) ?? []));
    }
    return out;
  }
}
