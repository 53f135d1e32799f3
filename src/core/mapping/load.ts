// Map objects from YAML text (config files, stdin, the embedded default): the same objects the CRDs
// hold, checked by the same code. Pure: reading the files is the caller's (the CLI, the file source).
import { countYamlValues, loadYamlObjects } from '../config.ts';
import { type Analysis, analyzeMaps } from './consistency.ts';
import { buildSnapshot, type MapSnapshot } from './snapshot.ts';

export interface LoadedMaps {
  readonly analysis: Analysis;
  readonly snapshot: MapSnapshot;
  /** Problems that make the text unusable (malformed YAML, not map objects, a name given twice). */
  readonly errors: readonly string[];
  /** Where each named map object was read: "ClusterImageMap/hub" → its input and line. */
  readonly origins: ReadonlyMap<string, { readonly source: string; readonly line: number }>;
}

/**
 * The files a config directory contributes, like `kubectl apply -f DIR`: its .yaml, .yml and .json
 * files (not hidden ones), sorted. The CLI's --config and serve's both list directories by this rule.
 */
export function configFileNames(names: readonly string[]): string[] {
  return names.filter((n) => /\.(ya?ml|json)$/.test(n) && !n.startsWith('.')).sort();
}

/** One input's text and the name messages give it (a path, or <stdin>). */
export interface MapText {
  readonly text: string;
  readonly source: string;
}

const field = (v: unknown, key: string): unknown =>
  v !== null && typeof v === 'object' ? (v as Record<string, unknown>)[key] : undefined;

type Origin = { readonly source: string; readonly line: number };

/**
 * Why one document cannot join the set (not a map object, or a name given twice), or undefined; the
 * place of each named map is noted in `seen`.
 */
function mapProblem(value: unknown, at: Origin, seen: Map<string, Origin>): string | undefined {
  const kind = field(value, 'kind');
  if (kind !== 'ImageMap' && kind !== 'ClusterImageMap') {
    // The chart's values hold map specs under clusterImageMaps; say so when one is given as a config.
    const values = kind === undefined && field(value, 'clusterImageMaps') !== undefined;
    return `${at.source}:${at.line}: kind ${JSON.stringify(kind ?? null)} is not a map object; a config holds ImageMap and ClusterImageMap objects${values ? ' (this looks like Helm values for the chart: give it to helm with -f)' : ''}`;
  }
  const meta = field(value, 'metadata');
  const name = field(meta, 'name');
  if (typeof name !== 'string') return undefined;
  const namespace = kind === 'ImageMap' ? field(meta, 'namespace') : undefined;
  const key = `${kind}/${typeof namespace === 'string' ? `${namespace}/` : ''}${name}`;
  const first = seen.get(key);
  if (first !== undefined)
    return `${at.source}:${at.line}: ${key} is given again (first at ${first.source}:${first.line}); a cluster holds one object of that name: rename one or merge them`;
  seen.set(key, at);
  return undefined;
}

/**
 * YAML values all the inputs of a set may hold together. Parsing costs about 1 KB of memory per value
 * (a 4 MiB file of `k: 1` lines took serve past the chart's 256 MiB limit), and real maps hold a few
 * per mapping (500 mappings, the most a map may have: about 3,000), so a set over this is refused
 * before it is parsed.
 */
export const MAX_MAP_VALUES = 100_000;

/** Why the inputs hold too many values to parse, naming the one that goes over; undefined if they do not. */
function overValueLimit(inputs: readonly MapText[]): string | undefined {
  let left = MAX_MAP_VALUES;
  for (const { text, source } of inputs) {
    const values = countYamlValues(text, left);
    if (values > left)
      return `${source}: holds over ${left} YAML values${left < MAX_MAP_VALUES ? ' beside the inputs before it' : ''}; map inputs may hold ${MAX_MAP_VALUES} in all (parsing costs about 1 KB of memory each): remove what is not map objects, or apply the maps to the cluster (--maps-from cluster)`;
    left -= values;
  }
  return undefined;
}

/** Map objects of several inputs read as one set (like `kubectl apply -f a.yaml -f dir/`). */
export function loadMapsFromTexts(inputs: readonly MapText[]): LoadedMaps {
  const tooMany = overValueLimit(inputs);
  return tooMany === undefined ? loadSet(inputs) : { ...loadSet([]), errors: [tooMany] };
}

function loadSet(inputs: readonly MapText[]): LoadedMaps {
  const errors: string[] = [];
  const objects: unknown[] = [];
  // A cluster holds one object per kind, namespace and name; a second one in the input would
  // silently replace the first at `kubectl apply`, so it is refused here.
  const seen = new Map<string, Origin>();
  for (const { text, source } of inputs) {
    const loaded = loadYamlObjects(text, source);
    errors.push(...loaded.errors);
    for (const doc of loaded.objects) {
      const problem = mapProblem(doc.value, { source, line: doc.line }, seen);
      if (problem === undefined) objects.push(doc.value);
      else errors.push(problem);
    }
  }
  const analysis = analyzeMaps(objects.map((current) => ({ current })));
  return { analysis, snapshot: buildSnapshot(analysis.accepted), errors, origins: seen };
}

export function loadMapsFromText(text: string, source: string): LoadedMaps {
  return loadMapsFromTexts([{ text, source }]);
}
