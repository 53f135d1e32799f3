// The registry library: OCI distribution client (manifests and auth), credentials, and the existence
// oracle. Blobs are the cache's (src/cache/transport/).
export { type AuthChallenge, parseChallenges } from './challenge.ts';
export {
  type CallOptions,
  DEFAULT_MAX_MANIFEST_BYTES,
  HEAD_REFUSAL_MEMORY_MS,
  type Manifest,
  type ManifestCheck,
  type ManifestHead,
  type PingResult,
  RegistryClient,
  type RegistryClientOptions,
  type RegistrySession,
  type SendRequest,
} from './client.ts';
export {
  type CredentialEntry,
  type CredentialError,
  type CredentialErrorCode,
  type CredentialParseResult,
  type PullSecret,
  parseDockerCfg,
  parseDockerConfigJson,
  parsePullSecret,
  type RegistryCredential,
} from './credentials.ts';
export { type Endpoint, type EndpointSettings, isLoopbackHost, resolveEndpoint } from './endpoint.ts';
export { outcomeOf, type RegistryError, type RegistryErrorCode, type RegistryResult } from './errors.ts';
export {
  ExistenceOracle,
  type ExistenceOracleOptions,
  type ExistenceProbe,
  type ExistenceStats,
  type ExistsOptions,
  type OracleEvent,
  type OracleObserver,
  type ProbeReport,
  registryProbe,
} from './existence-oracle.ts';
export { CredentialKeyring, type CredentialSource, globMatch, normalizeCredentialKey } from './keyring.ts';
export * from './media-types.ts';
