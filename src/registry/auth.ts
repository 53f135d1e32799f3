// Answers registry challenges: Basic from stored credentials, Bearer through the Docker token protocol
// (GET with optional Basic credentials, or the OAuth2 POST form when there are credentials), with
// tokens cached per realm, service, scope and credential until shortly before `expires_in` runs out.
import type { Dispatcher } from 'undici';
import type { AuthChallenge } from './challenge.ts';
import type { RegistryCredential } from './credentials.ts';
import { untilAborted } from './deadline.ts';
import { isLoopbackHost } from './endpoint.ts';
import { RegistryFailure } from './errors.ts';
import { discard, exchange, failureFromStatus, readBounded, undiciHop } from './http.ts';

/** The token specification's default lifetime when the server names none. */
const DEFAULT_TOKEN_LIFETIME_MS = 60_000;
const TOKEN_BODY_LIMIT = 1024 * 1024;
const CLIENT_ID = 'pullmap';

export interface Authorization {
  /** The Authorization header value. */
  readonly header: string;
  /** False when it came from the token cache (a refusal may then just mean the token was revoked). */
  readonly fresh: boolean;
  /** The token cache key, to drop the token when the registry refuses it. */
  readonly tokenKey?: string | undefined;
}

interface CachedToken {
  readonly token: string;
  readonly expiresAt: number;
}

interface AuthorizerOptions {
  readonly now: () => number;
  readonly maxTokens?: number;
  readonly userAgent: string;
}

interface AuthorizeRequest {
  readonly challenge: AuthChallenge;
  readonly credential: RegistryCredential | undefined;
  /** Space-separated scopes, e.g. "repository:library/nginx:pull". */
  readonly scope: string;
  /** The registry is plain HTTP on purpose: its realm may be too. */
  readonly registryInsecure: boolean;
  readonly signal: AbortSignal;
  readonly timeoutMs: number;
  /** The connection pool that reaches the realm (the registry's, or the realm host's own). */
  readonly dispatcher: Dispatcher;
}

export class Authorizer {
  readonly #options: AuthorizerOptions;
  readonly #maxTokens: number;
  // Insertion order doubles as LRU order: a hit is re-inserted at the end.
  readonly #tokens = new Map<string, CachedToken>();
  readonly #inflight = new Map<string, Promise<CachedToken>>();
  readonly #credentialIds = new WeakMap<RegistryCredential, number>();
  #nextCredentialId = 1;
  #tokenRequests = 0;

  constructor(options: AuthorizerOptions) {
    this.#options = options;
    this.#maxTokens = options.maxTokens ?? 1024;
  }

  #credentialId(credential: RegistryCredential | undefined): string {
    if (credential === undefined) return 'anonymous';
    let id = this.#credentialIds.get(credential);
    if (id === undefined) {
      id = this.#nextCredentialId++;
      this.#credentialIds.set(credential, id);
    }
    return `credential#${id}`;
  }

  /** An Authorization header for the challenge, or undefined when there is nothing to answer it with. */
  async authorize(request: AuthorizeRequest): Promise<Authorization | undefined> {
    const { challenge, credential } = request;
    if (challenge.scheme === 'basic') {
      if (credential?.kind !== 'basic') return undefined;
      const basic = Buffer.from(`${credential.username}:${credential.password}`, 'utf8').toString('base64');
      return { header: `Basic ${basic}`, fresh: true };
    }
    if (challenge.scheme !== 'bearer')
      throw new RegistryFailure(
        'REG_AUTH_UNSUPPORTED',
        `unsupported authentication scheme "${challenge.scheme}"`,
      );
    const realm = challenge.params['realm'];
    if (realm === undefined || realm.length === 0)
      throw new RegistryFailure('REG_AUTH_UNSUPPORTED', 'Bearer challenge without a realm');
    const service = challenge.params['service'] ?? '';
    const key = `${realm}\n${service}\n${request.scope}\n${this.#credentialId(credential)}`;
    const now = this.#options.now();
    const cached = this.#tokens.get(key);
    if (cached !== undefined && cached.expiresAt > now) {
      this.#tokens.delete(key);
      this.#tokens.set(key, cached);
      return { header: `Bearer ${cached.token}`, fresh: false, tokenKey: key };
    }
    if (cached !== undefined) this.#tokens.delete(key);
    let pending = this.#inflight.get(key);
    if (pending === undefined) {
      // The fetch runs on its own timeout, not on the first caller's signal: others may share it.
      pending = this.#fetchToken(realm, service, {
        ...request,
        signal: AbortSignal.timeout(request.timeoutMs),
      });
      const settled = pending.finally(() => this.#inflight.delete(key));
      settled.catch(() => {});
      this.#inflight.set(key, pending);
    }
    const token = await untilAborted(pending, request.signal);
    this.#store(key, token);
    return { header: `Bearer ${token.token}`, fresh: true, tokenKey: key };
  }

  /** Token requests actually sent (each POST and GET counts). */
  get tokenRequests(): number {
    return this.#tokenRequests;
  }

  /** Forgets a token the registry refused. */
  invalidate(tokenKey: string | undefined): void {
    if (tokenKey !== undefined) this.#tokens.delete(tokenKey);
  }

  #store(key: string, token: CachedToken): void {
    this.#tokens.delete(key);
    this.#tokens.set(key, token);
    while (this.#tokens.size > this.#maxTokens) {
      const oldest = this.#tokens.keys().next();
      if (oldest.done) break;
      this.#tokens.delete(oldest.value);
    }
  }

  async #fetchToken(realm: string, service: string, request: AuthorizeRequest): Promise<CachedToken> {
    try {
      return await this.#requestToken(realm, service, request);
    } catch (err) {
      if (request.signal.aborted && !(err instanceof RegistryFailure))
        throw new RegistryFailure(
          'REG_TIMEOUT',
          `token server did not answer within ${request.timeoutMs} ms`,
        );
      throw err;
    }
  }

  async #requestToken(realm: string, service: string, request: AuthorizeRequest): Promise<CachedToken> {
    const url = tokenRealm(realm, request);
    const { credential } = request;
    const fetchedAt = this.#options.now();
    const scopes = request.scope.split(' ').filter((s) => s.length > 0);
    if (credential !== undefined) {
      // containerd's order: the OAuth2 form first; servers that do not speak it get the GET form.
      const form = tokenForm(credential, service, scopes);
      const posted = await this.#tokenExchange(url, 'POST', request, form, undefined);
      if (posted.kind === 'token') return this.#parse(posted.body, fetchedAt);
      if (credential.kind === 'identityToken') throw posted.failure;
    }
    const query = new URL(url);
    if (service) query.searchParams.set('service', service);
    for (const scope of scopes) query.searchParams.append('scope', scope);
    const got = await this.#tokenExchange(query, 'GET', request, undefined, basicAuthorization(credential));
    if (got.kind === 'token') return this.#parse(got.body, fetchedAt);
    throw got.failure;
  }

  async #tokenExchange(
    url: URL,
    method: 'GET' | 'POST',
    request: AuthorizeRequest,
    body: string | undefined,
    authorization: string | undefined,
  ): Promise<{ kind: 'token'; body: Buffer } | { kind: 'refused'; failure: RegistryFailure }> {
    this.#tokenRequests++;
    const headers: Record<string, string> = {
      'user-agent': this.#options.userAgent,
      accept: 'application/json',
    };
    if (body !== undefined) headers['content-type'] = 'application/x-www-form-urlencoded';
    const res = await exchange(undiciHop(request.dispatcher), {
      method,
      url,
      headers,
      authorization,
      authOrigin: url.origin,
      body,
      signal: request.signal,
      timeoutMs: request.timeoutMs,
      allowPlainRedirect: request.registryInsecure,
    });
    if (res.statusCode === 200)
      return { kind: 'token', body: await readBounded(res.body, TOKEN_BODY_LIMIT, 'token answer') };
    const what = `token server ${url.origin}${url.pathname}`;
    // A POST the server does not implement falls back to GET; anything else is final.
    if (method === 'POST' && (res.statusCode === 400 || res.statusCode === 404 || res.statusCode === 405)) {
      await discard(res.body);
      return {
        kind: 'refused',
        failure: new RegistryFailure('REG_AUTH_REFUSED', `${what}: POST answered ${res.statusCode}`, {
          status: res.statusCode,
        }),
      };
    }
    const failure = await failureFromStatus(res, method, what, this.#options.now());
    if (failure.code === 'REG_UNAUTHORIZED' || failure.code === 'REG_FORBIDDEN')
      throw new RegistryFailure('REG_AUTH_REFUSED', `${what} refused the credentials (${res.statusCode})`, {
        status: res.statusCode,
      });
    throw failure;
  }

  #parse(body: Buffer, fetchedAt: number): CachedToken {
    let doc: unknown;
    try {
      doc = JSON.parse(body.toString('utf8'));
    } catch {
      throw new RegistryFailure('REG_INVALID_RESPONSE', 'token server answered something that is not JSON');
    }
    const fields = (typeof doc === 'object' && doc !== null ? doc : {}) as Record<string, unknown>;
    const token = typeof fields['token'] === 'string' ? fields['token'] : fields['access_token'];
    if (typeof token !== 'string' || token.length === 0)
      throw new RegistryFailure('REG_INVALID_RESPONSE', 'token server answer has no token');
    const expiresIn = fields['expires_in'];
    const lifetime =
      typeof expiresIn === 'number' && Number.isFinite(expiresIn) && expiresIn > 0
        ? expiresIn * 1000
        : DEFAULT_TOKEN_LIFETIME_MS;
    // Renew a little early so a token never expires between our check and the registry's.
    const margin = Math.min(10_000, lifetime / 10);
    return { token, expiresAt: fetchedAt + lifetime - margin };
  }
}

/** The token realm as a URL: HTTP(S) only, and plain HTTP with credentials only to an insecure or loopback host. */
function tokenRealm(realm: string, request: AuthorizeRequest): URL {
  let url: URL;
  try {
    url = new URL(realm);
  } catch {
    throw new RegistryFailure('REG_AUTH_UNSUPPORTED', `token realm ${JSON.stringify(realm)} is not a URL`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:')
    throw new RegistryFailure('REG_AUTH_UNSUPPORTED', `token realm has unsupported scheme ${url.protocol}`);
  if (
    request.credential !== undefined &&
    url.protocol === 'http:' &&
    !request.registryInsecure &&
    !isLoopbackHost(url.host)
  )
    throw new RegistryFailure(
      'REG_INSECURE_REFUSED',
      `refusing to send credentials to plain-HTTP token realm ${url.origin}`,
    );
  return url;
}

/** The OAuth2 token form: a refresh_token grant for an identity token, else a password grant. */
function tokenForm(credential: RegistryCredential, service: string, scopes: readonly string[]): string {
  const form = new URLSearchParams();
  if (credential.kind === 'identityToken') {
    form.set('grant_type', 'refresh_token');
    form.set('refresh_token', credential.token);
  } else {
    form.set('grant_type', 'password');
    form.set('username', credential.username);
    form.set('password', credential.password);
  }
  if (service) form.set('service', service);
  if (scopes.length > 0) form.set('scope', scopes.join(' '));
  form.set('client_id', CLIENT_ID);
  return form.toString();
}

/** The Basic Authorization of a username/password credential, for the GET form of the token request. */
function basicAuthorization(credential: RegistryCredential | undefined): string | undefined {
  if (credential?.kind !== 'basic') return undefined;
  return `Basic ${Buffer.from(`${credential.username}:${credential.password}`, 'utf8').toString('base64')}`;
}
