// The cache serving real pulls (skopeo) from a real docker-registry, path-prefixed as the webhook's
// stage 2 writes image names; the pulled image is unpacked and its files compared.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { getGlobalDispatcher, request } from 'undici';
import { embedRegistry } from '../../src/core/reference/index.ts';
import { closeAll, skopeoCopy, startTestCache, type TestCache, unpackOci } from '../harness/cache.ts';
import { buildImage, pushImage } from '../harness/images.ts';
import { type TempDir, tempDir } from '../harness/process.ts';
import { startRegistry, type TestRegistry } from '../harness/registry.ts';

describe('cache: path-prefixed pulls with skopeo', () => {
  let upstream: TestRegistry;
  let cache: TestCache;
  let work: TempDir;
  let prefix: string;
  const image = buildImage({ files: { 'app/hello.txt': 'hello through the cache\n', 'etc/version': '1\n' } });
  const headOnly = buildImage({ files: { 'head.txt': 'only ever asked about\n' } });

  before(async () => {
    upstream = await startRegistry();
    work = await tempDir('cache-pull');
    await pushImage(upstream, 'team/app', '1.0', image);
    await pushImage(upstream, 'team/copy', '1.0', image);
    await pushImage(upstream, 'team/head', '1', headOnly);
    cache = await startTestCache({
      upstreams: [{ host: upstream.host, plainHttp: true }],
      storage: { maxSize: '1Gi' },
    });
    prefix = `${cache.host}/${embedRegistry(upstream.host)}`;
  });
  after(() => closeAll(cache, upstream, work));

  it('pulls an image through the cache and the unpacked files are the pushed ones', async () => {
    const layout = await skopeoCopy(`${prefix}/team/app:1.0`, work.path);
    const files = await unpackOci(layout);
    assert.deepEqual(files, { 'app/hello.txt': 'hello through the cache\n', 'etc/version': '1\n' });
  });

  it('serves the second pull from the store: no blob is fetched upstream again', async () => {
    const blobGets = await upstream.count({ method: 'GET', uri: '/blobs/' });
    const layout = await skopeoCopy(`${prefix}/team/app:1.0`, work.path);
    assert.equal((await unpackOci(layout))['app/hello.txt'], 'hello through the cache\n');
    assert.equal(await upstream.count({ method: 'GET', uri: '/blobs/' }), blobGets);
  });

  it('serves blobs stored for one repository to another of the same upstream without fetching them', async () => {
    const asked = { uri: '/team/copy/' };
    const before = (await upstream.requests(asked)).length;
    const layout = await skopeoCopy(`${prefix}/team/copy:1.0`, work.path);
    assert.equal((await unpackOci(layout))['app/hello.txt'], 'hello through the cache\n');
    // Upstream is asked only about the tag, under its own repository; the blobs come from the store.
    const requests = (await upstream.requests(asked)).slice(before);
    assert.ok(requests.length > 0);
    for (const r of requests) assert.match(r.uri, /^\/v2\/team\/copy\/manifests\//, `${r.method} ${r.uri}`);
  });

  it('answers manifests with the headers clients rely on', async () => {
    const res = await request(`${cache.url}/v2/${embedRegistry(upstream.host)}/team/app/manifests/1.0`, {
      headers: { accept: image.manifest.mediaType },
    });
    const body = Buffer.from(await res.body.arrayBuffer());
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['content-type'], image.manifest.mediaType);
    assert.equal(res.headers['docker-content-digest'], image.manifest.digest);
    assert.equal(res.headers['etag'], `"${image.manifest.digest}"`);
    assert.equal(Number(res.headers['content-length']), image.manifest.size);
    assert.deepEqual(body, image.manifest.bytes);
    const byDigest = await request(
      `${cache.url}/v2/${embedRegistry(upstream.host)}/team/app/manifests/${image.manifest.digest}`,
      { method: 'HEAD' },
    );
    assert.equal(byDigest.statusCode, 200);
    assert.equal(byDigest.headers['docker-content-digest'], image.manifest.digest);
  });

  it('serves blob ranges', async () => {
    const url = `${cache.url}/v2/${embedRegistry(upstream.host)}/team/app/blobs/${image.layer.digest}`;
    const res = await request(url, { headers: { range: 'bytes=10-19' } });
    assert.equal(res.statusCode, 206);
    assert.equal(res.headers['content-range'], `bytes 10-19/${image.layer.size}`);
    assert.deepEqual(Buffer.from(await res.body.arrayBuffer()), image.layer.bytes.subarray(10, 20));
    const bad = await request(url, { headers: { range: `bytes=${image.layer.size + 5}-` } });
    await bad.body.dump();
    assert.equal(bad.statusCode, 416);
  });

  it('answers HEAD of an uncached blob from upstream HEAD, without downloading it', async () => {
    const digest = headOnly.layer.digest;
    const url = `${cache.url}/v2/${embedRegistry(upstream.host)}/team/head/blobs/${digest}`;
    const heads = await upstream.count({ method: 'HEAD', uri: digest }); // the push asked too
    const res = await request(url, { method: 'HEAD' });
    await res.body.dump();
    assert.equal(res.statusCode, 200);
    assert.equal(Number(res.headers['content-length']), headOnly.layer.size);
    assert.equal(res.headers['docker-content-digest'], digest);
    await new Promise((r) => setTimeout(r, 200)); // a download, had one started, would be done by now
    assert.equal(await cache.instance.store.useBlob(digest), undefined);
    assert.equal(await upstream.count({ method: 'GET', uri: digest }), 0);
    assert.equal(await upstream.count({ method: 'HEAD', uri: digest }), heads + 1);

    const unknown = await request(url.replace(digest, `sha256:${'1'.repeat(64)}`), { method: 'HEAD' });
    await unknown.body.dump();
    assert.equal(unknown.statusCode, 404);
    const got = await request(url);
    assert.deepEqual(Buffer.from(await got.body.arrayBuffer()), headOnly.layer.bytes);
  });

  it('answers distribution errors: unknown manifest, unknown upstream, invalid names, pushes', async () => {
    const host = embedRegistry(upstream.host);
    const cases: [string, string, number, string][] = [
      ['GET', `/v2/${host}/team/app/manifests/nope`, 404, 'MANIFEST_UNKNOWN'],
      ['GET', `/v2/${host}/team/app/blobs/sha256:${'0'.repeat(64)}`, 404, 'BLOB_UNKNOWN'],
      ['GET', '/v2/quay.io/team/app/manifests/1.0', 404, 'NAME_UNKNOWN'],
      ['GET', '/v2/team/app/manifests/1.0?ns=evil.example', 404, 'NAME_UNKNOWN'],
      ['GET', `/v2/${host}/team/../app/manifests/1.0`, 400, 'NAME_INVALID'],
      ['GET', `/v2/${host}/team/%2e%2e/app/manifests/1.0`, 400, 'NAME_INVALID'],
      ['GET', `/v2/${host}/Team/App/manifests/1.0`, 400, 'NAME_INVALID'],
      ['GET', `/v2/${host}/team/app/blobs/latest`, 400, 'DIGEST_INVALID'],
      ['POST', `/v2/${host}/team/app/blobs/uploads/`, 405, 'UNSUPPORTED'],
      ['PUT', `/v2/${host}/team/app/manifests/2.0`, 405, 'UNSUPPORTED'],
      ['DELETE', `/v2/${host}/team/app/manifests/1.0`, 405, 'UNSUPPORTED'],
      ['GET', '/v2/_catalog?n=many', 400, 'PAGINATION_NUMBER_INVALID'],
      ['GET', `/v2/${host}/team/app/tags`, 404, 'UNSUPPORTED'],
    ];
    for (const [method, path, status, code] of cases) {
      // Sent as written: a URL object would resolve ".." before it left the client.
      const res = await getGlobalDispatcher().request({ origin: cache.url, path, method: method as 'GET' });
      const body = (await res.body.json()) as { errors: { code: string; message: string }[] };
      assert.equal(res.statusCode, status, `${method} ${path}`);
      assert.equal(body.errors[0]?.code, code, `${method} ${path}: ${body.errors[0]?.message}`);
    }
    // Nothing but the configured upstream was ever asked for anything.
    assert.equal(await upstream.count({ uri: 'nope' }), 1);
  });

  it('answers /v2/ as a registry and exposes metrics', async () => {
    const base = await request(`${cache.url}/v2/`);
    assert.equal(base.statusCode, 200);
    assert.equal(base.headers['docker-distribution-api-version'], 'registry/2.0');
    await base.body.dump();
    // A host that is not an upstream is refused, and counted under "other", never as a label of its own.
    const stranger = await request(`${cache.url}/v2/stranger.example/team/app/manifests/1`);
    assert.equal(stranger.statusCode, 404);
    await stranger.body.dump();
    const text = await (await request(`${cache.url}/metrics`)).body.text();
    assert.doesNotMatch(text, /stranger\.example/);
    assert.match(text, /pullmap_cache_request_duration_seconds_count\{kind="other",upstream="other"\} [1-9]/);
    assert.ok(
      text.includes(`pullmap_cache_requests_total{kind="blob",upstream="${upstream.host}",result="hit"} `),
    );
    assert.match(text, /pullmap_cache_requests_total\{kind="blob",upstream="[^"]+",result="hit"\} [1-9]/);
    // Latency by kind and upstream: only configured hosts are label values.
    assert.match(
      text,
      new RegExp(
        `pullmap_cache_request_duration_seconds_count\\{kind="blob",upstream="${upstream.host}"\\} [1-9]`,
      ),
    );
    assert.match(text, /^pullmap_build_info\{version="\d+\.\d+\.\d+[^"]*",nodejs="[^"]+"\} 1$/m);
    for (const name of [
      'process_cpu_seconds_total',
      'process_start_time_seconds',
      'process_open_fds',
      'process_resident_memory_bytes',
      'nodejs_eventloop_lag_seconds',
    ])
      assert.match(text, new RegExp(`^${name} [0-9.e+-]+$`, 'm'), name);
    assert.match(text, /pullmap_cache_served_bytes_total\{source="cache"\} [1-9]/);
    assert.match(text, /pullmap_cache_store_bytes [1-9]/);
    assert.match(text, /^pullmap_cache_store_max_bytes 1073741824$/m);
  });
});
