// A registry host written as the first path component of another reference, as the pull-through cache
// and "*" mappings do ("localhost:7439/docker.io/library/nginx"). Path components may not hold ":", so
// a port is written with "_", which no host name can contain: "localhost:5000" → "localhost_5000".
import { checkDomainAndPort } from './grammar.ts';

/** The host as a path component, or undefined when it cannot be one (IPv6 literals, uppercase). */
export function embedRegistry(registry: string): string | undefined {
  if (registry.includes('[') || registry !== registry.toLowerCase()) return undefined;
  return registry.replace(':', '_');
}

/**
 * The registry host a path component stands for: "localhost_5000" → "localhost:5000". Undefined when
 * the component cannot be one that `embedRegistry` wrote (more than one "_", or not a host[:port]).
 */
export function unembedRegistry(component: string): string | undefined {
  const first = component.indexOf('_');
  if (first !== component.lastIndexOf('_')) return undefined;
  const host = first === -1 ? component : `${component.slice(0, first)}:${component.slice(first + 1)}`;
  if (host.length === 0 || host !== host.toLowerCase()) return undefined;
  return checkDomainAndPort(host) === undefined ? host : undefined;
}
