// Docker Hub's defaults, kept apart from the grammar: which first component is a registry, and how
// the familiar short names ("nginx", "bitnami/nats") expand to fully qualified ones.

/** The registry a reference without one refers to. */
export const DEFAULT_REGISTRY = 'docker.io';
/** The name the Docker Hub API answers on; references that spell it out mean DEFAULT_REGISTRY. */
export const LEGACY_DEFAULT_REGISTRY = 'index.docker.io';
/** Official images live under this namespace: "nginx" is "docker.io/library/nginx". */
export const OFFICIAL_NAMESPACE = 'library';
/** The tag a reference without tag or digest resolves to. */
export const DEFAULT_TAG = 'latest';

/**
 * A first path component is a registry host only if it could not be a Docker Hub namespace: it has a
 * "." or ":" or an uppercase letter, or is "localhost". Everything else ("bitnami/nats") is Hub.
 */
export function looksLikeRegistry(component: string, hasUpper: boolean): boolean {
  return component.includes('.') || component.includes(':') || component === 'localhost' || hasUpper;
}

/**
 * "index.docker.io" is Docker Hub's legacy alias. Hosts are otherwise kept as written: containerd and
 * the kubelet do not fold case either, so "Docker.io/x" is, for them, another registry than docker.io.
 */
export function canonicalRegistry(host: string): string {
  return host === LEGACY_DEFAULT_REGISTRY ? DEFAULT_REGISTRY : host;
}

/** Docker Hub's single-component names are official images under "library/". */
export function canonicalRepository(registry: string, path: string): string {
  return registry === DEFAULT_REGISTRY && !path.includes('/') ? `${OFFICIAL_NAMESPACE}/${path}` : path;
}
