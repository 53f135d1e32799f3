// Reading the CLI's inputs: config files of map objects (files, directories, stdin) and manifests. The
// text is loaded by core/mapping/load.ts. Every read is bounded: a regular file is refused by its size
// before it is read, anything else (stdin, a pipe, /dev/zero) is read up to the limit and then refused,
// so a huge or endless input costs at most the limit in memory, never the heap.
import { open, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { configFileNames, type LoadedMaps, loadMapsFromTexts, type MapText } from '../core/mapping/index.ts';
import { InputTooLarge, UsageError } from './errors.ts';

export type { LoadedMaps };

/** The default of --max-input-bytes: far above any real config or rendered chart, far below a heap. */
export const DEFAULT_MAX_INPUT_BYTES = 16 * 1024 * 1024;

const SIZE_UNITS: Record<string, number> = { '': 1, Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30 };

/** A --max-input-bytes value: a byte count, or with Ki, Mi or Gi (16Mi). */
export function parseByteSize(value: string, flag: string): number {
  const m = /^(\d{1,12})(|Ki|Mi|Gi)$/.exec(value.trim());
  const bytes = m ? Number(m[1]) * SIZE_UNITS[m[2]!]! : Number.NaN;
  if (!Number.isSafeInteger(bytes) || bytes < 1)
    throw new UsageError(
      `${flag} ${JSON.stringify(value)} is not a size; write it like 16Mi, 512Ki or 1048576`,
    );
  return bytes;
}

const mib = (bytes: number): string =>
  bytes % 2 ** 20 === 0
    ? `${bytes / 2 ** 20} MiB`
    : bytes % 1024 === 0
      ? `${bytes / 1024} KiB`
      : `${bytes} bytes`;

function tooLarge(name: string, limit: number, size?: number): UsageError {
  return new InputTooLarge(
    `${name} is ${size === undefined ? 'larger than' : `${mib(size)}, over`} the input limit of ${mib(limit)}; raise it with --max-input-bytes if that much is meant`,
  );
}

function cannotRead(path: string, err: unknown): UsageError {
  const code = (err as NodeJS.ErrnoException).code;
  const why =
    code === 'ENOENT'
      ? 'no such file'
      : code === 'EISDIR'
        ? 'it is a directory'
        : code === 'EACCES'
          ? 'permission denied'
          : (code ?? (err as Error).message);
  return new UsageError(`cannot read ${path}: ${why}`, { cause: err });
}

async function readStdin(stdin: NodeJS.ReadableStream, maxBytes: number): Promise<string> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of stdin) {
    const buf = Buffer.from(chunk as Buffer);
    total += buf.length;
    if (total > maxBytes) throw tooLarge('stdin', maxBytes);
    chunks.push(buf);
  }
  return Buffer.concat(chunks).toString('utf8');
}

type FileHandle = Awaited<ReturnType<typeof open>>;

/** An open file's text, refused by its size when it says one, else once it passes maxBytes. */
async function readOpenFile(handle: FileHandle, path: string, maxBytes: number): Promise<string> {
  const info = await handle.stat();
  if (info.isDirectory()) throw cannotRead(path, Object.assign(new Error(), { code: 'EISDIR' }));
  // A regular file says its size: refuse it before reading a byte.
  if (info.isFile() && info.size > maxBytes) throw tooLarge(path, maxBytes, info.size);
  // Devices and pipes do not: read in chunks, at most one byte more than allowed.
  const chunks: Buffer[] = [];
  let total = 0;
  for (;;) {
    const chunk = Buffer.allocUnsafe(Math.min(1 << 20, maxBytes + 1 - total));
    const { bytesRead } = await handle.read(chunk, 0, chunk.length, null);
    if (bytesRead === 0) break;
    total += bytesRead;
    if (total > maxBytes) throw tooLarge(path, maxBytes, info.isFile() ? total : undefined);
    chunks.push(chunk.subarray(0, bytesRead));
  }
  return Buffer.concat(chunks, total).toString('utf8');
}

/** Reads stdin ("-") or a file, refusing more than maxBytes. */
export async function readInput(
  path: string,
  stdin: NodeJS.ReadableStream,
  maxBytes: number,
): Promise<string> {
  if (path === '-') return readStdin(stdin, maxBytes);
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch (err) {
    throw cannotRead(path, err);
  }
  try {
    return await readOpenFile(handle, path, maxBytes);
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw cannotRead(path, err);
  } finally {
    await handle.close();
  }
}

/** Files a config value contributes: itself, or a directory's map files (configFileNames). */
async function configFiles(path: string): Promise<string[]> {
  if (path === '-') return [path];
  let info: Awaited<ReturnType<typeof stat>>;
  try {
    info = await stat(path);
  } catch (err) {
    throw cannotRead(path, err);
  }
  if (!info.isDirectory()) return [path];
  const names = configFileNames(await readdir(path));
  if (names.length === 0)
    throw new UsageError(`--config ${path}: the directory holds no .yaml, .yml or .json file`);
  return names.map((n) => join(path, n));
}

interface InputOptions {
  readonly stdin: NodeJS.ReadableStream;
  /** Limit over all the files read together. */
  readonly maxBytes: number;
}

/** Texts of --config values (files, directories, "-"), the limit counted over all of them. */
async function readConfigTexts(paths: readonly string[], options: InputOptions): Promise<MapText[]> {
  const files = (await Promise.all(paths.map(configFiles))).flat();
  const texts: MapText[] = [];
  let left = options.maxBytes;
  for (const file of files) {
    let text: string;
    try {
      text = await readInput(file, options.stdin, left);
    } catch (err) {
      if (err instanceof InputTooLarge && left < options.maxBytes)
        throw new InputTooLarge(
          `the --config inputs together are over the input limit of ${mib(options.maxBytes)} (reached at ${file}); raise it with --max-input-bytes if that much is meant`,
        );
      throw err;
    }
    left -= Buffer.byteLength(text);
    texts.push({ text, source: file === '-' ? '<stdin>' : file });
  }
  return texts;
}

/** Map objects of every --config value, read as one set. */
export async function loadMaps(paths: readonly string[], options: InputOptions): Promise<LoadedMaps> {
  return loadMapsFromTexts(await readConfigTexts(paths, options));
}
