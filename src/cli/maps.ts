// Reading a config file of map objects (or stdin) for a command; the text is loaded by core/mapping/load.ts.
// UsageError: the operator's input or flags cannot be used (exit code 2).
import { readFile } from 'node:fs/promises';
import { type LoadedMaps, loadMapsFromText } from '../core/mapping/index.ts';

export type { LoadedMaps };

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export async function readInput(path: string, stdin: NodeJS.ReadableStream): Promise<string> {
  if (path === '-') {
    const chunks: Buffer[] = [];
    for await (const chunk of stdin) chunks.push(Buffer.from(chunk as Buffer));
    return Buffer.concat(chunks).toString('utf8');
  }
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new UsageError(
      `cannot read ${path}: ${code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a directory' : (code ?? 'error')}`,
    );
  }
}

export async function loadMaps(path: string, stdin: NodeJS.ReadableStream): Promise<LoadedMaps> {
  return loadMapsFromText(await readInput(path, stdin), path);
}
