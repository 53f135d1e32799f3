// Which upstream, repository and object a request names, in either addressing mode:
//   path-prefixed     /v2/<embedded host>/<repository>/manifests/<ref>   (the webhook's stage 2)
//   containerd mirror /v2/<repository>/manifests/<ref>?ns=<host>
// (and /v2/<name>/tags/list, /v2/_catalog, with the spec's `n` and `last` pagination).
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

/** A page of a list: at most `n` entries (all when undefined) after `last`. */
export interface Page {
  readonly n: number | undefined;
  readonly last: string | undefined;
}

/** The tags of one repository of one configured upstream. */
export interface TagsRoute extends Page {
  readonly kind: 'tags';
  readonly registry: string;
  readonly repository: string;
  /** The name as the client wrote it (path-prefixed, or the repository with `ns`). */
  readonly name: string;
  /** The `ns` parameter of a containerd mirror request. */
  readonly ns: string | undefined;
}

export type Route =
  | { readonly kind: 'base' }
  | ObjectRoute
  | TagsRoute
  | ({ readonly kind: 'catalog' } & Page)
  | ErrorRoute;

export interface ErrorRoute {
  readonly kind: 'error';
  readonly status: number;
  readonly code: string;
  readonly message: string;
}

const OBJECT = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/;
const TAGS = /^\/v2\/(.+)\/tags\/list$/;
/** Entries a client may ask for in one page. */
export const MAX_PAGE = 10_000;

function error(status: number, code: string, message: string): ErrorRoute {
  return { kind: 'error', status, code, message };
}

/** The route of a raw request target (path and query as sent, not normalised). */
export function routeOf(target: string, upstreams: ReadonlySet<string>): Route {
  if (target.length > 4096) return error(414, 'NAME_INVALID', 'request target is too long');
  const q = target.indexOf('?');
  const path = q === -1 ? target : target.slice(0, q);
  if (path === '/v2/' || path === '/v2') return { kind: 'base' };
  const query = new URLSearchParams(q === -1 ? '' : target.slice(q + 1));
  if (path === '/v2/_catalog') {
    const page = pageOf(query);
    return 'kind' in page ? page : { kind: 'catalog', ...page };
  }
  const tags = TAGS.exec(path);
  if (tags) {
    const page = pageOf(query);
    if ('kind' in page) return page;
    const named = nameOf(tags[1] as string, query.get('ns'), upstreams);
    if (named.kind === 'error') return named;
    const { registry, repository } = named;
    const ns = query.get('ns') ?? undefined;
    return { kind: 'tags', registry, repository, name: tags[1] as string, ns, ...page };
  }
  const m = OBJECT.exec(path);
  if (!m)
    return error(
      404,
      'UNSUPPORTED',
      'this cache serves only /v2/<name>/manifests/<reference>, /v2/<name>/blobs/<digest>, /v2/<name>/tags/list and /v2/_catalog',
    );
  const [, rawName, what, reference] = m as unknown as [string, string, string, string];
  const named = nameOf(rawName, query.get('ns'), upstreams);
  if (named.kind === 'error') return named;
  const isDigest = reference.includes(':');
  if (isDigest ? !DIGEST.test(reference) : what === 'blobs' || checkTag(reference) !== undefined)
    return error(
      400,
      what === 'blobs' ? 'DIGEST_INVALID' : 'MANIFEST_INVALID',
      `${JSON.stringify(reference)} is not a valid ${what === 'blobs' ? 'digest' : 'tag or digest'}`,
    );
  return {
    kind: what === 'blobs' ? 'blob' : 'manifest',
    registry: named.registry,
    repository: named.repository,
    tag: isDigest ? undefined : reference,
    digest: isDigest ? reference : undefined,
  };
}

/** `n` and `last` of a list request; n must be a whole number up to MAX_PAGE. */
function pageOf(query: URLSearchParams): Page | ErrorRoute {
  const n = query.get('n');
  if (n !== null && !(/^\d{1,6}$/.test(n) && Number(n) <= MAX_PAGE))
    return error(
      400,
      'PAGINATION_NUMBER_INVALID',
      `n=${JSON.stringify(n)}: give a whole number up to ${MAX_PAGE}`,
    );
  return { n: n === null ? undefined : Number(n), last: query.get('last') ?? undefined };
}

/** The upstream and repository a name stands for, checked against the upstreams and the grammar. */
function nameOf(
  rawName: string,
  ns: string | null,
  upstreams: ReadonlySet<string>,
): { kind: 'name'; registry: string; repository: string } | ErrorRoute {
  const fail = error;
  let registry: string | undefined;
  let repository: string;
  if (ns !== null) {
    registry = foldDockerHubHost(ns);
    repository = rawName;
  } else {
    const slash = rawName.indexOf('/');
    if (slash === -1)
      return fail(
        404,
        'NAME_UNKNOWN',
        `${JSON.stringify(rawName)} names no upstream; address images as /v2/<upstream host>/<repository>/... or use ?ns=<host>`,
      );
    registry = unembedRegistry(rawName.slice(0, slash));
    repository = rawName.slice(slash + 1);
    if (registry === undefined)
      return fail(
        400,
        'NAME_INVALID',
        `${JSON.stringify(rawName.slice(0, slash))} is not a registry host (write a port as "_": localhost_5000)`,
      );
  }
  if (!upstreams.has(registry))
    return fail(404, 'NAME_UNKNOWN', `${registry} is not an upstream of this cache`);
  const parsed = parseReference(`${registry}/${repository}`);
  if (
    !parsed.ok ||
    parsed.ref.tag !== undefined ||
    parsed.ref.digest !== undefined ||
    parsed.ref.registry !== registry
  )
    return fail(
      400,
      'NAME_INVALID',
      `${JSON.stringify(repository)} is not a valid repository name${parsed.ok ? '' : `: ${parsed.error.message}`}`,
    );
  return { kind: 'name', registry, repository: parsed.ref.repository };
}

/** One page of a sorted list: the entries after `last`, at most `n`; `more` when entries follow. */
export function paginate(sorted: readonly string[], page: Page): { items: string[]; more: boolean } {
  const after = page.last === undefined ? sorted : sorted.filter((x) => x > page.last!);
  const items = page.n === undefined ? [...after] : after.slice(0, page.n);
  return { items, more: items.length < after.length };
}
