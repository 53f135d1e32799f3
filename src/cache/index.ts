// Assembles a running cache from its config: reads the files the config names (CAs, credentials,
// htpasswd, token), builds the registry client for exactly the configured upstreams, opens the store.
import { readFile } from 'node:fs/promises';
import { parseDuration } from '../core/duration.ts';
import type { ProxyConfig } from '../core/proxy.ts';
import type { Logger } from '../observe/log.ts';
import { MetricsRegistry } from '../observe/metrics.ts';
import { RegistryClient } from '../registry/client.ts';
import { parseDockerConfigJson } from '../registry/credentials.ts';
import type { EndpointSettings } from '../registry/endpoint.ts';
import { CredentialKeyring, type CredentialSource } from '../registry/keyring.ts';
import { type ClientAuth, htpasswdAuth, parseHtpasswd, tokenAuth } from './client-auth.ts';
import type { CacheConfig, UpstreamConfig } from './config.ts';
import { CacheSetupError } from './errors.ts';
import { type RunningCache, startCacheServer } from './server.ts';
import { DiskStore } from './store/disk.ts';
import type { CacheStore } from './store/types.ts';

export { type CacheConfig, checkCacheConfig, parseCacheConfig } from './config.ts';
export { CacheSetupError } from './errors.ts';
export type { RunningCache } from './server.ts';

export interface CacheInstance extends RunningCache {
  readonly store: CacheStore;
  readonly metrics: MetricsRegistry;
}

async function readNamed(field: string, path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw new CacheSetupError(
      `${field}: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
    );
  }
}

function ms(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const d = parseDuration(text);
  return d.ok ? d.ms : undefined;
}

async function endpointOf(u: UpstreamConfig, at: string): Promise<EndpointSettings> {
  return {
    scheme: u.plainHttp ? 'http' : 'https',
    insecure: u.insecure ?? false,
    ...(u.caFile === undefined ? {} : { caPem: await readNamed(`${at}.caFile`, u.caFile) }),
    connectTimeoutMs: ms(u.connectTimeout) ?? 5_000,
    requestTimeoutMs: ms(u.timeout) ?? 30_000,
    maxConcurrent: u.maxConcurrent ?? 16,
  };
}

/** Credentials per upstream: an upstream's files only ever answer for that upstream. */
async function credentialsOf(config: CacheConfig): Promise<CredentialSource> {
  const byHost = new Map<string, CredentialKeyring>();
  for (const [i, u] of config.upstreams.entries()) {
    const at = `upstreams[${i}]`;
    const keyring = new CredentialKeyring();
    if (u.dockerConfig !== undefined) {
      const parsed = parseDockerConfigJson(
        await readNamed(`${at}.dockerConfig`, u.dockerConfig),
        u.dockerConfig,
      );
      if (!parsed.ok) throw new CacheSetupError(`${at}.dockerConfig: ${parsed.error.message}`);
      keyring.add(parsed.value);
    }
    if (u.username !== undefined && u.passwordFile !== undefined) {
      const password = (await readNamed(`${at}.passwordFile`, u.passwordFile)).replace(/\r?\n$/, '');
      keyring.add([
        {
          key: u.host,
          credential: { kind: 'basic', username: u.username, password, source: `${at}.username` },
        },
      ]);
    }
    byHost.set(u.host, keyring);
  }
  return { lookup: (registry, repository) => byHost.get(registry)?.lookup(registry, repository) ?? [] };
}

async function clientAuthOf(config: CacheConfig): Promise<ClientAuth | undefined> {
  const auth = config.clientAuth;
  if (auth?.tokenFile !== undefined) {
    const token = (await readNamed('clientAuth.tokenFile', auth.tokenFile)).trim();
    if (token.length < 16)
      throw new CacheSetupError('clientAuth.tokenFile: the token must have at least 16 characters');
    return tokenAuth(token);
  }
  if (auth?.htpasswd !== undefined) {
    const parsed = parseHtpasswd(await readNamed('clientAuth.htpasswd', auth.htpasswd), auth.htpasswd);
    if (parsed.errors.length > 0)
      throw new CacheSetupError(`clientAuth.htpasswd: ${parsed.errors.join('; ')}`);
    if (parsed.users.size === 0)
      throw new CacheSetupError(`clientAuth.htpasswd: ${auth.htpasswd} has no entries`);
    return htpasswdAuth(parsed.users);
  }
  return undefined;
}

async function openStore(
  config: CacheConfig,
  log: Logger,
  now: () => number,
  proxy: ProxyConfig | undefined,
): Promise<CacheStore> {
  const { storage } = config;
  if (storage.s3 === undefined) {
    const dir = storage.dir as string;
    try {
      return await DiskStore.open({
        dir,
        maxSize: storage.maxSize,
        fsync: storage.fsync,
        directIO: storage.directIO,
        now,
      });
    } catch (err) {
      throw new CacheSetupError(`storage.dir: cannot use ${dir}: ${(err as Error).message}`);
    }
  }
  const s3 = storage.s3;
  const caPem = s3.caFile === undefined ? undefined : await readNamed('storage.s3.caFile', s3.caFile);
  if (s3.credentialsFile !== undefined) await readNamed('storage.s3.credentialsFile', s3.credentialsFile);
  // Loaded only here: the AWS SDK costs the disk store neither start-up time nor memory.
  const { S3Store } = await import('./store/s3/store.ts');
  try {
    return await S3Store.open({
      s3,
      spoolDir: storage.dir,
      maxSize: storage.maxSize,
      directIO: storage.directIO,
      caPem,
      now,
      proxy,
      onBackgroundError: (what, err) => log.warn(`store: cannot ${what}`, { error: err }),
    });
  } catch (err) {
    throw new CacheSetupError(
      `storage.s3: cannot use ${s3.bucket}${s3.endpoint ? ` at ${s3.endpoint}` : ''}: ${(err as Error).message}; check endpoint, bucket (it must exist), credentials and region`,
    );
  }
}

/** Starts a cache; `close()` stops serving and closes upstream connections. */
export async function startCache(
  config: CacheConfig,
  log: Logger,
  options: { now?: (() => number) | undefined; proxy?: ProxyConfig | undefined } = {},
): Promise<CacheInstance> {
  const { now = Date.now, proxy } = options;
  const endpoints: Record<string, EndpointSettings> = {};
  for (const [i, u] of config.upstreams.entries()) endpoints[u.host] = await endpointOf(u, `upstreams[${i}]`);
  const client = new RegistryClient({
    endpoints,
    credentials: await credentialsOf(config),
    userAgent: 'pullmap-cache',
    proxy,
  });
  const clientAuth = await clientAuthOf(config);
  let store: CacheStore;
  try {
    store = await openStore(config, log, now, proxy);
  } catch (err) {
    await client.close();
    throw err;
  }
  const metrics = new MetricsRegistry();
  metrics.processMetrics(now(), now);
  let running: RunningCache;
  try {
    running = await startCacheServer({ config, store, client, metrics, log, clientAuth, now });
  } catch (err) {
    await client.close();
    throw new CacheSetupError(
      `listen: cannot serve on ${config.listen.host}:${config.listen.port}: ${(err as Error).message}`,
    );
  }
  void store.collect().catch((err: unknown) => log.error('garbage collection failed', { error: err }));
  return {
    ...running,
    store,
    metrics,
    close: async () => {
      await running.close();
      await client.close();
      await store.close?.();
    },
  };
}
