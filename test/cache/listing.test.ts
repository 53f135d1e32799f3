// What is in the cache (issue 23 §4), with a real docker-registry upstream and skopeo: tags/list from
// upstream (so `skopeo inspect` works without --no-tags), from the cached tag records marked stale when
// upstream is gone, paginated as the distribution spec says; /v2/_catalog of cached repositories (and
// turned off); `pullmap cache ls` reading a running cache.
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { run } from '../../src/cli/run.ts';
import { embedRegistry } from '../../src/core/reference/index.ts';
import { closeAll, skopeoCopy, startTestCache, type TestCache } from '../harness/cache.ts';
import { buildImage, pushImage } from '../harness/images.ts';
import { execFileAsync, requireCommand, type TempDir, tempDir } from '../harness/process.ts';
import { startRegistry, type TestRegistry } from '../harness/registry.ts';

async function skopeoInspect(ref: string): Promise<{ RepoTags: string[]; Digest: string }> {
  const { stdout } = await execFileAsync(
    requireCommand('skopeo'),
    ['inspect', '--retry-times', '0', '--tls-verify=false', `docker://${ref}`],
    { timeout: 60_000 },
  );
  return JSON.parse(stdout) as { RepoTags: string[]; Digest: string };
}

async function getJson(
  url: string,
): Promise<{ status: number; headers: Record<string, unknown>; body: any }> {
  const res = await request(url);
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, body: text ? JSON.parse(text) : undefined };
}

async function cli(argv: readonly string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = new PassThrough();
  const err = new PassThrough();
  let stdout = '';
  let stderr = '';
  out.on('data', (c: Buffer) => {
    stdout += c.toString();
  });
  err.on('data', (c: Buffer) => {
    stderr += c.toString();
  });
  const code = await run(argv, { stdin: new PassThrough(), stdout: out, stderr: err, env: {} });
  return { code, stdout, stderr };
}

describe('cache: tags/list, _catalog and cache ls', () => {
  let upstream: TestRegistry;
  let cache: TestCache;
  let work: TempDir;
  let name: string;
  const v1 = buildImage({ files: { 'v.txt': '1\n' } });
  const v2 = buildImage({ files: { 'v.txt': '2\n' } });

  before(async () => {
    upstream = await startRegistry();
    work = await tempDir('cache-listing');
    await pushImage(upstream, 'team/app', '1', v1);
    await pushImage(upstream, 'team/app', '2', v2);
    await pushImage(upstream, 'team/app', '3', v2);
    await pushImage(upstream, 'team/other', 'x', v1);
    cache = await startTestCache({
      upstreams: [{ host: upstream.host, plainHttp: true }],
      storage: { maxSize: '1Gi' },
    });
    name = `${embedRegistry(upstream.host)}/team/app`;
  });
  after(() => closeAll(cache, upstream, work));

  it('lets skopeo inspect an image through the cache, tags included, from upstream', async () => {
    const info = await skopeoInspect(`${cache.host}/${name}:1`);
    assert.deepEqual(info.RepoTags, ['1', '2', '3']);
    assert.equal(info.Digest, v1.manifest.digest);
  });

  it('pages tags/list with n and last, linking to the next page (mirror mode too)', async () => {
    const first = await getJson(`${cache.url}/v2/${name}/tags/list?n=2`);
    assert.equal(first.status, 200);
    assert.deepEqual(first.body, { name, tags: ['1', '2'] });
    assert.equal(first.headers['link'], `</v2/${name}/tags/list?n=2&last=2>; rel="next"`);
    const second = await getJson(`${cache.url}/v2/${name}/tags/list?n=2&last=2`);
    assert.deepEqual(second.body.tags, ['3']);
    assert.equal(second.headers['link'], undefined);
    const mirror = await getJson(`${cache.url}/v2/team/app/tags/list?ns=${upstream.host}`);
    assert.deepEqual(mirror.body, { name: 'team/app', tags: ['1', '2', '3'] });
    const bad = await getJson(`${cache.url}/v2/${name}/tags/list?n=lots`);
    assert.equal(bad.status, 400);
    assert.equal(bad.body.errors[0].code, 'PAGINATION_NUMBER_INVALID');
    const unknown = await getJson(`${cache.url}/v2/${embedRegistry(upstream.host)}/team/none/tags/list`);
    assert.equal(unknown.status, 404);
    assert.equal(unknown.body.errors[0].code, 'NAME_UNKNOWN');
  });

  it('lists the cached repositories in /v2/_catalog, paged', async () => {
    await skopeoCopy(`${cache.host}/${embedRegistry(upstream.host)}/team/other:x`, work.path);
    const all = await getJson(`${cache.url}/v2/_catalog`);
    assert.deepEqual(all.body, {
      repositories: [
        `${embedRegistry(upstream.host)}/team/app`,
        `${embedRegistry(upstream.host)}/team/other`,
      ],
    });
    const page = await getJson(`${cache.url}/v2/_catalog?n=1`);
    assert.deepEqual(page.body.repositories, [`${embedRegistry(upstream.host)}/team/app`]);
    assert.match(String(page.headers['link']), /^<\/v2\/_catalog\?n=1&last=.*team%2Fapp>; rel="next"$/);
  });

  it('prints what the cache holds with pullmap cache ls, and the same as JSON', async () => {
    const text = await cli(['cache', 'ls', '--url', cache.url]);
    assert.equal(text.code, 0, text.stderr);
    const lines = text.stdout.trim().split('\n');
    assert.match(lines[0] ?? '', /^store: .* used of maxSize 1\.0 GiB \(0\.0 %\); \d+ blobs, \d+ manifests$/);
    assert.match(lines[1] ?? '', /^REPOSITORY\s+TAG\s+DIGEST\s+SIZE\s+LAST USE$/);
    assert.match(
      text.stdout,
      new RegExp(`${upstream.host}/team/app\\s+1\\s+${v1.manifest.digest.slice(0, 19)}`),
    );
    const json = await cli(['cache', 'ls', '--url', cache.url, '-o', 'json']);
    const listing = JSON.parse(json.stdout) as {
      usedBytes: number;
      maxSize: number;
      tags: { name: string; tag: string; digest: string; bytes: number; lastUse: number }[];
    };
    assert.equal(listing.maxSize, 2 ** 30);
    const app1 = listing.tags.find((t) => t.name === `${upstream.host}/team/app` && t.tag === '1');
    assert.equal(app1?.digest, v1.manifest.digest);
    // Bytes in the store: the disk store keeps the media type on a line before the manifest.
    const typeLine = Buffer.byteLength(`${v1.manifest.mediaType}\n`);
    assert.equal(app1?.bytes, typeLine + v1.manifest.size + v1.config.size + v1.layer.size);
    assert.ok((app1?.lastUse ?? 0) > 0);
    assert.equal(listing.usedBytes, cache.instance.store.usedBytes);
    const wrong = await cli(['cache', 'ls']);
    assert.equal(wrong.code, 2);
  });

  it('answers tags/list from the cached tag records, marked stale, when upstream is gone', async () => {
    await upstream.stop();
    const res = await getJson(`${cache.url}/v2/${name}/tags/list`);
    assert.equal(res.status, 200);
    assert.deepEqual(res.body, { name, tags: ['1'] });
    assert.equal(res.headers['x-pullmap-stale'], 'unreachable');
    const info = await skopeoInspect(`${cache.host}/${name}:1`);
    assert.deepEqual(info.RepoTags, ['1']);
  });
});

describe('cache: listing turned off', () => {
  let upstream: TestRegistry;
  let cache: TestCache;

  before(async () => {
    upstream = await startRegistry();
    cache = await startTestCache({ upstreams: [{ host: upstream.host, plainHttp: true }], listing: false });
  });
  after(() => closeAll(cache, upstream));

  it('answers /v2/_catalog and /store with 404, and cache ls says why', async () => {
    for (const path of ['/v2/_catalog', '/store']) {
      const res = await getJson(`${cache.url}${path}`);
      assert.equal(res.status, 404, path);
      assert.match(res.body.errors[0].message, /listing: false/);
    }
    const ls = await cli(['cache', 'ls', '--url', cache.url]);
    assert.equal(ls.code, 1);
    assert.match(ls.stderr, /answered 404/);
  });
});
