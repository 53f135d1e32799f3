// The Docker token protocol, server side, for a docker-registry started with `auth.token`: RS256 JWTs
// whose header carries the signing certificate (x5c), handed out by GET (optional Basic auth, as
// docker and skopeo ask) and by the OAuth2 POST form (grant_type=password, as containerd asks, or
// refresh_token for the tokens given in `refreshTokens`).
import { createPrivateKey, type KeyObject, randomUUID, sign, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { execFileAsync, requireCommand } from './process.ts';

export interface TokenAccess {
  readonly type: string;
  readonly name: string;
  readonly actions: readonly string[];
}

export interface TokenServerOptions {
  /** username → password; these get every action they ask for. */
  readonly users?: Readonly<Record<string, string>>;
  /** Whether anonymous requests get "pull" (otherwise they get a token granting nothing). */
  readonly anonymousPull?: boolean;
  readonly expiresInSeconds?: number;
  /** Whether the OAuth2 POST form is served (default true); false answers it 404, like old servers. */
  readonly acceptPost?: boolean;
  readonly service?: string;
  readonly issuer?: string;
  /** Answer every /token request with this redirect (Location: `to` plus the request's path and query). */
  readonly redirect?: { readonly status: 301 | 302 | 307 | 308; readonly to: string };
  /** refresh token → account: the OAuth2 refresh_token grants this server honours (none by default). */
  readonly refreshTokens?: Readonly<Record<string, string>>;
}

export interface TokenRequestRecord {
  readonly method: 'GET' | 'POST';
  readonly account: string | undefined;
  readonly scopes: readonly string[];
  readonly status: number;
  /** The OAuth2 POST form as received (passwords included: this is a test server). */
  readonly form?: Readonly<Record<string, string>>;
}

export interface TokenServer {
  /** The realm URL to configure in the registry: http://127.0.0.1:PORT/token */
  readonly realm: string;
  readonly service: string;
  readonly issuer: string;
  /** The certificate bundle the registry must trust (`rootcertbundle`). */
  readonly certPath: string;
  /** Every request answered so far, in order. */
  requests(): readonly TokenRequestRecord[];
  /** A token without an HTTP round trip, for the harness's own pushes. */
  mint(access: readonly TokenAccess[], subject?: string): string;
  close(): Promise<void>;
}

const BODY_LIMIT = 64 * 1024;

function base64url(data: Buffer | string): string {
  return Buffer.from(data).toString('base64url');
}

/** "repository:team/app:pull,push" → access entry; the name may not contain ":" but the type may not either. */
function parseScope(scope: string): TokenAccess | undefined {
  const first = scope.indexOf(':');
  const last = scope.lastIndexOf(':');
  if (first === -1 || last === first) return undefined;
  return {
    type: scope.slice(0, first),
    name: scope.slice(first + 1, last),
    actions: scope
      .slice(last + 1)
      .split(',')
      .filter((a) => a.length > 0),
  };
}

async function readBody(req: IncomingMessage): Promise<string> {
  let body = '';
  for await (const chunk of req) {
    body += (chunk as Buffer).toString('utf8');
    if (body.length > BODY_LIMIT) throw new Error('body too large');
  }
  return body;
}

function basicCredentials(header: string | undefined): { user: string; password: string } | undefined {
  if (header === undefined || !/^basic /i.test(header)) return undefined;
  const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon === -1) return undefined;
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/** Starts a token server on 127.0.0.1 (kernel-chosen port), with an RSA key and certificate in `dir`. */
export async function startTokenServer(dir: string, options: TokenServerOptions = {}): Promise<TokenServer> {
  const openssl = requireCommand('openssl');
  const keyPath = join(dir, 'token.key');
  const certPath = join(dir, 'token.crt');
  await execFileAsync(openssl, [
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-days',
    '7',
    '-subj',
    '/CN=pullmap-token-issuer',
    '-keyout',
    keyPath,
    '-out',
    certPath,
  ]);
  const key: KeyObject = createPrivateKey(await readFile(keyPath, 'utf8'));
  const certDer = new X509Certificate(await readFile(certPath, 'utf8')).raw.toString('base64');
  const service = options.service ?? 'test-registry';
  const issuer = options.issuer ?? 'test-issuer';
  const expiresIn = options.expiresInSeconds ?? 300;
  const users = options.users ?? {};
  const records: TokenRequestRecord[] = [];

  const mint = (access: readonly TokenAccess[], subject = ''): string => {
    const now = Math.floor(Date.now() / 1000);
    const header = { typ: 'JWT', alg: 'RS256', x5c: [certDer] };
    const claims = {
      iss: issuer,
      sub: subject,
      aud: service,
      exp: now + expiresIn,
      nbf: now - 1,
      iat: now,
      jti: randomUUID(),
      access,
    };
    const signingInput = `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(claims))}`;
    const signature = sign('sha256', Buffer.from(signingInput), key);
    return `${signingInput}.${base64url(signature)}`;
  };

  const grant = (account: string | undefined, scopes: readonly string[]): TokenAccess[] =>
    scopes.flatMap((scope) => {
      const access = parseScope(scope);
      if (access === undefined) return [];
      if (account !== undefined) return [access];
      if (options.anonymousPull && access.actions.includes('pull')) return [{ ...access, actions: ['pull'] }];
      return [];
    });

  const send = (res: ServerResponse, status: number, body: unknown): void => {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };

  const answer = (res: ServerResponse, account: string | undefined, scopes: readonly string[]): void => {
    const token = mint(grant(account, scopes), account ?? '');
    send(res, 200, {
      token,
      access_token: token,
      expires_in: expiresIn,
      issued_at: new Date().toISOString(),
    });
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    if (url.pathname !== '/token') return send(res, 404, { error: 'not_found' });
    if (options.redirect) {
      records.push({
        method: req.method === 'POST' ? 'POST' : 'GET',
        account: undefined,
        scopes: [],
        status: options.redirect.status,
      });
      res.writeHead(options.redirect.status, {
        location: `${options.redirect.to}${req.url}`,
        'content-length': 0,
      });
      return void res.end();
    }
    if (req.method === 'GET') {
      const scopes = url.searchParams.getAll('scope').flatMap((s) => s.split(' '));
      const basic = basicCredentials(req.headers.authorization);
      if (basic !== undefined && users[basic.user] !== basic.password) {
        records.push({ method: 'GET', account: basic.user, scopes, status: 401 });
        return send(res, 401, { errors: [{ code: 'UNAUTHORIZED', message: 'bad credentials' }] });
      }
      records.push({ method: 'GET', account: basic?.user, scopes, status: 200 });
      return answer(res, basic?.user, scopes);
    }
    if (req.method === 'POST' && options.acceptPost === false) {
      records.push({ method: 'POST', account: undefined, scopes: [], status: 404 });
      return send(res, 404, { error: 'not_found' });
    }
    if (req.method === 'POST') {
      const form = new URLSearchParams(await readBody(req));
      const received = Object.fromEntries(form);
      const scopes = (form.get('scope') ?? '').split(' ').filter((s) => s.length > 0);
      const grantType = form.get('grant_type');
      const record = (account: string | undefined, status: number) =>
        records.push({ method: 'POST', account, scopes, status, form: received });
      if (grantType === 'refresh_token') {
        const account = options.refreshTokens?.[form.get('refresh_token') ?? ''];
        if (account === undefined) {
          record(undefined, 401);
          return send(res, 401, { error: 'invalid_grant' });
        }
        record(account, 200);
        return answer(res, account, scopes);
      }
      const username = form.get('username') ?? undefined;
      if (grantType !== 'password') {
        record(username, 400);
        return send(res, 400, { error: 'unsupported_grant_type' });
      }
      if (username === undefined || users[username] !== form.get('password')) {
        record(username, 401);
        return send(res, 401, { error: 'invalid_grant' });
      }
      record(username, 200);
      return answer(res, username, scopes);
    }
    send(res, 405, { error: 'method_not_allowed' });
  };

  const server = createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) send(res, 500, { error: 'internal' });
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    realm: `http://127.0.0.1:${port}/token`,
    service,
    issuer,
    certPath,
    requests: () => records,
    mint,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
