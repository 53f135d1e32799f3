// Where and how to reach a registry host: the URL its API answers on, TLS trust, and timeouts.
// HTTPS is the default everywhere; plain HTTP must be asked for, and is only accepted for loopback
// hosts or hosts explicitly marked insecure, so a typo cannot leak credentials in clear text.

import { fail, ok, type Result } from '../core/errors.ts';
import { isLoopbackName, splitHostPort } from '../core/net.ts';
import { canonicalRegistry, DEFAULT_REGISTRY, DOCKER_HUB_API_HOST } from '../core/reference/index.ts';
import { RegistryFailure } from './errors.ts';
export interface EndpointSettings {
  /** "https" (default) or "http". */
  readonly scheme?: 'https' | 'http' | undefined;
  /** Allows `scheme: 'http'` for a host that is not loopback. */
  readonly insecure?: boolean | undefined;
  /** Extra CA certificates (PEM) trusted for this host, in addition to the system roots. */
  readonly caPem?: string | readonly string[] | undefined;
  /** TCP/TLS connect timeout. */
  readonly connectTimeoutMs?: number | undefined;
  /** Hard bound on one logical request (including auth round trips), until its body is read. */
  readonly requestTimeoutMs?: number | undefined;
  /** Requests in flight to this host at once; more wait in a queue. */
  readonly maxConcurrent?: number | undefined;
}

export interface Endpoint {
  /** The registry as references name it: "docker.io", "127.0.0.1:5000", "[::1]:5000". */
  readonly registry: string;
  /** The origin requests go to: "https://registry-1.docker.io", "http://127.0.0.1:5000". */
  readonly origin: string;
  readonly scheme: 'https' | 'http';
  readonly caPem: readonly string[];
  readonly connectTimeoutMs: number;
  readonly requestTimeoutMs: number;
  readonly maxConcurrent: number;
}

const DEFAULT_CONNECT_TIMEOUT_MS = 3_000;
const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;
const DEFAULT_MAX_CONCURRENT = 8;

export function isLoopbackHost(hostPort: string): boolean {
  return isLoopbackName(splitHostPort(hostPort).host);
}

// A host[:port] as the reference grammar accepts it; anything else must not reach a URL.
const HOST_PORT = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)(?::\d{1,5})?$/;

/** The endpoint, or why the host cannot be reached safely (REG_BAD_INPUT, REG_INSECURE_REFUSED). */
type EndpointResult = Result<Endpoint, RegistryFailure>;

export function resolveEndpoint(registry: string, settings: EndpointSettings = {}): EndpointResult {
  if (!HOST_PORT.test(registry))
    return fail(new RegistryFailure('REG_BAD_INPUT', `${JSON.stringify(registry)} is not a registry host`));
  const scheme = settings.scheme ?? 'https';
  if (scheme === 'http' && !settings.insecure && !isLoopbackHost(registry)) {
    return fail(
      new RegistryFailure(
        'REG_INSECURE_REFUSED',
        `plain HTTP for ${registry} needs "insecure: true" (only loopback registries may use HTTP without it)`,
      ),
    );
  }
  const caPem =
    settings.caPem === undefined
      ? []
      : typeof settings.caPem === 'string'
        ? [settings.caPem]
        : [...settings.caPem];
  // References say "docker.io"; Docker Hub's registry API answers on another name.
  const apiHost = canonicalRegistry(registry) === DEFAULT_REGISTRY ? DOCKER_HUB_API_HOST : registry;
  return ok({
    registry,
    origin: `${scheme}://${apiHost}`,
    scheme,
    caPem,
    connectTimeoutMs: positive(settings.connectTimeoutMs, DEFAULT_CONNECT_TIMEOUT_MS),
    requestTimeoutMs: positive(settings.requestTimeoutMs, DEFAULT_REQUEST_TIMEOUT_MS),
    maxConcurrent: Math.max(1, Math.floor(positive(settings.maxConcurrent, DEFAULT_MAX_CONCURRENT))),
  });
}

function positive(value: number | undefined, fallback: number): number {
  return value !== undefined && Number.isFinite(value) && value > 0 ? value : fallback;
}
