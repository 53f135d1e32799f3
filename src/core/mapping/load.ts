// Map objects from YAML text (a config file, stdin, the embedded default): the same objects the CRDs
// hold, checked by the same code. Pure: reading the file is the caller's (the CLI, the file source).
import { loadYamlObjects } from '../config.ts';
import { type Analysis, analyzeMaps } from './consistency.ts';
import {
  buildSnapshot,
  DEFAULT_SNAPSHOT_OPTIONS,
  type MapSnapshot,
  type SnapshotOptions,
} from './snapshot.ts';

export interface LoadedMaps {
  readonly analysis: Analysis;
  readonly snapshot: MapSnapshot;
  /** Problems that make the text unusable (malformed YAML, not map objects). */
  readonly errors: readonly string[];
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
