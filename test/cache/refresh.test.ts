// Mutable tags through the cache: a new image pushed upstream under the same tag is served on the
// next pull with refresh Always, only after the interval with Interval (the cache's clock is moved, no
// waiting), never with Never; digests pinned earlier still pull; an upstream refusing manifest HEAD is
// revalidated with GET. Real registry, real skopeo.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { embedRegistry } from '../../src/core/reference/index.ts';
import { closeAll, skopeoCopy, startTestCache, type TestCache, unpackOci } from '../harness/cache.ts';
import { buildImage, pushImage } from '../harness/images.ts';
import { type TempDir, tempDir } from '../harness/process.ts';
import { startRegistry, type TestRegistry } from '../harness/registry.ts';
import { type LoopbackStub, startHeadRefusingProxy } from '../harness/registry-stubs.ts';

const HOUR = 3_600_000;

describe('cache: refresh policies for mutable tags', () => {
  let upstream: TestRegistry;
  let cache: TestCache;
  let work: TempDir;
  let clock = 1_800_000_000_000;
  const v1 = buildImage({ files: { 'version.txt': 'v1\n' } });
  const v2 = buildImage({ files: { 'version.txt': 'v2\n' } });
  const repos = ['team/always', 'team/interval', 'team/never', 'team/default-never'] as const;

  const pull = async (repo: string, reference = ':stable'): Promise<string | undefined> => {
    const layout = await skopeoCopy(
      `${cache.host}/${embedRegistry(upstream.host)}/${repo}${reference}`,
      work.path,
    );
    return (await unpackOci(layout))['version.txt'];
  };

  before(async () => {
    upstream = await startRegistry();
    work = await tempDir('cache-refresh');
    for (const repo of repos) await pushImage(upstream, repo, 'stable', v1);
    const name = (repo: string): string => `${upstream.host.replace(/\./g, '\\.')}/${repo}`;
    cache = await startTestCache(
      {
        upstreams: [{ host: upstream.host, plainHttp: true }],
        refresh: {
          default: 'Never',
          rules: [
            { repository: name('team/always'), refresh: 'Always' },
            { repository: name('team/interval'), tags: ['stable', 'latest'], refresh: 'Interval(1h)' },
            { repository: name('team/never'), tags: ['stab.*'], refresh: 'Never' },
          ],
        },
      },
      { now: () => clock },
    );
    for (const repo of repos) assert.equal(await pull(repo), 'v1\n', `${repo}: first pull`);
    for (const repo of repos) await pushImage(upstream, repo, 'stable', v2);
  });
  after(() => closeAll(cache, upstream, work));

  it('Always serves the new image on the next pull', async () => {
    assert.equal(await pull('team/always'), 'v2\n');
  });

  it('Interval serves the cached image until the interval has passed, then the new one', async () => {
    const heads = await upstream.count({ method: 'HEAD', uri: 'team/interval/manifests/stable' });
    clock += HOUR - 1000;
    assert.equal(await pull('team/interval'), 'v1\n');
    assert.equal(await upstream.count({ method: 'HEAD', uri: 'team/interval/manifests/stable' }), heads);
    clock += 2000;
    assert.equal(await pull('team/interval'), 'v2\n');
    assert.equal(await upstream.count({ method: 'HEAD', uri: 'team/interval/manifests/stable' }), heads + 1);
  });

  it('Never (by rule and by default) keeps serving the first image, without asking upstream', async () => {
    clock += 10 * HOUR;
    assert.equal(await pull('team/never'), 'v1\n');
    assert.equal(await pull('team/default-never'), 'v1\n');
    assert.equal(await upstream.count({ method: 'HEAD', uri: 'team/never/manifests/' }), 0);
    assert.equal(await upstream.count({ method: 'HEAD', uri: 'team/default-never/manifests/' }), 0);
  });

  it('digests pinned before the tag moved still pull, and are never asked about upstream', async () => {
    const before = await upstream.count({ uri: `manifests/${v1.manifest.digest}` });
    assert.equal(await pull('team/always', `@${v1.manifest.digest}`), 'v1\n');
    assert.equal(await pull('team/always', `@${v1.manifest.digest}`), 'v1\n');
    assert.equal(await upstream.count({ uri: `manifests/${v1.manifest.digest}` }), before);
  });

  it('counts refreshes by result', () => {
    const text = cache.instance.metrics.render();
    assert.match(text, /pullmap_cache_refreshes_total\{result="changed"\} [1-9]/);
  });
});

describe('cache: refreshing tags of an upstream that refuses manifest HEAD', () => {
  let upstream: TestRegistry;
  let proxy: LoopbackStub;
  let cache: TestCache;
  let work: TempDir;
  const v1 = buildImage({ files: { 'version.txt': 'headless v1\n' } });
  const v2 = buildImage({ files: { 'version.txt': 'headless v2\n' } });

  const pull = async (): Promise<string | undefined> => {
    const layout = await skopeoCopy(
      `${cache.host}/${embedRegistry(proxy.host)}/team/headless:stable`,
      work.path,
    );
    return (await unpackOci(layout))['version.txt'];
  };

  before(async () => {
    upstream = await startRegistry();
    proxy = await startHeadRefusingProxy(upstream.url, 405);
    work = await tempDir('cache-headless');
    await pushImage(upstream, 'team/headless', 'stable', v1);
    cache = await startTestCache({
      upstreams: [{ host: proxy.host, plainHttp: true }],
      refresh: { default: 'Always' },
      staleIfError: { unreachable: false, serverError: false, timeout: false },
    });
  });
  after(() => closeAll(cache, proxy, upstream, work));

  it('revalidates with GET (HEAD refused once, then remembered) and serves the moved tag', async () => {
    assert.equal(await pull(), 'headless v1\n');
    assert.equal(proxy.requests(), 0, 'the first pull GETs the manifest');
    await pushImage(upstream, 'team/headless', 'stable', v2);
    const gets = await upstream.count({ method: 'GET', uri: 'team/headless/manifests/stable' });
    assert.equal(await pull(), 'headless v2\n');
    assert.equal(await pull(), 'headless v2\n');
    assert.equal(proxy.requests(), 1, 'the refusal is remembered for the host');
    assert.ok(
      (await upstream.count({ method: 'GET', uri: 'team/headless/manifests/stable' })) >= gets + 2,
      'both revalidations asked upstream with GET',
    );
    const text = cache.instance.metrics.render();
    assert.match(text, /pullmap_cache_refreshes_total\{result="changed"\} 1\n/);
    assert.match(text, /pullmap_cache_refreshes_total\{result="unchanged"\} 1\n/);
    assert.doesNotMatch(text, /pullmap_cache_refreshes_total\{result="failed"\} [1-9]/);
  });
});
