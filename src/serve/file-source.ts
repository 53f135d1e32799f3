// Maps from a config file, or from the embedded default when no file is given: the webhook then works
// with no cluster at all. The file is checked for changes on an interval (a ConfigMap mount is swapped
// by symlink, which stat follows); a change that does not load keeps the maps in force and is logged.

import { readFile } from 'node:fs/promises';
import { type LoadedMaps, loadMapsFromText, type SnapshotOptions } from '../core/mapping/index.ts';
import type { MapSource, MapState } from '../decision/map-source.ts';
import type { Logger } from '../observe/log.ts';
import { filesStamp, watchFiles } from './watch-files.ts';

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

function usable(loaded: LoadedMaps, source: string): void {
  if (loaded.errors.length > 0) throw new ConfigError(`${source}: ${loaded.errors.join('; ')}`);
}

function summary(loaded: LoadedMaps): Record<string, number> {
  const count = (v: string) => loaded.analysis.verdicts.filter((x) => x.verdict === v).length;
  return { accepted: count('Accepted'), conflict: count('Conflict'), invalid: count('Invalid') };
}

export interface FileSourceOptions {
  /** The config file, or undefined for the embedded default (`text`). */
  readonly path: string | undefined;
  readonly defaultText: string;
  readonly snapshotOptions: SnapshotOptions;
  readonly reloadIntervalMs: number;
  readonly logger: Logger;
  /** Called after every swap (metrics). */
  readonly onSwap?: (state: MapState) => void;
}

/** Loads the maps once (throwing ConfigError when they are unusable) and then watches the file. */
export async function startFileSource(options: FileSourceOptions): Promise<MapSource> {
  const { path, logger } = options;
  const name = path ?? 'the embedded default maps';
  let version = 0;
  const swap = (loaded: LoadedMaps): MapState => {
    const next = { snapshot: loaded.snapshot, analysis: loaded.analysis, version: ++version };
    options.onSwap?.(next);
    logger.info('maps loaded', { source: name, version: next.version, ...summary(loaded) });
    for (const v of loaded.analysis.verdicts)
      if (v.verdict !== 'Accepted')
        logger.warn('map not in force', {
          map: v.name,
          verdict: v.verdict,
          findings: v.findings.map((f) => f.message),
        });
    return next;
  };
  const read = async () => {
    const text = path === undefined ? options.defaultText : await readFile(path, 'utf8');
    const loaded = loadMapsFromText(text, name, options.snapshotOptions);
    usable(loaded, name);
    return loaded;
  };

  const stamp = path === undefined ? '' : await filesStamp([path]).catch(() => '');
  let state: MapState;
  try {
    state = swap(await read());
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(`cannot read ${name}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  const watch =
    path !== undefined && options.reloadIntervalMs > 0
      ? watchFiles([path], {
          intervalMs: options.reloadIntervalMs,
          stamp,
          onChange: async () => {
            state = swap(await read());
          },
          onError: (err) =>
            logger.error('config not reloaded; the maps in force stay', { source: name, err }),
        })
      : undefined;
  return {
    current: () => state,
    close: async () => watch?.stop(),
  };
}
