// The manifest media types a registry may answer with. A HEAD without the index types makes a
// multi-arch image look missing (distribution answers 404 rather than an index it was not asked for).

export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
const DOCKER_MANIFEST_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
/** Docker schema 1: only recognised, never asked for. */
export const DOCKER_MANIFEST_V1_SIGNED = 'application/vnd.docker.distribution.manifest.v1+prettyjws';
export const DOCKER_MANIFEST_V1 = 'application/vnd.docker.distribution.manifest.v1+json';

/** What manifest requests accept, most wanted first. */
export const MANIFEST_ACCEPT: readonly string[] = [
  OCI_INDEX,
  DOCKER_MANIFEST_LIST,
  OCI_MANIFEST,
  DOCKER_MANIFEST,
];

const KNOWN_MANIFEST_TYPES: ReadonlySet<string> = new Set([
  OCI_MANIFEST,
  OCI_INDEX,
  DOCKER_MANIFEST,
  DOCKER_MANIFEST_LIST,
  DOCKER_MANIFEST_V1_SIGNED,
  DOCKER_MANIFEST_V1,
]);

/** The media type without parameters, lower-cased: "application/json; charset=utf-8" → "application/json". */
export function bareMediaType(contentType: string): string {
  const semicolon = contentType.indexOf(';');
  return (semicolon === -1 ? contentType : contentType.slice(0, semicolon)).trim().toLowerCase();
}

export function isManifestMediaType(mediaType: string): boolean {
  return KNOWN_MANIFEST_TYPES.has(mediaType);
}

/** Indexes and lists point at other manifests, one per platform. */
export function isIndexMediaType(mediaType: string): boolean {
  return mediaType === OCI_INDEX || mediaType === DOCKER_MANIFEST_LIST;
}
