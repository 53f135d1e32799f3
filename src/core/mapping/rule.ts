// Compiling one map object into rules: parsing `from` and `to`, checking that they fit together, and
// computing where a given image goes. Everything a person can get wrong in a map is reported here with
// the field path and the fix.

import type { MapKind, MapObject, Mapping, MapSpec } from '../api/v1alpha1.ts';
import { parseDuration } from '../duration.ts';
import {
  canonicalRegistry,
  checkDomainAndPort,
  DEFAULT_TAG,
  describeReferenceError,
  embedRegistry,
  formatName,
  formatReference,
  type ImageReference,
  looksLikeRegistry,
  parseReference,
} from '../reference/index.ts';
import type { FieldIssue } from '../schema/dsl.ts';
import { compileTagPatterns, type WholeMatch } from '../tag-pattern.ts';
import { zarfTag } from './zarf.ts';

/** Which map object a rule came from. */
export interface MapRef {
  readonly kind: MapKind;
  readonly namespace: string | undefined;
  readonly name: string;
  readonly generation: number | undefined;
}

export function mapRefName(ref: Pick<MapRef, 'kind' | 'namespace' | 'name'>): string {
  return ref.namespace === undefined ? `${ref.kind}/${ref.name}` : `${ref.kind}/${ref.namespace}/${ref.name}`;
}

const COPY_PREFIX = 'pullmap-';

/**
 * The Secret name a pod refers to for a rule's pullSecret: an ImageMap's own, or the copy of a
 * ClusterImageMap's that the controller keeps in the pod's namespace.
 */
export function podPullSecretName(kind: MapKind, pullSecret: string): string {
  return kind === 'ClusterImageMap' ? `${COPY_PREFIX}${pullSecret}` : pullSecret;
}

/** A `from` or prefix-shaped `to`, parsed. Keys are what the snapshot index is keyed by. */
export type Pattern =
  | { readonly kind: 'all'; readonly key: '' }
  | { readonly kind: 'prefix'; readonly registry: string; readonly path: string; readonly key: string }
  | { readonly kind: 'repository'; readonly ref: ImageReference; readonly key: string }
  | { readonly kind: 'image'; readonly ref: ImageReference; readonly key: string };

export interface Rule {
  readonly map: CompiledMap;
  /** Index in spec.mappings. */
  readonly index: number;
  readonly mapping: Mapping;
  readonly source: Pattern;
  readonly targets: readonly Pattern[];
  /** to == from: the rule only routes images through the cache. */
  readonly identity: boolean;
}

export interface CompiledMap {
  readonly ref: MapRef;
  readonly spec: MapSpec;
  readonly rules: readonly Rule[];
  readonly mutableTags: WholeMatch | undefined;
  readonly positiveTtlMs: number | undefined;
  readonly negativeTtlMs: number | undefined;
  /** Sort key: older maps first, then by name (the consistency rules' "created later" order). */
  readonly order: string;
}

/** Exact-image key: digest wins over tag, since it names the content. */
function exactKey(ref: ImageReference, tag: string | undefined): string {
  return ref.digest !== undefined ? `${formatName(ref)}@${ref.digest}` : `${formatName(ref)}:${tag}`;
}

/** Parses a `from`/`to` value. `field` is the path used in messages. */
function parsePattern(text: string, field: string, issues: FieldIssue[]): Pattern | undefined {
  if (text === '*') return { kind: 'all', key: '' };
  if (text.endsWith('/')) {
    const body = text.slice(0, -1);
    if (!body.includes('/') && looksLikeRegistry(body, body !== body.toLowerCase())) {
      const failure = checkDomainAndPort(body);
      if (failure) {
        issues.push({
          path: field,
          message: `${JSON.stringify(text)} is not a valid registry prefix: ${failure.message}`,
        });
        return undefined;
      }
      const registry = canonicalRegistry(body);
      return { kind: 'prefix', registry, path: '', key: `${registry}/` };
    }
    // Parse "<body>/x" so that Docker Hub's "library/" expansion, which applies only to one-component
    // names, never touches a prefix: "bitnami/" is docker.io/bitnami/, not docker.io/library/bitnami/.
    const parsed = parseReference(`${body}/x`);
    if (!parsed.ok || parsed.ref.tag !== undefined || parsed.ref.digest !== undefined || body.includes('@')) {
      const why = parsed.ok ? 'a prefix cannot have a tag or digest' : parsed.error.message;
      issues.push({
        path: field,
        message: `${JSON.stringify(text)} is not a valid repository prefix: ${why}`,
      });
      return undefined;
    }
    const path = parsed.ref.repository.slice(0, -2);
    return { kind: 'prefix', registry: parsed.ref.registry, path, key: `${parsed.ref.registry}/${path}/` };
  }
  const parsed = parseReference(text);
  if (!parsed.ok) {
    const hint =
      parsed.error.code === 'REF_PATH_INVALID' && !text.includes('/')
        ? ' (a registry prefix ends with "/")'
        : '';
    issues.push({ path: field, message: describeReferenceError(text, parsed.error) + hint });
    return undefined;
  }
  const ref = parsed.ref;
  if (ref.tag === undefined && ref.digest === undefined)
    return { kind: 'repository', ref, key: formatName(ref) };
  return { kind: 'image', ref, key: exactKey(ref, ref.tag) };
}

function patternText(p: Pattern): string {
  switch (p.kind) {
    case 'all':
      return '*';
    case 'prefix':
      return p.key;
    default:
      return formatReference(p.ref);
  }
}

/** Checks that a target fits its source; pushes an issue naming the field and the fix otherwise. */
function checkTarget(
  source: Pattern,
  target: Pattern,
  mapping: Mapping,
  field: string,
  issues: FieldIssue[],
): boolean {
  const bad = (message: string): boolean => {
    issues.push({ path: field, message });
    return false;
  };
  if (target.kind === 'all')
    return source.kind === 'all' || bad('"*" as a target only means "unchanged" for from: "*"');
  if (mapping.naming === 'zarf' && target.kind !== 'prefix') {
    return bad(
      `naming: zarf needs a registry or prefix ending in "/" (like "zarf.local:31999/"), not ${JSON.stringify(patternText(target))}`,
    );
  }
  if (target.kind === 'prefix') return true;
  if (source.kind === 'all' || source.kind === 'prefix') {
    return bad(
      `from ${JSON.stringify(patternText(source))} is a prefix, so to must be a prefix ending in "/" too (like "mirror.example/${source.kind === 'prefix' ? 'hub' : 'all'}/")`,
    );
  }
  if (target.ref.digest !== undefined)
    return bad('to must not name a digest: the digest comes from the pod\'s image; remove "@..."');
  if (source.kind === 'repository' && target.kind === 'image') {
    return bad(
      `from ${JSON.stringify(patternText(source))} matches every tag, so to must not name a tag; remove ":${target.ref.tag}" or add a tag to from`,
    );
  }
  return true;
}

function durationMs(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const parsed = parseDuration(text);
  return parsed.ok ? parsed.ms : undefined;
}

/**
 * Compiles a schema-checked map object. Issues are pushed with paths like "spec.mappings[2].to";
 * the map is returned only when it has none.
 */
export function compileMap(object: MapObject, issues: FieldIssue[]): CompiledMap | undefined {
  const before = issues.length;
  const spec = object.spec;
  const ref: MapRef = {
    kind: object.kind,
    namespace: object.kind === 'ImageMap' ? (object.metadata.namespace ?? 'default') : undefined,
    name: object.metadata.name,
    generation: object.metadata.generation,
  };
  if (object.kind === 'ImageMap' && spec.namespaceSelector !== undefined) {
    issues.push({
      path: 'spec.namespaceSelector',
      message:
        'only ClusterImageMap selects namespaces; an ImageMap applies to its own namespace: remove the field',
    });
  }
  if (object.kind === 'ClusterImageMap' && object.metadata.namespace !== undefined) {
    issues.push({
      path: 'metadata.namespace',
      message: 'ClusterImageMap is cluster-wide and has no namespace: remove the field or use kind: ImageMap',
    });
  }
  const rules: Rule[] = [];
  const map: CompiledMap = {
    ref,
    spec,
    rules,
    mutableTags: compileTagPatterns(spec.mutableTags ?? []),
    positiveTtlMs: durationMs(spec.existence?.positiveTTL),
    negativeTtlMs: durationMs(spec.existence?.negativeTTL),
    order: `${object.metadata.creationTimestamp ?? ''}\u0000${object.metadata.name}\u0000${ref.namespace ?? ''}`,
  };
  const seen = new Map<string, number>();
  spec.mappings.forEach((mapping, index) => {
    const at = `spec.mappings[${index}]`;
    const source = parsePattern(mapping.from, `${at}.from`, issues);
    const targets: Pattern[] = [];
    mapping.to.forEach((to, i) => {
      const field = mapping.to.length === 1 ? `${at}.to` : `${at}.to[${i}]`;
      const target = parsePattern(to, field, issues);
      if (target && source && checkTarget(source, target, mapping, field, issues)) targets.push(target);
    });
    if (mapping.to.length > 1 && mapping.when !== 'IfExists') {
      issues.push({
        path: `${at}.to`,
        message: `lists ${mapping.to.length} candidates, but only when: IfExists chooses among them; add "when: IfExists" or keep one target`,
      });
    }
    if (!source || targets.length !== mapping.to.length) return;
    const earlier = seen.get(source.key);
    if (earlier !== undefined) {
      issues.push({
        path: `${at}.from`,
        message: `${JSON.stringify(mapping.from)} is the same source as spec.mappings[${earlier}].from; merge the two entries`,
      });
      return;
    }
    seen.set(source.key, index);
    const identity = targets.length === 1 && targets[0]!.key === source.key;
    if (identity && !spec.cache?.enabled) {
      issues.push({
        path: `${at}.to`,
        message:
          'maps images to themselves, which only makes sense with cache.enabled: true; change to or enable the cache',
      });
      return;
    }
    rules.push({ map, index, mapping, source, targets, identity });
  });
  return issues.length === before ? map : undefined;
}

/** The reference an image gets from one target of a rule, as text (not yet re-validated). */
export function applyTarget(
  rule: Rule,
  target: Pattern,
  image: ImageReference,
  tag: string | undefined,
): string | undefined {
  const suffix = (t: string | undefined): string =>
    (t === undefined ? '' : `:${t}`) + (image.digest === undefined ? '' : `@${image.digest}`);
  if (target.kind === 'all') return formatReference(image);
  if (target.kind !== 'prefix') {
    const targetTag = target.kind === 'image' ? target.ref.tag : image.tag;
    return formatName(target.ref) + suffix(targetTag);
  }
  const base = target.key;
  if (rule.mapping.naming === 'zarf') {
    // Zarf keeps the whole source path and drops the tag of digest references.
    if (image.digest !== undefined) return `${base}${image.repository}@${image.digest}`;
    return `${base}${image.repository}:${zarfTag(formatName(image), tag ?? DEFAULT_TAG)}`;
  }
  let relative: string | undefined;
  const source = rule.source;
  if (source.kind === 'all') {
    const host = embedRegistry(image.registry);
    relative = host === undefined ? undefined : `${host}/${image.repository}`;
  } else if (source.kind === 'prefix') {
    relative = source.path === '' ? image.repository : image.repository.slice(source.path.length + 1);
  } else {
    relative = image.repository;
  }
  if (relative === undefined) return undefined;
  return base + relative + suffix(image.tag);
}
