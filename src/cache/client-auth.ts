// Optional authentication of the cache's own clients: htpasswd Basic (bcrypt entries, what
// `htpasswd -B` writes and docker-registry's htpasswd auth reads, or SHA-256/SHA-512 crypt entries from
// `htpasswd -2` / `-5`) or one static token, sent as a Bearer token or as the password of Basic auth
// (so clients that only speak Basic, like ctr --user, can use it).
import { createHash, timingSafeEqual } from 'node:crypto';
import bcrypt from 'bcryptjs';
import { BoundedMemo } from '../core/memo.ts';

export interface ClientAuth {
  /** undefined when the Authorization header is accepted, else why not. */
  check(authorization: string | undefined): string | undefined;
  /** The WWW-Authenticate value of a 401. */
  readonly challenge: string;
}

const REALM = 'Basic realm="pullmap-cache", charset="UTF-8"';
/** Headers remembered (accepted and refused, each), so the crypt rounds are paid once per client, not per request. */
const ACCEPTED_MAX = 1024;

function sha(text: string | Buffer): Buffer {
  return createHash('sha256').update(text).digest();
}

function sameSecret(a: string, b: string): boolean {
  return timingSafeEqual(sha(a), sha(b));
}

function basicCredentials(header: string): { user: string; password: string } | undefined {
  const m = /^Basic\s+([A-Za-z0-9+/=]{1,4096})$/i.exec(header.trim());
  if (!m) return undefined;
  const text = Buffer.from(m[1] as string, 'base64').toString('utf8');
  const colon = text.indexOf(':');
  return colon === -1 ? undefined : { user: text.slice(0, colon), password: text.slice(colon + 1) };
}

export function tokenAuth(token: string): ClientAuth {
  return {
    challenge: REALM,
    check(header) {
      if (header === undefined)
        return 'this cache needs a token: send it as a Bearer token or as the password of Basic auth';
      const bearer = /^Bearer\s+(\S{1,4096})$/i.exec(header.trim());
      const given = bearer ? (bearer[1] as string) : basicCredentials(header)?.password;
      return given !== undefined && sameSecret(given, token) ? undefined : 'the token is not accepted';
    },
  };
}

const ITOA64 = './0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
// The byte order of the final encoding (Drepper's SHA-crypt specification), three bytes per group.
const ORDER_256 = [
  [0, 10, 20],
  [21, 1, 11],
  [12, 22, 2],
  [3, 13, 23],
  [24, 4, 14],
  [15, 25, 5],
  [6, 16, 26],
  [27, 7, 17],
  [18, 28, 8],
  [9, 19, 29],
];
const ORDER_512 = [
  [0, 21, 42],
  [22, 43, 1],
  [44, 2, 23],
  [3, 24, 45],
  [25, 46, 4],
  [47, 5, 26],
  [6, 27, 48],
  [28, 49, 7],
  [50, 8, 29],
  [9, 30, 51],
  [31, 52, 10],
  [53, 11, 32],
  [12, 33, 54],
  [34, 55, 13],
  [56, 14, 35],
  [15, 36, 57],
  [37, 58, 16],
  [59, 17, 38],
  [18, 39, 60],
  [40, 61, 19],
  [62, 20, 41],
];

function b64(b2: number, b1: number, b0: number, n: number): string {
  let w = (b2 << 16) | (b1 << 8) | b0;
  let out = '';
  for (let i = 0; i < n; i++) {
    out += ITOA64[w & 0x3f];
    w >>>= 6;
  }
  return out;
}

function repeatTo(block: Buffer, length: number): Buffer {
  const out = Buffer.alloc(length);
  for (let i = 0; i < length; i += block.length) block.copy(out, i, 0, Math.min(block.length, length - i));
  return out;
}

/** SHA-crypt ($5$ / $6$) of `password` with `salt` and `rounds`: the hash part of the entry. */
function shaCrypt(algorithm: 'sha256' | 'sha512', password: string, salt: string, rounds: number): string {
  const H = (...parts: Buffer[]): Buffer => {
    const h = createHash(algorithm);
    for (const p of parts) h.update(p);
    return h.digest();
  };
  const P = Buffer.from(password, 'utf8');
  const S = Buffer.from(salt, 'utf8');
  const B = H(P, S, P);
  const a = createHash(algorithm).update(P).update(S).update(repeatTo(B, P.length));
  for (let i = P.length; i > 0; i >>= 1) a.update(i & 1 ? B : P);
  const A = a.digest();
  const dp = createHash(algorithm);
  for (let i = 0; i < P.length; i++) dp.update(P);
  const Pp = repeatTo(dp.digest(), P.length);
  const ds = createHash(algorithm);
  for (let i = 0; i < 16 + (A[0] as number); i++) ds.update(S);
  const Sp = repeatTo(ds.digest(), S.length);
  let C = A;
  for (let r = 0; r < rounds; r++) {
    const c = createHash(algorithm);
    c.update(r & 1 ? Pp : C);
    if (r % 3) c.update(Sp);
    if (r % 7) c.update(Pp);
    c.update(r & 1 ? C : Pp);
    C = c.digest();
  }
  const at = (i: number): number => C[i] as number;
  let out = '';
  if (algorithm === 'sha256') {
    for (const [x, y, z] of ORDER_256) out += b64(at(x as number), at(y as number), at(z as number), 4);
    out += b64(0, at(31), at(30), 3);
  } else {
    for (const [x, y, z] of ORDER_512) out += b64(at(x as number), at(y as number), at(z as number), 4);
    out += b64(0, 0, at(63), 2);
  }
  return out;
}

type CryptEntry =
  | {
      readonly algorithm: 'sha256' | 'sha512';
      readonly rounds: number;
      readonly salt: string;
      readonly hash: string;
    }
  | { readonly algorithm: 'bcrypt'; readonly hash: string };

const ENTRY = /^\$([56])\$(rounds=(\d{1,9})\$)?([^$:\n]{0,16})\$([./0-9A-Za-z]{43}|[./0-9A-Za-z]{86})$/;
const BCRYPT_ENTRY = /^\$2[aby]\$(\d\d)\$[./0-9A-Za-z]{53}$/;
/**
 * bcrypt is checked on the request path, once per new client (accepted headers are remembered) and on
 * every wrong password; above this cost one check takes seconds in JavaScript.
 */
const BCRYPT_MAX_COST = 12;

/** Parses an htpasswd file; unusable lines are errors naming the line and the fix. */
export function parseHtpasswd(
  text: string,
  source: string,
): { users: Map<string, CryptEntry>; errors: string[] } {
  const users = new Map<string, CryptEntry>();
  const errors: string[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const colon = line.indexOf(':');
    const user = line.slice(0, colon);
    const value = line.slice(colon + 1);
    const bcryptEntry = colon > 0 ? BCRYPT_ENTRY.exec(value) : null;
    if (bcryptEntry) {
      const cost = Number(bcryptEntry[1]);
      if (cost < 4 || cost > BCRYPT_MAX_COST) {
        errors.push(
          `${source}:${i + 1}: bcrypt cost ${cost} is outside 4..${BCRYPT_MAX_COST}; the cache checks passwords while clients wait: recreate the entry with "htpasswd -B -C 10"`,
        );
        return;
      }
      users.set(user, { algorithm: 'bcrypt', hash: value });
      return;
    }
    const m = colon > 0 ? ENTRY.exec(value) : null;
    if (!m) {
      errors.push(
        `${source}:${i + 1}: not a "user:$2y$...", "user:$5$..." or "user:$6$..." entry; create entries with "htpasswd -B", "htpasswd -2" or "htpasswd -5" (MD5, SHA-1 and crypt(3) DES are not supported)`,
      );
      return;
    }
    const rounds = m[3] === undefined ? 5000 : Math.min(999_999_999, Math.max(1000, Number(m[3])));
    users.set(user, {
      algorithm: m[1] === '5' ? 'sha256' : 'sha512',
      rounds,
      salt: m[4] as string,
      hash: m[5] as string,
    });
  });
  return { users, errors };
}

export function htpasswdAuth(users: ReadonlyMap<string, CryptEntry>): ClientAuth {
  // Both answers are remembered: the users are fixed for the life of this checker, and a client that
  // keeps retrying a wrong password (a misconfigured node) must not cost a bcrypt check per request.
  const accepted = new BoundedMemo<true>(ACCEPTED_MAX);
  const refused = new BoundedMemo<true>(ACCEPTED_MAX);
  return {
    challenge: REALM,
    check(header) {
      if (header === undefined) return 'this cache needs a user name and password (Basic auth)';
      const key = sha(header).toString('hex');
      if (accepted.has(key)) return undefined;
      if (refused.has(key)) return 'unknown user or wrong password';
      const creds = basicCredentials(header);
      const entry = creds && users.get(creds.user);
      const ok =
        entry === undefined
          ? false
          : entry.algorithm === 'bcrypt'
            ? bcrypt.compareSync(creds!.password, entry.hash)
            : sameSecret(shaCrypt(entry.algorithm, creds!.password, entry.salt, entry.rounds), entry.hash);
      if (!ok) {
        refused.set(key, true);
        return 'unknown user or wrong password';
      }
      accepted.set(key, true);
      return undefined;
    },
  };
}
