// `pullmap cache --config FILE`: runs the pull-through cache until SIGTERM or SIGINT.
import { createLogger } from '../observe/log.ts';
import { readInput, UsageError } from './maps.ts';
import type { CliIO } from './run.ts';

export interface CacheFlags {
  readonly config: string;
  /** Overrides the config's listen address. */
  readonly listen: string | undefined;
}

export async function cache(flags: CacheFlags, io: CliIO): Promise<number> {
  // Loaded here, not at start-up: other commands do not pay for the server and the registry client.
  const { CacheSetupError, parseCacheConfig, startCache } = await import('../cache/index.ts');
  const text = await readInput(flags.config, io.stdin);
  let parsed = parseCacheConfig(text, flags.config);
  if (parsed.ok && flags.listen !== undefined) {
    const raw = { ...(await import('yaml')).parse(text), listen: flags.listen };
    parsed = (await import('../cache/config.ts')).checkCacheConfig(raw, `--listen / ${flags.config}`);
  }
  if (!parsed.ok) throw new UsageError(`invalid cache config:\n  ${parsed.errors.join('\n  ')}`);
  const config = parsed.config;
  const log = createLogger({ level: config.logLevel, out: io.stderr, base: { component: 'cache' } });
  let running: Awaited<ReturnType<typeof startCache>>;
  try {
    running = await startCache(config, log);
  } catch (err) {
    if (err instanceof CacheSetupError) throw new UsageError(err.message);
    throw err;
  }
  log.info('serving', {
    address: running.address,
    upstreams: config.upstreams.map((u) => u.host),
    store: config.storage.dir,
    storedBytes: running.store.usedBytes,
  });
  await new Promise<void>((resolve) => {
    const stop = (signal: string): void => {
      log.info('stopping', { signal });
      process.off('SIGTERM', onTerm);
      process.off('SIGINT', onInt);
      resolve();
    };
    const onTerm = (): void => stop('SIGTERM');
    const onInt = (): void => stop('SIGINT');
    process.on('SIGTERM', onTerm);
    process.on('SIGINT', onInt);
  });
  await running.close();
  return 0;
}
