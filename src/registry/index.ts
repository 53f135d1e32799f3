// The registry library: OCI distribution client (manifests and auth), credentials, and the existence
// oracle. Blobs are the cache's (src/cache/transport/).

export { type Manifest, RegistryClient, type RegistryClientOptions, type UploadSession } from './client.ts';
export { parseDockerConfigJson, parsePullSecret } from './credentials.ts';
export type { RegistryError, RegistryErrorCode, RegistryResult } from './errors.ts';
export { ExistenceOracle, type OracleObserver, registryProbe } from './existence-oracle.ts';
export { CredentialKeyring, type CredentialSource } from './keyring.ts';
export * from './media-types.ts';
export { Semaphore } from './semaphore.ts';
