// Small builders the registry-client tests share: references, credentials, keyrings and a plain-HTTP
// client for a loopback registry.

import { type ImageReference, parseReference } from '../../src/core/reference/index.ts';
import { RegistryClient, type RegistryClientOptions } from '../../src/registry/client.ts';
import type { RegistryCredential } from '../../src/registry/credentials.ts';
import { CredentialKeyring } from '../../src/registry/keyring.ts';

/** A reference the test knows to be valid. */
export function ref(text: string): ImageReference {
  const parsed = parseReference(text);
  if (!parsed.ok) throw new Error(`bad test reference ${text}: ${parsed.error.message}`);
  return parsed.ref;
}

export function basic(username: string, password: string, source = `test ${username}`): RegistryCredential {
  return { kind: 'basic', username, password, source };
}

export function keyring(host: string, ...credentials: RegistryCredential[]): CredentialKeyring {
  return new CredentialKeyring(credentials.map((credential) => ({ key: host, credential })));
}

/** A client that speaks plain HTTP to `host`. */
export function plain(host: string, extra: Partial<RegistryClientOptions> = {}): RegistryClient {
  return new RegistryClient({ endpoints: { [host]: { scheme: 'http' } }, ...extra });
}

/** "ok", or the code of the failure. */
export function errorCode(result: { ok: true } | { ok: false; error: { code: string } }): string {
  return result.ok ? 'ok' : result.error.code;
}
