// Consistency of a set of maps (PRODUCT.md §3.3): which maps are accepted, and for the others the
// precise reason. `pullmap check` and the controller both call analyzeMaps, so they agree.

import { type MapObject, mapObjectSchema } from '../api/v1alpha1.ts';
import { formatName } from '../reference/index.ts';
import type { FieldIssue } from '../schema/dsl.ts';
import { type CompiledMap, compileMap, type MapRef, mapRefName, type Pattern, type Rule } from './rule.ts';

type Verdict = 'Accepted' | 'Conflict' | 'Invalid';

interface Finding {
  /** Field in this map, like "spec.mappings[1].from". */
  readonly path: string;
  readonly message: string;
  /** The other map involved, for conflicts. */
  readonly other?: string;
}

export interface MapVerdict {
  readonly ref: Pick<MapRef, 'kind' | 'namespace' | 'name'>;
  readonly name: string;
  readonly generation: number | undefined;
  readonly verdict: Verdict;
  readonly findings: readonly Finding[];
  /** What the webhook uses: this generation, the last accepted one, or nothing. */
  readonly serving: 'current' | 'previous' | 'none';
  readonly servingGeneration: number | undefined;
  readonly compiled: CompiledMap | undefined;
}

export interface MapInput {
  /** The object as read: checked against the schema here. */
  readonly current: unknown;
  /** The last generation that was accepted, which keeps serving if the current one is rejected. */
  readonly lastAccepted?: MapObject | undefined;
}

export interface Analysis {
  readonly verdicts: readonly MapVerdict[];
  /** Compiled maps the webhook should use. */
  readonly accepted: readonly CompiledMap[];
}

// --- Injectivity: each rule target as "srcBase + rest → tgtBase + rest" over reference strings. ---

type Region = 'prefix' | 'repository' | 'point';
interface Correspondence {
  readonly rule: Rule;
  readonly target: number;
  readonly region: Region;
  readonly src: string;
  readonly tgt: string;
}

/** What one source and one of its targets send where, or undefined when the pair maps no region. */
function regionOf(s: Pattern, t: Pattern): Pick<Correspondence, 'region' | 'src' | 'tgt'> | undefined {
  if (t.kind === 'all') return undefined;
  if (s.kind === 'all' || s.kind === 'prefix')
    return t.kind === 'prefix' ? { region: 'prefix', src: s.key, tgt: t.key } : undefined;
  if (s.kind === 'repository')
    return { region: 'repository', src: s.key, tgt: t.kind === 'prefix' ? t.key + s.ref.repository : t.key };
  const suffix =
    s.ref.digest !== undefined ? `@${s.ref.digest}` : `:${t.kind === 'image' ? t.ref.tag : s.ref.tag}`;
  const name = t.kind === 'prefix' ? t.key + s.ref.repository : formatName(t.ref);
  return { region: 'point', src: s.key, tgt: name + suffix };
}

function correspondences(rule: Rule): Correspondence[] {
  if (rule.identity || rule.mapping.naming === 'zarf') return []; // zarf names carry a checksum of the source
  const out: Correspondence[] = [];
  rule.targets.forEach((t, target) => {
    const region = regionOf(rule.source, t);
    if (region) out.push({ rule, target, ...region });
  });
  return out;
}

function contains(c: Correspondence, t: string): boolean {
  if (c.region === 'prefix') return t.startsWith(c.tgt);
  if (c.region === 'point') return t === c.tgt;
  return t === c.tgt || t.startsWith(`${c.tgt}:`) || t.startsWith(`${c.tgt}@`);
}

const inverse = (c: Correspondence, t: string): string =>
  c.region === 'point' ? c.src : c.src + t.slice(c.tgt.length);

/** A target both could produce from different sources, or undefined when the two are injective together. */
function collision(a: Correspondence, b: Correspondence): string | undefined {
  const t = contains(a, b.tgt) ? b.tgt : contains(b, a.tgt) ? a.tgt : undefined;
  if (t === undefined) return undefined;
  return inverse(a, t) === inverse(b, t) ? undefined : t;
}

const targetField = (c: Correspondence): string =>
  c.rule.mapping.to.length === 1
    ? `spec.mappings[${c.rule.index}].to`
    : `spec.mappings[${c.rule.index}].to[${c.target}]`;

function sameTargets(a: Rule, b: Rule): boolean {
  return (
    a.targets.length === b.targets.length &&
    a.targets.every((t, i) => t.key === b.targets[i]!.key) &&
    a.mapping.when === b.mapping.when &&
    a.mapping.naming === b.mapping.naming &&
    a.mapping.onProbeError === b.mapping.onProbeError
  );
}

const list = (to: readonly string[]): string =>
  to.length === 1 ? JSON.stringify(to[0]) : JSON.stringify(to);

/**
 * Findings of `map` against maps accepted before it. `sameScope` maps may not map one source to two
 * places; every given map must stay injective with this one.
 */
function conflicts(
  map: CompiledMap,
  sameScope: readonly CompiledMap[],
  otherScope: readonly CompiledMap[],
): Finding[] {
  const findings: Finding[] = [];
  const mine = map.rules.flatMap(correspondences);
  for (const other of [...sameScope, ...otherScope]) {
    if (sameScope.includes(other)) sourceConflicts(map, other, findings);
    collisions(mine, other, findings);
  }
  return findings;
}

/** Entries of `map` that send a source of `other` (in the same scope) somewhere else. */
function sourceConflicts(map: CompiledMap, other: CompiledMap, findings: Finding[]): void {
  const otherName = mapRefName(other.ref);
  for (const r of map.rules) {
    for (const o of other.rules) {
      if (r.source.key !== o.source.key || sameTargets(r, o)) continue;
      findings.push({
        path: `spec.mappings[${r.index}]`,
        other: otherName,
        message: `maps ${JSON.stringify(r.mapping.from)} to ${list(r.mapping.to)}, but ${otherName} spec.mappings[${o.index}] (accepted earlier) maps ${JSON.stringify(o.mapping.from)} to ${list(o.mapping.to)}; make the two entries agree or remove one`,
      });
    }
  }
}

/** Targets of `mine` that `other` can also produce from a different image. */
function collisions(mine: readonly Correspondence[], other: CompiledMap, findings: Finding[]): void {
  const otherName = mapRefName(other.ref);
  const theirs = other.rules.flatMap(correspondences);
  for (const c of mine) {
    for (const o of theirs) {
      const t = collision(c, o);
      if (t === undefined) continue;
      findings.push({
        path: targetField(c),
        other: otherName,
        message: `${JSON.stringify(c.rule.mapping.from)} → ${JSON.stringify(c.tgt)} and ${otherName} ${targetField(o).replace('.to', '')} ${JSON.stringify(o.rule.mapping.from)} → ${JSON.stringify(o.tgt)} can both produce "${t}…" from different images; keep the source in the target path (like "mirror.example/docker.io/")`,
      });
    }
  }
}

/** Findings inside one map: two of its own rules that are not injective together. */
function selfConflicts(map: CompiledMap): Finding[] {
  const findings: Finding[] = [];
  const all = map.rules.map(correspondences);
  for (let i = 0; i < all.length; i++) {
    for (let j = i + 1; j < all.length; j++) {
      for (const a of all[i]!) {
        for (const b of all[j]!) {
          const t = collision(a, b);
          if (t === undefined) continue;
          findings.push({
            path: targetField(b),
            message: `sends ${JSON.stringify(b.rule.mapping.from)} where spec.mappings[${a.rule.index}] sends ${JSON.stringify(a.rule.mapping.from)}: both can produce "${t}…" from different images; keep the source in the target path (like "mirror.example/docker.io/")`,
          });
        }
      }
    }
  }
  return findings;
}

function checkObject(raw: unknown): { object?: MapObject; compiled?: CompiledMap; findings: Finding[] } {
  const issues: FieldIssue[] = [];
  const object = mapObjectSchema.check(raw, '', issues) as MapObject | undefined;
  if (!object) return { findings: issues };
  const compiled = compileMap(object, issues);
  if (!compiled) return { object, findings: issues };
  return { object, compiled, findings: selfConflicts(compiled) };
}

function identify(raw: unknown): Pick<MapRef, 'kind' | 'namespace' | 'name'> {
  const o = (raw ?? {}) as { kind?: unknown; metadata?: { name?: unknown; namespace?: unknown } };
  const kind = o.kind === 'ClusterImageMap' ? 'ClusterImageMap' : 'ImageMap';
  const name = typeof o.metadata?.name === 'string' ? o.metadata.name : '(unnamed)';
  const ns = typeof o.metadata?.namespace === 'string' ? o.metadata.namespace : undefined;
  return { kind, name, namespace: kind === 'ImageMap' ? (ns ?? 'default') : undefined };
}

/**
 * What serves for a map whose current generation is not accepted: its last accepted generation when
 * that is still valid and `fits` the maps accepted before it, else nothing.
 */
function previousServing(
  lastAccepted: unknown,
  fits: (map: CompiledMap) => boolean,
): { serving: MapVerdict['serving']; compiled: CompiledMap | undefined } {
  const none = { serving: 'none' as const, compiled: undefined };
  if (!lastAccepted) return none;
  const previous = checkObject(lastAccepted);
  if (!previous.compiled || previous.findings.length > 0 || !fits(previous.compiled)) return none;
  return { serving: 'previous', compiled: previous.compiled };
}

/**
 * Decides which maps are accepted. ClusterImageMaps are settled first (a tenant's map never blocks the
 * cluster's), then ImageMaps; within a scope the older map wins and the later one is rejected.
 */
export function analyzeMaps(inputs: readonly MapInput[]): Analysis {
  const checked = inputs.map((input) => ({
    input,
    ref: identify(input.current),
    ...checkObject(input.current),
  }));
  const rank = (c: (typeof checked)[number]): string =>
    `${c.ref.kind === 'ClusterImageMap' ? 0 : 1}\u0000${c.compiled?.order ?? `\u0000${c.ref.name}`}`;
  const order = [...checked].sort((a, b) => (rank(a) < rank(b) ? -1 : rank(a) > rank(b) ? 1 : 0));

  const cluster: CompiledMap[] = [];
  const byNamespace = new Map<string, CompiledMap[]>();
  const verdicts = new Map<(typeof checked)[number], MapVerdict>();
  const scopes = (map: CompiledMap): [CompiledMap[], CompiledMap[]] =>
    map.ref.namespace === undefined ? [cluster, []] : [byNamespace.get(map.ref.namespace) ?? [], cluster];
  const accept = (map: CompiledMap): void => {
    if (map.ref.namespace === undefined) cluster.push(map);
    else byNamespace.set(map.ref.namespace, [...(byNamespace.get(map.ref.namespace) ?? []), map]);
  };

  for (const c of order) {
    const generation = c.object?.metadata.generation;
    let verdict: Verdict = 'Invalid';
    let findings = c.findings;
    if (c.compiled && findings.length === 0) {
      findings = conflicts(c.compiled, ...scopes(c.compiled));
      verdict = findings.length === 0 ? 'Accepted' : 'Conflict';
    }
    const { serving, compiled } =
      verdict === 'Accepted'
        ? { serving: 'current' as const, compiled: c.compiled }
        : previousServing(c.input.lastAccepted, (map) => conflicts(map, ...scopes(map)).length === 0);
    if (compiled) accept(compiled);
    verdicts.set(c, {
      ref: c.ref,
      name: mapRefName(c.ref),
      generation,
      verdict,
      findings,
      serving,
      servingGeneration: compiled?.ref.generation,
      compiled,
    });
  }
  const all = checked.map((c) => verdicts.get(c)!);
  return { verdicts: all, accepted: all.flatMap((v) => (v.compiled ? [v.compiled] : [])) };
}
