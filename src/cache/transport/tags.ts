// An upstream repository's tags (GET /v2/<name>/tags/list), all pages of them: registries that
// paginate send a Link header to the next page, which is followed on the same registry only. Bounded in
// pages and bytes; authenticated through the registry client's sessions like every other call.
import { checkTag } from '../../core/reference/index.ts';
import type { CallOptions, RegistryClient } from '../../registry/client.ts';
import { RegistryFailure, type RegistryResult } from '../../registry/errors.ts';
import { failureFromStatus, header, readBounded } from '../../registry/http.ts';

/** Pages followed, and bytes read over all of them, before the list counts as too large. */
const MAX_PAGES = 50;
const MAX_BYTES = 8 * 2 ** 20;

/** The path of a Link header's rel="next" target on the same registry, or undefined. */
export function nextPage(link: string | undefined, repository: string): string | undefined {
  if (link === undefined) return undefined;
  const m = /<([^>]*)>\s*;\s*rel="?next"?/i.exec(link);
  if (!m) return undefined;
  let url: URL;
  try {
    url = new URL(m[1] as string, 'http://registry.invalid');
  } catch {
    return undefined;
  }
  // Only a path of this repository's list on the registry asked (never another host).
  if (url.origin !== 'http://registry.invalid' || url.pathname !== `/v2/${repository}/tags/list`)
    return undefined;
  return url.pathname + url.search;
}

export async function listTags(
  client: RegistryClient,
  registry: string,
  repository: string,
  options: CallOptions = {},
): Promise<RegistryResult<string[]>> {
  const what = `tags of ${registry}/${repository}`;
  return client.session(registry, what, options, async (session) => {
    const tags = new Set<string>();
    let path: string | undefined = `/v2/${repository}/tags/list`;
    let bytes = 0;
    for (let page = 0; path !== undefined; page++) {
      if (page >= MAX_PAGES)
        throw new RegistryFailure('REG_TOO_LARGE', `${what}: more than ${MAX_PAGES} pages`);
      const res = await session.send(repository, {
        method: 'GET',
        path,
        headers: { accept: 'application/json' },
      });
      if (res.statusCode !== 200) throw await failureFromStatus(res, 'GET', what, client.now());
      const body = await readBounded(res.body, MAX_BYTES - bytes, what);
      bytes += body.length;
      let doc: { tags?: unknown };
      try {
        doc = JSON.parse(body.toString('utf8')) as { tags?: unknown };
      } catch {
        throw new RegistryFailure('REG_INVALID_RESPONSE', `${what}: the answer is not JSON`, { status: 200 });
      }
      // docker-registry answers "tags": null for a repository without tags.
      if (doc.tags !== null && doc.tags !== undefined && !Array.isArray(doc.tags))
        throw new RegistryFailure('REG_INVALID_RESPONSE', `${what}: "tags" is not a list`, { status: 200 });
      for (const t of (doc.tags as unknown[] | null | undefined) ?? [])
        if (typeof t === 'string' && checkTag(t) === undefined) tags.add(t);
      path = nextPage(header(res.headers, 'link'), repository);
    }
    return [...tags];
  });
}
