// Docker Hub's defaults, kept apart from the grammar: which first component is a registry, and how
// the familiar short names ("nginx", "bitnami/nats") expand to fully qualified ones.

/** The registry a reference without one refers to. */
export const DEFAULT_REGISTRY = 'docker.io';
/** Docker Hub's legacy name; references that spell it out mean DEFAULT_REGISTRY. */
const LEGACY_DEFAULT_REGISTRY = 'index.docker.io';
/** The host Docker Hub's registry API answers on: where requests for DEFAULT_REGISTRY go. */
export const DOCKER_HUB_API_HOST = 'registry-1.docker.io';
/** Every name of Docker Hub: credential keys and the cache's ?ns= may use any of them. */
const DOCKER_HUB_HOSTS: ReadonlySet<string> = new Set([
  DEFAULT_REGISTRY,
  LEGACY_DEFAULT_REGISTRY,
  DOCKER_HUB_API_HOST,
]);
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

/**
 * Any name of Docker Hub → DEFAULT_REGISTRY, other hosts as written: for host names that are not
 * references (credential keys, the cache's ?ns=), where the API host means Docker Hub too.
 */
export function foldDockerHubHost(host: string): string {
  return DOCKER_HUB_HOSTS.has(host) ? DEFAULT_REGISTRY : host;
}

/** Docker Hub's single-component names are official images under "library/". */
export function canonicalRepository(registry: string, path: string): string {
  return registry === DEFAULT_REGISTRY && !path.includes('/') ? `${OFFICIAL_NAMESPACE}/${path}` : path;
}
