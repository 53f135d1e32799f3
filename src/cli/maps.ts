// Loading a config file of map objects: the same objects the CRDs hold, checked by the same code.
import { readFile } from 'node:fs/promises';
import { loadYamlObjects } from '../core/config.ts';
import {
  type Analysis,
  analyzeMaps,
  buildSnapshot,
  DEFAULT_SNAPSHOT_OPTIONS,
  type MapSnapshot,
  type SnapshotOptions,
} from '../core/mapping/index.ts';

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export interface LoadedMaps {
  readonly analysis: Analysis;
  readonly snapshot: MapSnapshot;
  /** Problems that make the file unusable (unreadable, malformed YAML, not map objects). */
  readonly errors: readonly string[];
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

export function loadMapsFromText(
  text: string,
  source: string,
  options: SnapshotOptions = DEFAULT_SNAPSHOT_OPTIONS,
): LoadedMaps {
  const loaded = loadYamlObjects(text, source);
  const errors = [...loaded.errors];
  for (const doc of loaded.objects) {
    const kind = (doc.value as { kind?: unknown }).kind;
    if (kind !== 'ImageMap' && kind !== 'ClusterImageMap') {
      errors.push(
        `${source}:${doc.line}: kind ${JSON.stringify(kind ?? null)} is not a map object; a config holds ImageMap and ClusterImageMap objects`,
      );
    }
  }
  const analysis = analyzeMaps(loaded.objects.map((d) => ({ current: d.value })));
  return { analysis, snapshot: buildSnapshot(analysis.accepted, options), errors };
}

export async function loadMaps(path: string, stdin: NodeJS.ReadableStream): Promise<LoadedMaps> {
  return loadMapsFromText(await readInput(path, stdin), path);
}
