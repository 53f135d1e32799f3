// Maps from config files (several --config values, each a file or a directory of map files), or from
// the embedded default when none is given: the webhook then works with no cluster at all. The files are
// checked for changes on an interval (a ConfigMap mount is swapped by symlink, which stat follows; a
// directory is listed again, so files added or removed count). A change is taken whole or not at all:
// a file that is unreadable, too large, malformed, holds an Invalid or conflicting map, or holds no map
// any more (a non-atomic write caught half-way) keeps the whole set in force, is logged naming the file
// with its findings, and shows in the metrics.

import { constants } from 'node:fs';
import { open, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import {
  configFileNames,
  findingLines,
  type LoadedMaps,
  loadMapsFromText,
  loadMapsFromTexts,
  type MapText,
} from '../core/mapping/index.ts';
import type { Logger } from '../observe/log.ts';
import type { MetricsRegistry } from '../observe/metrics.ts';
import type { MapSource, MapState } from '../sources/map-source.ts';
import { ConfigError } from './errors.ts';
import { filesStamp, watchStamp } from './watch-files.ts';

/** A map file larger than this is refused unread; a ConfigMap holds at most 1 MiB. */
const MAX_MAP_FILE_BYTES = 4 * 1024 * 1024;
/** All the map files of a set together (several --config values, directories). */
const MAX_MAP_SET_BYTES = 16 * 1024 * 1024;
/** Map files in a set: each is stat'ed on every reload tick. */
const MAX_MAP_FILES = 1000;

/** A map file over its limit (its own class so the set's limit can be named instead). */
class MapFileTooLarge extends ConfigError {}

/** The problems that keep a set from being taken: unusable text, Invalid or conflicting maps (with their file). */
function problemsOf(loaded: LoadedMaps): string[] {
  const problems = [...loaded.errors];
  for (const v of loaded.analysis.verdicts) {
    if (v.verdict === 'Accepted') continue;
    const origin = loaded.origins.get(v.name);
    const where = origin ? `${origin.source}:${origin.line}: ` : '';
    problems.push(...findingLines(v).map((line) => `${where}${v.name} is ${v.verdict}: ${line}`));
  }
  return problems;
}

/** The files of the --config values: each file itself, each directory's map files (configFileNames). */
async function mapFilesOf(paths: readonly string[]): Promise<string[]> {
  const files: string[] = [];
  for (const path of paths) {
    if (!(await stat(path)).isDirectory()) files.push(path);
    else {
      const names = configFileNames(await readdir(path));
      if (names.length === 0)
        throw new ConfigError(`${path}: the directory holds no .yaml, .yml or .json file`);
      files.push(...names.map((n) => join(path, n)));
    }
    if (files.length > MAX_MAP_FILES)
      throw new ConfigError(
        `${paths.join(', ')}: more than ${MAX_MAP_FILES} map files; merge them, or apply the maps to the cluster (--maps-from cluster)`,
      );
  }
  return files;
}

/** A fingerprint of the set as it is now: which files (a directory's may come and go) and their versions. */
async function setStamp(paths: readonly string[]): Promise<string> {
  const files = await mapFilesOf(paths);
  return `${files.join('\u0000')}\u0001${await filesStamp(files)}`;
}

/** The texts of the set's files, each within MAX_MAP_FILE_BYTES and all within MAX_MAP_SET_BYTES. */
async function readMapFiles(paths: readonly string[]): Promise<MapText[]> {
  const texts: MapText[] = [];
  let left = MAX_MAP_SET_BYTES;
  for (const file of await mapFilesOf(paths)) {
    let text: string;
    try {
      text = await readMapFile(file, Math.min(MAX_MAP_FILE_BYTES, left));
    } catch (err) {
      if (err instanceof MapFileTooLarge && left < MAX_MAP_FILE_BYTES)
        throw new ConfigError(
          `the map files together are over ${MAX_MAP_SET_BYTES} bytes (reached at ${file}); merge maps or apply them to the cluster (--maps-from cluster)`,
        );
      throw err;
    }
    left -= Buffer.byteLength(text);
    texts.push({ text, source: file });
  }
  return texts;
}

/** The files that hold at least one named map object. */
const filesWithMaps = (loaded: LoadedMaps): Set<string> =>
  new Set([...loaded.origins.values()].map((o) => o.source));

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
    new MapFileTooLarge(
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

interface FileSourceOptions {
  /** The --config values (files, directories), or none for the embedded default (`defaultText`). */
  readonly paths: readonly string[];
  readonly defaultText: string;
  readonly reloadIntervalMs: number;
  readonly logger: Logger;
  /** Where the reload metrics go (with config files only). */
  readonly metrics?: MetricsRegistry;
  /** Called after every swap (metrics). */
  readonly onSwap?: (state: MapState) => void;
}

/**
 * Loads the maps once (throwing ConfigError when a file is unusable or any map in the set is rejected)
 * and then watches the files, taking only versions of the set that load completely.
 */
export async function startFileSource(options: FileSourceOptions): Promise<MapSource> {
  const { paths, logger } = options;
  const name = paths.length === 0 ? 'the embedded default maps' : paths.join(', ');
  let version = 0;
  let withMaps = new Set<string>();
  const swap = (loaded: LoadedMaps): MapState => {
    const next = { snapshot: loaded.snapshot, analysis: loaded.analysis, version: ++version };
    withMaps = filesWithMaps(loaded);
    options.onSwap?.(next);
    logger.info('maps loaded', { source: name, version: next.version, ...summary(loaded) });
    return next;
  };
  const load = async (reload: boolean): Promise<LoadedMaps> => {
    let loaded: LoadedMaps;
    if (paths.length === 0) loaded = loadMapsFromText(options.defaultText, name);
    else {
      let texts: MapText[];
      try {
        texts = await readMapFiles(paths);
      } catch (err) {
        if (err instanceof ConfigError) throw err;
        const e = err as NodeJS.ErrnoException;
        throw new ConfigError(`cannot read ${e.path ?? name}: ${e.code ?? String(err)}`, { cause: err });
      }
      loaded = loadMapsFromTexts(texts);
    }
    const problems = problemsOf(loaded);
    if (problems.length > 0) throw new ConfigError(`${name}: ${problems.join('; ')}`, { findings: problems });
    // An empty file is a choice at start-up (serve no maps from it) but, on a reload, a file that held
    // maps and holds none is most likely a write caught half-way: the set in force stays until it does.
    const emptied = reload ? [...withMaps].filter((f) => !filesWithMaps(loaded).has(f)) : [];
    const gone = await Promise.all(
      emptied.map((f) =>
        stat(f).then(
          () => false,
          () => true,
        ),
      ),
    );
    const halfWritten = emptied.filter((_, i) => !gone[i]);
    if (halfWritten.length > 0)
      throw new ConfigError(`${halfWritten.join(', ')} holds no map objects (a write in progress?)`, {
        findings: halfWritten.map(
          (f) => `${f} holds no map objects; write the file aside and rename it into place, or remove it`,
        ),
      });
    return loaded;
  };

  const stamp = paths.length === 0 ? '' : await setStamp(paths).catch(() => '');
  let state: MapState = swap(await load(false));
  if (state.analysis.verdicts.length === 0) logger.warn('the config holds no map objects', { source: name });

  const metrics = paths.length === 0 ? undefined : options.metrics;
  const inForce = metrics?.gauge(
    'pullmap_config_file_in_force',
    '1 when the config files as they are now are the set in force; 0 when their latest version was refused and older maps serve.',
  );
  const failures = metrics?.counter(
    'pullmap_config_reload_failures_total',
    'Versions of the config files that were refused (the maps in force stayed).',
  );
  const lastSuccess = metrics?.gauge(
    'pullmap_config_last_reload_success_timestamp_seconds',
    'When the config files were last loaded successfully (Unix time).',
  );
  inForce?.set(1);
  failures?.inc(undefined, 0);
  lastSuccess?.set(Date.now() / 1000);

  const watch =
    paths.length > 0 && options.reloadIntervalMs > 0
      ? watchStamp(() => setStamp(paths), {
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
            const findings = err instanceof ConfigError ? err.findings : undefined;
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
