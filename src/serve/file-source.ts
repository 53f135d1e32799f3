// Maps from a config file, or from the embedded default when no file is given: the webhook then works
// with no cluster at all. The file is checked for changes on an interval (a ConfigMap mount is swapped
// by symlink, which stat follows). A changed file is taken whole or not at all: one that is unreadable,
// too large, malformed, holds an Invalid or conflicting map, or no map at all (a non-atomic write caught
// half-way) keeps the maps in force, is logged with its findings and shows in the metrics.

import { constants } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import {
  findingLines,
  type LoadedMaps,
  loadMapsFromText,
  type SnapshotOptions,
} from '../core/mapping/index.ts';
import type { Logger } from '../observe/log.ts';
import type { MetricsRegistry } from '../observe/metrics.ts';
import type { MapSource, MapState } from '../sources/map-source.ts';
import { filesStamp, watchFiles } from './watch-files.ts';

/** A map file larger than this is refused unread; a ConfigMap holds at most 1 MiB. */
const MAX_MAP_FILE_BYTES = 4 * 1024 * 1024;

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

/** The problems that keep a file from being taken: unusable text, Invalid or conflicting maps. */
function problemsOf(loaded: LoadedMaps): string[] {
  const problems = [...loaded.errors];
  for (const v of loaded.analysis.verdicts)
    if (v.verdict !== 'Accepted')
      problems.push(...findingLines(v).map((line) => `${v.name} is ${v.verdict}: ${line}`));
  return problems;
}

function summary(loaded: LoadedMaps): Record<string, number> {
  const count = (v: string) => loaded.analysis.verdicts.filter((x) => x.verdict === v).length;
  return { accepted: count('Accepted'), conflict: count('Conflict'), invalid: count('Invalid') };
}

const KINDS: ReadonlyArray<readonly [string, (s: import('node:fs').Stats) => boolean]> = [
  ['directory', (s) => s.isDirectory()],
  ['character device', (s) => s.isCharacterDevice()],
  ['block device', (s) => s.isBlockDevice()],
  ['named pipe', (s) => s.isFIFO()],
  ['socket', (s) => s.isSocket()],
];

/**
 * The file's text, read only if it is a regular file of at most `limit` bytes: a symlink to /dev/zero
 * or a pipe must not be read into memory. The size is checked before and while reading (it may grow).
 */
async function readMapFile(path: string, limit = MAX_MAP_FILE_BYTES): Promise<string> {
  const notRegular = (s: import('node:fs').Stats): ConfigError | undefined => {
    if (s.isFile()) return undefined;
    const kind = KINDS.find(([, is]) => is(s))?.[0] ?? 'special file';
    return new ConfigError(`${path} is a ${kind}, not a regular file; give a YAML file of map objects`);
  };
  const tooLarge = (size: string) =>
    new ConfigError(
      `${path} is ${size} bytes; a map file may have at most ${limit} bytes: split the maps or apply them to the cluster (--maps-from cluster)`,
    );
  const before = await stat(path);
  const bad = notRegular(before);
  if (bad) throw bad;
  if (before.size > limit) throw tooLarge(String(before.size));
  // O_NONBLOCK: if the path was swapped for a pipe since the stat, opening it must not wait for a writer.
  const handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const now = await handle.stat();
    const swapped = notRegular(now);
    if (swapped) throw swapped;
    const buffer = Buffer.alloc(Math.min(now.size, limit) + 1);
    let length = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, length);
      if (bytesRead === 0) break;
      length += bytesRead;
      if (length === buffer.length) {
        if (length > limit) throw tooLarge(`over ${limit}`);
        break;
      }
    }
    return buffer.toString('utf8', 0, length);
  } finally {
    await handle.close();
  }
}

export interface FileSourceOptions {
  /** The config file, or undefined for the embedded default (`text`). */
  readonly path: string | undefined;
  readonly defaultText: string;
  readonly snapshotOptions: SnapshotOptions;
  readonly reloadIntervalMs: number;
  readonly logger: Logger;
  /** Where the reload metrics go (file mode with a path only). */
  readonly metrics?: MetricsRegistry;
  /** Called after every swap (metrics). */
  readonly onSwap?: (state: MapState) => void;
}

/**
 * Loads the maps once (throwing ConfigError when the file is unusable or any map in it is rejected)
 * and then watches the file, taking only versions that load completely.
 */
export async function startFileSource(options: FileSourceOptions): Promise<MapSource> {
  const { path, logger } = options;
  const name = path ?? 'the embedded default maps';
  let version = 0;
  const swap = (loaded: LoadedMaps): MapState => {
    const next = { snapshot: loaded.snapshot, analysis: loaded.analysis, version: ++version };
    options.onSwap?.(next);
    logger.info('maps loaded', { source: name, version: next.version, ...summary(loaded) });
    return next;
  };
  const load = async (reload: boolean): Promise<LoadedMaps> => {
    let text: string;
    try {
      text = path === undefined ? options.defaultText : await readMapFile(path);
    } catch (err) {
      if (err instanceof ConfigError) throw err;
      throw new ConfigError(`cannot read ${name}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    }
    const loaded = loadMapsFromText(text, name, options.snapshotOptions);
    const problems = problemsOf(loaded);
    if (problems.length > 0) throw new ConfigError(`${name}: ${problems.join('; ')}`, { cause: problems });
    // An empty file is a choice at start-up (serve no maps) but, on a reload, most likely a write
    // caught half-way: the maps in force stay until the file holds maps again.
    if (reload && loaded.analysis.verdicts.length === 0)
      throw new ConfigError(`${name} holds no map objects (a write in progress?)`, {
        cause: ['holds no map objects; write the file aside and rename it into place'],
      });
    return loaded;
  };

  const stamp = path === undefined ? '' : await filesStamp([path]).catch(() => '');
  let state: MapState = swap(await load(false));
  if (state.analysis.verdicts.length === 0) logger.warn('the config holds no map objects', { source: name });

  const metrics = path === undefined ? undefined : options.metrics;
  const inForce = metrics?.gauge(
    'pullmap_config_file_in_force',
    '1 when the config file as it is now is the one in force; 0 when its latest version was refused and older maps serve.',
  );
  const failures = metrics?.counter(
    'pullmap_config_reload_failures_total',
    'Versions of the config file that were refused (the maps in force stayed).',
  );
  const lastSuccess = metrics?.gauge(
    'pullmap_config_last_reload_success_timestamp_seconds',
    'When the config file was last loaded successfully (Unix time).',
  );
  inForce?.set(1);
  failures?.inc(undefined, 0);
  lastSuccess?.set(Date.now() / 1000);

  const watch =
    path !== undefined && options.reloadIntervalMs > 0
      ? watchFiles([path], {
          intervalMs: options.reloadIntervalMs,
          stamp,
          onChange: async () => {
            state = swap(await load(true));
            inForce?.set(1);
            lastSuccess?.set(Date.now() / 1000);
          },
          onError: (err) => {
            inForce?.set(0);
            failures?.inc();
            const findings = err instanceof ConfigError && Array.isArray(err.cause) ? err.cause : undefined;
            logger.error('config not reloaded; the maps in force stay', {
              source: name,
              version: state.version,
              ...(findings ? { findings } : { err }),
            });
          },
        })
      : undefined;
  return {
    current: () => state,
    close: async () => watch?.stop(),
  };
}
