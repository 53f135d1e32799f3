// Which upstream, repository and object a request names, in either addressing mode:
//   path-prefixed     /v2/<embedded host>/<repository>/manifests/<ref>   (the webhook's stage 2)
//   containerd mirror /v2/<repository>/manifests/<ref>?ns=<host>
// Pure. Names are checked with the reference grammar, so nothing odd ("..", "%2e", upper case) gets
// through, and only hosts in `upstreams` are ever answered.

import {
  checkTag,
  DIGEST,
  foldDockerHubHost,
  parseReference,
  unembedRegistry,
} from '../core/reference/index.ts';

/** A manifest or blob of one repository of one configured upstream. */
export interface ObjectRoute {
  readonly kind: 'manifest' | 'blob';
  readonly registry: string;
  readonly repository: string;
  /** A tag (manifests only) or a digest. */
  readonly tag: string | undefined;
  readonly digest: string | undefined;
}

export type Route =
  | { readonly kind: 'base' }
  | ObjectRoute
  | { readonly kind: 'error'; readonly status: number; readonly code: string; readonly message: string };

const OBJECT = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/;

function error(status: number, code: string, message: string): Route {
  return { kind: 'error', status, code, message };
}

/** The route of a raw request target (path and query as sent, not normalised). */
export function routeOf(target: string, upstreams: ReadonlySet<string>): Route {
  if (target.length > 4096) return error(414, 'NAME_INVALID', 'request target is too long');
  const q = target.indexOf('?');
  const path = q === -1 ? target : target.slice(0, q);
  if (path === '/v2/' || path === '/v2') return { kind: 'base' };
  const m = OBJECT.exec(path);
  if (!m)
    return error(
      404,
      'UNSUPPORTED',
      'this cache serves only /v2/<name>/manifests/<reference> and /v2/<name>/blobs/<digest>',
    );
  const [, rawName, what, reference] = m as unknown as [string, string, string, string];
  const ns = q === -1 ? null : new URLSearchParams(target.slice(q + 1)).get('ns');
  let registry: string | undefined;
  let repository: string;
  if (ns !== null) {
    registry = foldDockerHubHost(ns);
    repository = rawName;
  } else {
    const slash = rawName.indexOf('/');
    if (slash === -1)
      return error(
        404,
        'NAME_UNKNOWN',
        `${JSON.stringify(rawName)} names no upstream; address images as /v2/<upstream host>/<repository>/... or use ?ns=<host>`,
      );
    registry = unembedRegistry(rawName.slice(0, slash));
    repository = rawName.slice(slash + 1);
    if (registry === undefined)
      return error(
        400,
        'NAME_INVALID',
        `${JSON.stringify(rawName.slice(0, slash))} is not a registry host (write a port as "_": localhost_5000)`,
      );
  }
  if (!upstreams.has(registry))
    return error(404, 'NAME_UNKNOWN', `${registry} is not an upstream of this cache`);
  const parsed = parseReference(`${registry}/${repository}`);
  if (
    !parsed.ok ||
    parsed.ref.tag !== undefined ||
    parsed.ref.digest !== undefined ||
    parsed.ref.registry !== registry
  )
    return error(
      400,
      'NAME_INVALID',
      `${JSON.stringify(repository)} is not a valid repository name${parsed.ok ? '' : `: ${parsed.error.message}`}`,
    );
  const isDigest = reference.includes(':');
  if (isDigest ? !DIGEST.test(reference) : what === 'blobs' || checkTag(reference) !== undefined)
    return error(
      400,
      what === 'blobs' ? 'DIGEST_INVALID' : 'MANIFEST_INVALID',
      `${JSON.stringify(reference)} is not a valid ${what === 'blobs' ? 'digest' : 'tag or digest'}`,
    );
  return {
    kind: what === 'blobs' ? 'blob' : 'manifest',
    registry,
    repository: parsed.ref.repository,
    tag: isDigest ? undefined : reference,
    digest: isDigest ? reference : undefined,
  };
}
