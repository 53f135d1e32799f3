// `pullmap cache --config FILE`: runs the pull-through cache until SIGTERM or SIGINT.
import type { ListenAddress } from '../core/net.ts';
import { proxySettingsFromEnv, redactProxy } from '../core/proxy.ts';
import { createLogger } from '../observe/log.ts';
import { proxyConfigOf } from './existence.ts';
import type { CliIO } from './io.ts';
import { readInput, UsageError } from './maps.ts';

export interface CacheFlags {
  readonly config: string;
  /** Overrides the config's listen address. */
  readonly listen: ListenAddress | undefined;
}

/** Runs until `stopped` resolves (SIGTERM or SIGINT in the real command), then closes the cache. */
export async function cache(flags: CacheFlags, io: CliIO, stopped: Promise<string>): Promise<number> {
  // Loaded here, not at start-up: other commands do not pay for the server and the registry client.
  const { CacheSetupError, parseCacheConfig, startCache } = await import('../cache/index.ts');
  const text = await readInput(flags.config, io.stdin);
  const parsed = parseCacheConfig(text, flags.config);
  if (!parsed.ok) throw new UsageError(`invalid cache config:\n  ${parsed.errors.join('\n  ')}`);
  const config = flags.listen ? { ...parsed.config, listen: flags.listen } : parsed.config;
  const proxy = proxyConfigOf(proxySettingsFromEnv(io.env));
  const log = createLogger({ level: config.logLevel, out: io.stderr, base: { component: 'cache' } });
  let running: Awaited<ReturnType<typeof startCache>>;
  try {
    running = await startCache(config, log, { proxy });
  } catch (err) {
    if (err instanceof CacheSetupError) throw new UsageError(err.message);
    throw err;
  }
  log.info('serving', {
    address: running.address,
    upstreams: config.upstreams.map((u) => u.host),
    store: config.storage.dir,
    storedBytes: running.store.usedBytes,
    ...(proxy.https ? { httpsProxy: redactProxy(proxy.https) } : {}),
    ...(proxy.http ? { httpProxy: redactProxy(proxy.http) } : {}),
  });
  log.info('stopping', { signal: await stopped });
  await running.close();
  return 0;
}
