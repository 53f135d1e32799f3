// Stale-if-error against real registries: upstream stopped, image deleted upstream, and the cache's
// credentials refused by a token-auth registry. Each case serves the cached manifest (marked stale, and
// counted) when allowed, and fails cleanly with the distribution error when switched off.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { embedRegistry } from '../../src/core/reference/index.ts';
import { closeAll, skopeoCopy, startTestCache, type TestCache, unpackOci } from '../harness/cache.ts';
import { buildImage, deleteManifest, pushImage } from '../harness/images.ts';
import { type TempDir, tempDir } from '../harness/process.ts';
import { startRegistry, type TestRegistry } from '../harness/registry.ts';
import { startTokenServer, type TokenServer } from '../harness/token-server.ts';

const image = buildImage({ files: { 'app.txt': 'cached copy\n' } });

async function getManifest(cache: TestCache, upstreamHost: string, path: string) {
  const res = await request(`${cache.url}/v2/${embedRegistry(upstreamHost)}/${path}`, {
    headers: { accept: image.manifest.mediaType },
  });
  const text = await res.body.text();
  return { status: res.statusCode, stale: res.headers['x-pullmap-stale'], text };
}

const ALL_OFF = {
  unreachable: false,
  timeout: false,
  serverError: false,
  rateLimited: false,
  unauthorized: false,
  notFound: false,
};

/** Two caches over one store: one serves stale answers, the other has every switch off. */
async function cachesOver(upstreams: unknown[], storeDir: string): Promise<[TestCache, TestCache]> {
  const storage = { dir: storeDir };
  const on = await startTestCache({ upstreams, storage, refresh: { default: 'Always' } });
  const off = await startTestCache({
    upstreams,
    storage,
    refresh: { default: 'Always' },
    staleIfError: ALL_OFF,
  });
  return [on, off];
}

describe('cache: stale-if-error with a stopped or emptied upstream', () => {
  let upstream: TestRegistry;
  let work: TempDir;
  let on: TestCache;
  let off: TestCache;

  before(async () => {
    upstream = await startRegistry();
    work = await tempDir('cache-stale');
    await pushImage(upstream, 'team/gone', '1', image);
    await pushImage(upstream, 'team/down', '1', image);
    [on, off] = await cachesOver([{ host: upstream.host, plainHttp: true }], join(work.path, 'store'));
    for (const repo of ['team/gone', 'team/down'])
      await skopeoCopy(`${on.host}/${embedRegistry(upstream.host)}/${repo}:1`, work.path);
  });
  after(() => closeAll(on, off, upstream, work));

  it('an image deleted upstream is still served, marked stale, when notFound is allowed', async () => {
    await deleteManifest(upstream, 'team/gone', image.manifest.digest);
    const layout = await skopeoCopy(`${on.host}/${embedRegistry(upstream.host)}/team/gone:1`, work.path);
    assert.deepEqual(await unpackOci(layout), { 'app.txt': 'cached copy\n' });
    const r = await getManifest(on, upstream.host, 'team/gone/manifests/1');
    assert.equal(r.status, 200);
    assert.equal(r.stale, 'notFound');
    const refused = await getManifest(off, upstream.host, 'team/gone/manifests/1');
    assert.equal(refused.status, 404);
    assert.match(refused.text, /MANIFEST_UNKNOWN/);
  });

  it('with upstream stopped, cached images still pull and uncached ones fail cleanly', async () => {
    await upstream.stop();
    const layout = await skopeoCopy(`${on.host}/${embedRegistry(upstream.host)}/team/down:1`, work.path);
    assert.deepEqual(await unpackOci(layout), { 'app.txt': 'cached copy\n' });
    const r = await getManifest(on, upstream.host, 'team/down/manifests/1');
    assert.equal(r.stale, 'unreachable');
    const uncached = await getManifest(on, upstream.host, 'team/never-pulled/manifests/1');
    assert.equal(uncached.status, 502);
    assert.match(uncached.text, /"code":"UNAVAILABLE"/);
    const refused = await getManifest(off, upstream.host, 'team/down/manifests/1');
    assert.equal(refused.status, 502);
    assert.equal(refused.stale, undefined);
    await assert.rejects(skopeoCopy(`${off.host}/${embedRegistry(upstream.host)}/team/down:1`, work.path));
  });

  it('counts stale answers by reason', () => {
    const text = on.instance.metrics.render();
    const up = upstream.host;
    assert.ok(text.includes(`pullmap_cache_stale_responses_total{upstream="${up}",reason="notFound"} `));
    assert.match(text, /pullmap_cache_stale_responses_total\{upstream="[^"]+",reason="unreachable"\} [1-9]/);
    assert.match(
      off.instance.metrics.render(),
      /pullmap_cache_requests_total\{kind="manifest",upstream="[^"]+",result="error"\} [1-9]/,
    );
  });
});

describe('cache: stale-if-error when upstream refuses the cache credentials (token auth)', () => {
  let tokens: TokenServer;
  let upstream: TestRegistry;
  let work: TempDir;

  before(async () => {
    work = await tempDir('cache-stale-auth');
    tokens = await startTokenServer(work.path, { users: { puller: 'right' }, anonymousPull: false });
    upstream = await startRegistry({ auth: { kind: 'token', tokenServer: tokens } });
    await pushImage(upstream, 'team/private', '1', image);
  });
  after(() => closeAll(upstream, tokens, work));

  it('serves the cached manifest with wrong credentials when allowed, DENIED otherwise', async () => {
    const { writeFile } = await import('node:fs/promises');
    const right = join(work.path, 'right');
    const wrong = join(work.path, 'wrong');
    await writeFile(right, 'right\n');
    await writeFile(wrong, 'wrong\n');
    const storeDir = join(work.path, 'store');
    const upstreamWith = (passwordFile: string) => [
      { host: upstream.host, plainHttp: true, username: 'puller', passwordFile },
    ];
    const first = await startTestCache({ upstreams: upstreamWith(right), storage: { dir: storeDir } });
    try {
      await skopeoCopy(`${first.host}/${embedRegistry(upstream.host)}/team/private:1`, work.path);
    } finally {
      await first.close();
    }
    const [on, off] = await cachesOver(upstreamWith(wrong), storeDir);
    try {
      const layout = await skopeoCopy(`${on.host}/${embedRegistry(upstream.host)}/team/private:1`, work.path);
      assert.deepEqual(await unpackOci(layout), { 'app.txt': 'cached copy\n' });
      assert.equal((await getManifest(on, upstream.host, 'team/private/manifests/1')).stale, 'unauthorized');
      const refused = await getManifest(off, upstream.host, 'team/private/manifests/1');
      assert.equal(refused.status, 403);
      assert.match(refused.text, /"code":"DENIED"/);
    } finally {
      await on.close();
      await off.close();
    }
  });
});

describe('cache: stale-if-error when upstream hangs', () => {
  let upstream: TestRegistry;
  let work: TempDir;
  let on: TestCache;
  let off: TestCache;

  before(async () => {
    upstream = await startRegistry();
    work = await tempDir('cache-stale-hang');
    await pushImage(upstream, 'team/hung', '1', image);
    const storage = { dir: join(work.path, 'store') };
    // Upstream gets 20 s (or 1.5 s) per request; revalidating a cached tag gets 300 ms when it may be
    // answered stale.
    on = await startTestCache({
      upstreams: [{ host: upstream.host, plainHttp: true, timeout: '20s' }],
      storage,
      refresh: { default: 'Always', timeout: '300ms' },
    });
    off = await startTestCache({
      upstreams: [{ host: upstream.host, plainHttp: true, timeout: '1500ms' }],
      storage,
      refresh: { default: 'Always', timeout: '300ms' },
      staleIfError: { timeout: false },
    });
    await skopeoCopy(`${on.host}/${embedRegistry(upstream.host)}/team/hung:1`, work.path);
    // A stopped process still completes TCP handshakes (the kernel does) but never answers.
    process.kill(upstream.daemon.pid, 'SIGSTOP');
  });
  after(async () => {
    process.kill(upstream.daemon.pid, 'SIGCONT');
    await closeAll(on, off, upstream, work);
  });

  it('serves the cached manifest after refresh.timeout, not after the upstream timeout', async () => {
    const r = await getManifest(on, upstream.host, 'team/hung/manifests/1');
    assert.equal(r.status, 200);
    assert.equal(r.stale, 'timeout');
  });

  it('waits for the upstream timeout when no stale copy may be served', async () => {
    const r = await getManifest(off, upstream.host, 'team/hung/manifests/1');
    assert.equal(r.status, 504);
  });
});
