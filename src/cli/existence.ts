// The existence source the CLI hands to decisions: a registry client behind the existence oracle,
// configured from flags. Probes only happen for `when: IfExists` mappings.
import { readFile } from 'node:fs/promises';
import { parseDuration } from '../core/duration.ts';
import type { ExistenceSource } from '../decision/resolve.ts';
import {
  CredentialKeyring,
  type EndpointSettings,
  ExistenceOracle,
  parseDockerConfigJson,
  RegistryClient,
  registryProbe,
} from '../registry/index.ts';
import { UsageError } from './maps.ts';

export interface RegistryFlags {
  /** Registries spoken to over plain HTTP (loopback hosts, or any host with --insecure). */
  plainHttp: readonly string[];
  /** PEM files of extra CAs trusted for every registry. */
  caFiles: readonly string[];
  /** A docker config.json with credentials. */
  dockerConfig: string | undefined;
  /** How long one decision may wait for registries, like "5s". */
  probeTimeout: string;
}

export interface CliExistence {
  readonly source: ExistenceSource;
  close(): Promise<void>;
}

export async function existenceFromFlags(flags: RegistryFlags): Promise<CliExistence> {
  const timeout = parseDuration(flags.probeTimeout);
  if (!timeout.ok) throw new UsageError(`--probe-timeout: ${timeout.message}`);
  const caPem = await Promise.all(
    flags.caFiles.map((f) =>
      readFile(f, 'utf8').catch(() => Promise.reject(new UsageError(`--registry-ca: cannot read ${f}`))),
    ),
  );
  const keyring = new CredentialKeyring();
  if (flags.dockerConfig !== undefined) {
    const text = await readFile(flags.dockerConfig, 'utf8').catch(() =>
      Promise.reject(new UsageError(`--docker-config: cannot read ${flags.dockerConfig}`)),
    );
    const parsed = parseDockerConfigJson(text, flags.dockerConfig);
    if (!parsed.ok) throw new UsageError(`--docker-config: ${parsed.error.field}: ${parsed.error.message}`);
    keyring.add(parsed.entries);
  }
  const defaults: EndpointSettings = { caPem, requestTimeoutMs: Math.max(timeout.ms, 1000) };
  const endpoints: Record<string, EndpointSettings> = {};
  for (const host of flags.plainHttp) endpoints[host] = { ...defaults, scheme: 'http' };
  const client = new RegistryClient({ endpoints, defaults, credentials: keyring });
  const oracle = new ExistenceOracle({ probe: registryProbe(client), probeTimeoutMs: timeout.ms });
  return {
    source: {
      exists: (candidate, options) =>
        oracle.exists(candidate, { signal: options?.signal ?? AbortSignal.timeout(timeout.ms) }),
    },
    close: () => client.close(),
  };
}
