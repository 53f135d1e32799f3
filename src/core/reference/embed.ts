// A registry host written as the first path component of another reference, as the pull-through cache
// and "*" mappings do ("localhost:7439/docker.io/library/nginx"). Path components may not hold ":", so
// a port is written with "_", which no host name can contain: "localhost:5000" → "localhost_5000".

/** The host as a path component, or undefined when it cannot be one (IPv6 literals, uppercase). */
export function embedRegistry(registry: string): string | undefined {
  if (registry.includes('[') || registry !== registry.toLowerCase()) return undefined;
  return registry.replace(':', '_');
}
