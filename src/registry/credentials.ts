// Registry credentials as Docker and Kubernetes store them: docker `config.json` ({"auths": {...}}),
// the legacy `.dockercfg` (the same map without "auths"), and pull secrets of both types.
// Parsing is pure and strict: a bad field fails the whole source with an error naming the field,
// as the kubelet rejects a whole secret.

import type { Result } from '../core/errors.ts';
import { isObject } from '../core/json.ts';
import { type CredentialErrorCode, CredentialParseError } from './errors.ts';

export type { CredentialErrorCode };

export type RegistryCredential =
  | {
      readonly kind: 'basic';
      readonly username: string;
      readonly password: string;
      /** Where it came from, for explanations ("secret ns/name", "config.json"). */
      readonly source: string;
    }
  | {
      /** An OAuth2 refresh token (`identitytoken`), exchanged at the token server for access tokens. */
      readonly kind: 'identityToken';
      readonly username: string | undefined;
      readonly token: string;
      readonly source: string;
    };

/** One credential under the key it was stored with ("quay.io", "https://index.docker.io/v1/", ...). */
export interface CredentialEntry {
  readonly key: string;
  readonly credential: RegistryCredential;
}

interface CredentialError {
  readonly code: CredentialErrorCode;
  /** The offending field as a path: `auths["quay.io"].auth`, `data[".dockerconfigjson"]`. */
  readonly field: string;
  readonly message: string;
}

type CredentialParseResult = Result<readonly CredentialEntry[], CredentialError>;

const SECRET_TYPE_DOCKER_CONFIG_JSON = 'kubernetes.io/dockerconfigjson';
const SECRET_TYPE_DOCKERCFG = 'kubernetes.io/dockercfg';
const SECRET_KEY_DOCKER_CONFIG_JSON = '.dockerconfigjson';
const SECRET_KEY_DOCKERCFG = '.dockercfg';

// Kubernetes caps a Secret at 1 MiB; leave room for config files that are larger but still sane.
const MAX_SOURCE_BYTES = 4 * 1024 * 1024;

function fail(code: CredentialErrorCode, field: string, message: string): never {
  throw new CredentialParseError(code, field, message);
}

function guard(run: () => CredentialEntry[]): CredentialParseResult {
  try {
    return { ok: true, value: run() };
  } catch (err) {
    if (err instanceof CredentialParseError)
      return {
        ok: false,
        error: { code: err.code, field: err.field, message: `${err.field}: ${err.message}` },
      };
    throw err;
  }
}

const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true });

/** Standard base64, padded or not; Buffer.from alone would silently skip invalid characters. */
export function decodeBase64Strict(value: string): Uint8Array | undefined {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(value)) return undefined;
  const unpadded = value.replace(/=+$/, '');
  if (unpadded.length % 4 === 1) return undefined;
  if (value.length !== unpadded.length && value.length % 4 !== 0) return undefined;
  return Buffer.from(unpadded, 'base64');
}

function decodeBase64Text(value: string, field: string): string {
  const bytes = decodeBase64Strict(value);
  if (bytes === undefined) fail('CRED_BASE64_INVALID', field, 'is not valid base64');
  try {
    return STRICT_UTF8.decode(bytes);
  } catch {
    return fail('CRED_BASE64_INVALID', field, 'does not decode to UTF-8 text');
  }
}

function parseJson(text: string, field: string): unknown {
  if (text.length > MAX_SOURCE_BYTES)
    fail('CRED_TOO_LARGE', field, `is larger than ${MAX_SOURCE_BYTES} bytes`);
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    return fail('CRED_JSON_INVALID', field, `is not valid JSON (${(err as Error).message})`);
  }
}

function optionalString(entry: Record<string, unknown>, name: string, field: string): string | undefined {
  const value = entry[name];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') fail('CRED_SHAPE_INVALID', `${field}.${name}`, 'must be a string');
  return value;
}

function entryFrom(key: string, value: unknown, field: string, source: string): CredentialEntry | undefined {
  if (!isObject(value)) fail('CRED_SHAPE_INVALID', field, 'must be an object');
  const auth = optionalString(value, 'auth', field);
  let username = optionalString(value, 'username', field);
  let password = optionalString(value, 'password', field);
  const identityToken = optionalString(value, 'identitytoken', field);
  // As in Docker and the kubelet, "auth" (base64 of "user:password") wins over the separate fields.
  if (auth !== undefined && auth.length > 0) {
    const decoded = decodeBase64Text(auth, `${field}.auth`);
    const colon = decoded.indexOf(':');
    if (colon === -1)
      fail('CRED_AUTH_FORMAT', `${field}.auth`, 'must be base64 of "username:password" (no ":" found)');
    username = decoded.slice(0, colon);
    password = decoded.slice(colon + 1);
  }
  if (identityToken !== undefined && identityToken.length > 0) {
    return { key, credential: { kind: 'identityToken', username, token: identityToken, source } };
  }
  // An entry with neither (only an email, or empty strings) gives nothing to authenticate with.
  if ((username === undefined || username === '') && (password === undefined || password === ''))
    return undefined;
  return { key, credential: { kind: 'basic', username: username ?? '', password: password ?? '', source } };
}

function entriesFrom(map: unknown, field: string, source: string): CredentialEntry[] {
  if (!isObject(map)) fail('CRED_SHAPE_INVALID', field, 'must be an object keyed by registry');
  const out: CredentialEntry[] = [];
  for (const [key, value] of Object.entries(map)) {
    const entry = entryFrom(key, value, `${field}[${JSON.stringify(key)}]`, source);
    if (entry) out.push(entry);
  }
  return out;
}

/** Docker's `config.json`: `{"auths": {"<registry>": {"auth": "..."}}}`. Credential helpers are ignored. */
export function parseDockerConfigJson(text: string, source = 'config.json'): CredentialParseResult {
  return guard(() => {
    const doc = parseJson(text, source);
    if (!isObject(doc)) fail('CRED_SHAPE_INVALID', source, 'must be a JSON object');
    if (doc['auths'] === undefined) return [];
    return entriesFrom(doc['auths'], 'auths', source);
  });
}

/** The legacy `.dockercfg`: the registry map itself, without the "auths" wrapper. */
export function parseDockerCfg(text: string, source = '.dockercfg'): CredentialParseResult {
  return guard(() => entriesFrom(parseJson(text, source), source, source));
}

/** The parts of a Secret that matter here (as the API returns it: `data` values are base64). */
interface PullSecret {
  readonly metadata?:
    | { readonly namespace?: string | undefined; readonly name?: string | undefined }
    | undefined;
  readonly type?: string | undefined;
  readonly data?: Readonly<Record<string, string>> | undefined;
}

/** A `kubernetes.io/dockerconfigjson` or `kubernetes.io/dockercfg` Secret. */
export function parsePullSecret(secret: PullSecret): CredentialParseResult {
  const name = `secret ${secret.metadata?.namespace ?? ''}/${secret.metadata?.name ?? ''}`;
  return guard(() => {
    const key =
      secret.type === SECRET_TYPE_DOCKER_CONFIG_JSON
        ? SECRET_KEY_DOCKER_CONFIG_JSON
        : secret.type === SECRET_TYPE_DOCKERCFG
          ? SECRET_KEY_DOCKERCFG
          : fail(
              'CRED_SECRET_TYPE',
              'type',
              `is ${JSON.stringify(secret.type ?? '')}; expected "${SECRET_TYPE_DOCKER_CONFIG_JSON}" or "${SECRET_TYPE_DOCKERCFG}"`,
            );
    const field = `data[${JSON.stringify(key)}]`;
    const encoded = secret.data?.[key];
    if (typeof encoded !== 'string' || encoded.length === 0)
      fail('CRED_SECRET_DATA_MISSING', field, 'is missing');
    const text = decodeBase64Text(encoded, field);
    const doc = parseJson(text, field);
    if (key === SECRET_KEY_DOCKERCFG) return entriesFrom(doc, field, name);
    if (!isObject(doc)) fail('CRED_SHAPE_INVALID', field, 'must be a JSON object');
    if (doc['auths'] === undefined) return [];
    return entriesFrom(doc['auths'], `${field}.auths`, name);
  });
}
