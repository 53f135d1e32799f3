import { DEFAULT_REGISTRY, DEFAULT_TAG, OFFICIAL_NAMESPACE } from './normalize.ts';
import type { ImageReference } from './parse.ts';

function suffix(ref: ImageReference): string {
  return (ref.tag === undefined ? '' : `:${ref.tag}`) + (ref.digest === undefined ? '' : `@${ref.digest}`);
}

/** "registry/repository" without tag or digest. */
export function formatName(ref: Pick<ImageReference, 'registry' | 'repository'>): string {
  return `${ref.registry}/${ref.repository}`;
}

/** Fully qualified, exactly the tag and digest it has: "docker.io/library/nginx:1.27". */
export function formatReference(ref: ImageReference): string {
  return formatName(ref) + suffix(ref);
}

/** Fully qualified, with ":latest" added only when there is neither tag nor digest. */
export function formatNormalized(ref: ImageReference): string {
  if (ref.tag === undefined && ref.digest === undefined) return `${formatName(ref)}:${DEFAULT_TAG}`;
  return formatReference(ref);
}

/** The shortest spelling Docker accepts for the same image: "nginx:1.27", "bitnami/nats". */
export function formatFamiliar(ref: ImageReference): string {
  let name = formatName(ref);
  if (ref.registry === DEFAULT_REGISTRY) {
    const path = ref.repository;
    const official = `${OFFICIAL_NAMESPACE}/`;
    name =
      path.startsWith(official) && !path.includes('/', official.length) ? path.slice(official.length) : path;
  }
  return name + suffix(ref);
}
