// The existence source the CLI hands to decisions: a registry client behind the existence oracle,
// configured from flags. Only `when: IfExists` mappings probe, so the registry library (undici and
// all) is loaded on the first probe, not at start-up, unless registry flags ask for it up front.
import { readFile } from 'node:fs/promises';
import { parseDuration } from '../core/duration.ts';
import { type ProxyConfig, type ProxySettings, parseProxySettings } from '../core/proxy.ts';
import type { RegistryClientOptions } from '../registry/client.ts';
import type { OracleObserver } from '../registry/existence-oracle.ts';
import type { ExistenceSource } from '../sources/resolve.ts';
import { UsageError } from './errors.ts';

export interface RegistryFlags {
  /** Registries spoken to over plain HTTP (loopback hosts, or any host with --insecure). */
  plainHttp: readonly string[];
  /** PEM files of extra CAs trusted for every registry. */
  caFiles: readonly string[];
  /** A docker config.json with credentials. */
  dockerConfig: string | undefined;
  /** How long one decision may wait for registries, like "5s". */
  probeTimeout: string;
  /** HTTPS_PROXY / HTTP_PROXY / NO_PROXY from the environment. */
  proxy: ProxySettings;
  /** How long a blob upload may make no progress (copy, fill); undefined: the client's default. */
  uploadStallTimeoutMs?: number | undefined;
}

/** The proxy settings checked, or a usage error naming the variable. */
export function proxyConfigOf(settings: ProxySettings): ProxyConfig {
  const parsed = parseProxySettings(settings);
  if (!parsed.ok) throw new UsageError(parsed.errors.join('; '));
  return parsed.config;
}

interface CliExistence {
  readonly source: ExistenceSource;
  /** Forgets a candidate's cached answer (pullmap just copied the image there). */
  invalidate(candidate: string): void;
  close(): Promise<void>;
}

const readFlagFile = (flag: string, path: string): Promise<string> =>
  readFile(path, 'utf8').catch(() => Promise.reject(new UsageError(`${flag}: cannot read ${path}`)));

/** Registry client settings from the flags (files read now: a bad path is a usage error). */
export async function registryClientOptions(
  flags: Pick<RegistryFlags, 'plainHttp' | 'caFiles' | 'dockerConfig' | 'proxy' | 'uploadStallTimeoutMs'>,
  requestTimeoutMs: number,
): Promise<RegistryClientOptions> {
  const proxy = proxyConfigOf(flags.proxy);
  const registry = await import('../registry/index.ts');
  const caPem = await Promise.all(flags.caFiles.map((f) => readFlagFile('--registry-ca', f)));
  const keyring = new registry.CredentialKeyring();
  if (flags.dockerConfig !== undefined) {
    const parsed = registry.parseDockerConfigJson(
      await readFlagFile('--docker-config', flags.dockerConfig),
      flags.dockerConfig,
    );
    if (!parsed.ok) throw new UsageError(`--docker-config: ${parsed.error.field}: ${parsed.error.message}`);
    keyring.add(parsed.value);
  }
  const defaults = { caPem, requestTimeoutMs, stallTimeoutMs: flags.uploadStallTimeoutMs };
  const endpoints = Object.fromEntries(
    flags.plainHttp.map((host) => [host, { ...defaults, scheme: 'http' as const }]),
  );
  return { endpoints, defaults, credentials: keyring, proxy };
}

async function buildSource(
  flags: RegistryFlags,
  timeoutMs: number,
  observer: OracleObserver | undefined,
): Promise<CliExistence> {
  const registry = await import('../registry/index.ts');
  const client = new registry.RegistryClient(await registryClientOptions(flags, Math.max(timeoutMs, 1000)));
  const oracle = new registry.ExistenceOracle({
    probe: registry.registryProbe(client),
    probeTimeoutMs: timeoutMs,
    observer,
  });
  return {
    source: {
      // The map's TTLs ride along; within one CLI run they matter only for repeated candidates.
      exists: (candidate, options) =>
        oracle.exists(candidate, { ...options, signal: options?.signal ?? AbortSignal.timeout(timeoutMs) }),
      peek: (candidate, ttls) => oracle.peek(candidate, ttls),
    },
    invalidate: (candidate) => oracle.invalidate(candidate),
    close: () => client.close(),
  };
}

/**
 * `observer` receives the oracle's events (the webhook's metrics); a long-running server passes one
 * and gets its registry client built at once rather than on the first probe.
 */
export async function existenceFromFlags(
  flags: RegistryFlags,
  observer?: OracleObserver,
): Promise<CliExistence> {
  const timeout = parseDuration(flags.probeTimeout);
  if (!timeout.ok) throw new UsageError(`--probe-timeout: ${timeout.message}`);
  proxyConfigOf(flags.proxy); // a bad proxy variable is a usage error now, not a failed probe later
  // Files named by flags are read now, so a bad path is a usage error rather than a failed probe.
  if (flags.caFiles.length > 0 || flags.dockerConfig !== undefined || observer !== undefined)
    return buildSource(flags, timeout.ms, observer);
  let built: Promise<CliExistence> | undefined;
  return {
    source: {
      exists: async (candidate, options) => {
        built ??= buildSource(flags, timeout.ms, observer);
        return (await built).source.exists(candidate, options);
      },
    },
    invalidate: (candidate) => {
      void built?.then((b) => b.invalidate(candidate));
    },
    close: async () => {
      if (built) await (await built).close();
    },
  };
}
