// Corporate egress: the `pullmap cache` process reaches its upstreams (manifests through the registry
// client, blobs through the blob transport) and its S3 endpoint through a real HTTP proxy (tinyproxy)
// named by HTTPS_PROXY / HTTP_PROXY, honours NO_PROXY, and `pullmap explain`'s existence probes do too.
// The upstreams carry made-up names only the proxy resolves, so a request that bypasses the proxy
// fails, and the proxy's log must list each request.
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type CacheProcess, skopeoCopy, spawnCache, unpackOci } from '../harness/cache.ts';
import { runInProcess } from '../harness/cli.ts';
import { buildImage, pushImage } from '../harness/images.ts';
import { type TempDir, tempDir } from '../harness/process.ts';
import { startProxy, type TestProxy } from '../harness/proxy.ts';
import { startRegistry, type TestRegistry } from '../harness/registry.ts';
import { startS3, type TestS3, weedBinary } from '../harness/s3.ts';

const PLAIN = 'plain.registry.proxied.test';
const SECURE = 'secure.registry.proxied.test';
const S3_NAME = 's3.proxied.test';
const FILES = { 'etc/motd': 'through the proxy\n' };

describe('HTTP proxies (tinyproxy on loopback)', () => {
  let work: TempDir;
  let proxy: TestProxy;
  let plain: TestRegistry;
  let secure: TestRegistry;
  const image = buildImage({ files: FILES });
  const caches: CacheProcess[] = [];
  /** The cache's environment: the proxy for both schemes, whatever the test runner's own settings. */
  const proxyEnv = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => {
    const env: NodeJS.ProcessEnv = { ...process.env };
    for (const name of ['HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy', 'NO_PROXY', 'no_proxy'])
      delete env[name];
    return { ...env, HTTPS_PROXY: proxy.url, HTTP_PROXY: proxy.url, ...extra };
  };
  const cacheFor = async (input: Record<string, unknown>, env: NodeJS.ProcessEnv): Promise<string> => {
    const dir = join(work.path, `cache-${caches.length}`);
    await mkdir(dir, { recursive: true });
    const cache = await spawnCache(input as { upstreams: unknown[] }, dir, { env });
    caches.push(cache);
    return cache.host;
  };
  /** Proxy log lines (method and target) added while `work` ran. */
  const through = async (work: () => Promise<unknown>): Promise<string[]> => {
    const before = (await proxy.requests()).length;
    await work();
    return (await proxy.requests()).slice(before);
  };

  before(async () => {
    work = await tempDir('proxy-test');
    proxy = await startProxy([PLAIN, SECURE, S3_NAME]);
    plain = await startRegistry();
    secure = await startRegistry({ tls: true, tlsNames: [SECURE] });
    await pushImage(plain, 'team/app', '1', image);
    await pushImage(secure, 'team/app', '1', image);
  });

  after(async () => {
    for (const cache of caches) await cache.daemon.stop().catch(() => {});
    await Promise.all([plain?.close(), secure?.close(), proxy?.close()]);
    await work?.remove();
  });

  it('plain-HTTP upstream: every manifest and blob request goes to the proxy in absolute form', async () => {
    const upstream = `${PLAIN}:${plain.port}`;
    const host = await cacheFor(
      { upstreams: [{ host: upstream, plainHttp: true, insecure: true }] },
      proxyEnv(),
    );
    let layout = '';
    const lines = await through(async () => {
      layout = await skopeoCopy(`${host}/${upstream.replace(':', '_')}/team/app:1`, work.path);
    });
    assert.deepEqual(await unpackOci(layout), FILES);
    const target = `http://${upstream}/v2/team/app`;
    assert.ok(lines.includes(`GET ${target}/manifests/1`), lines.join('\n'));
    for (const blob of [image.config, image.layer])
      assert.ok(lines.includes(`GET ${target}/blobs/${blob.digest}`), `${blob.digest}\n${lines.join('\n')}`);
  });

  it('HTTPS upstream: a CONNECT tunnel, TLS to the registry inside it', async () => {
    const upstream = `${SECURE}:${secure.port}`;
    const caFile = join(work.path, 'secure-ca.crt');
    await writeFile(caFile, secure.pki?.caPem ?? '');
    const host = await cacheFor({ upstreams: [{ host: upstream, caFile }] }, proxyEnv());
    let layout = '';
    const lines = await through(async () => {
      layout = await skopeoCopy(`${host}/${upstream.replace(':', '_')}/team/app:1`, work.path);
    });
    assert.deepEqual(await unpackOci(layout), FILES);
    assert.ok(lines.length >= 2, lines.join('\n'));
    assert.ok(
      lines.every((line) => line === `CONNECT ${upstream}`),
      lines.join('\n'),
    );
    // What crossed the tunnel reached the registry: the blobs were fetched from it.
    for (const blob of [image.config, image.layer])
      assert.equal(await secure.count({ method: 'GET', uri: `/blobs/${blob.digest}` }), 1);
  });

  it('NO_PROXY: a listed upstream is reached directly, a loopback one always is', async () => {
    // 0.0.0.0 is not the loopback to Go's rules (so it would be proxied), yet Linux connects it locally.
    const listed = `0.0.0.0:${plain.port}`;
    const host = await cacheFor(
      {
        upstreams: [
          { host: listed, plainHttp: true, insecure: true },
          { host: plain.host, plainHttp: true },
        ],
      },
      proxyEnv({ NO_PROXY: 'example.com,0.0.0.0/32' }),
    );
    const lines = await through(async () => {
      for (const upstream of [listed, plain.host]) {
        const layout = await skopeoCopy(`${host}/${upstream.replace(':', '_')}/team/app:1`, work.path);
        assert.deepEqual(await unpackOci(layout), FILES);
      }
    });
    assert.deepEqual(lines, []);
  });

  it("pullmap explain: an IfExists mapping's existence probe goes through the proxy", async () => {
    const upstream = `${SECURE}:${secure.port}`;
    const caFile = join(work.path, 'probe-ca.crt');
    await writeFile(caFile, secure.pki?.caPem ?? '');
    const config = join(work.path, 'if-exists.yaml');
    await writeFile(
      config,
      `apiVersion: pullmap.dev/v1alpha1
kind: ClusterImageMap
metadata: {name: probe}
spec:
  mappings: [{from: "docker.io/team/", to: "${upstream}/team/", when: IfExists}]
`,
    );
    const args = ['explain', '-o', 'json', '--config', config, '--registry-ca', caFile, 'team/app:1'];
    let result = { code: -1, stdout: '', stderr: '' };
    const lines = await through(async () => {
      result = await runInProcess(args, { env: { HTTPS_PROXY: proxy.url } });
    });
    assert.equal(result.code, 0, result.stderr);
    const out = result.stdout;
    assert.equal((JSON.parse(out) as { mapped: string }).mapped, `${upstream}/team/app:1`, out);
    assert.deepEqual(lines, [`CONNECT ${upstream}`]);
    assert.equal(await secure.count({ method: 'HEAD', uri: '/v2/team/app/manifests/1' }), 1);
  });

  it('a proxy URL pullmap cannot use is a usage error naming the variable', async () => {
    const { code, stderr } = await runInProcess(['explain', 'alpine'], {
      env: { HTTPS_PROXY: 'socks5://127.0.0.1:1080' },
    });
    assert.equal(code, 2);
    assert.match(stderr, /HTTPS_PROXY: proxy scheme socks5 is not supported/);
  });

  it('the S3 endpoint is reached through a CONNECT tunnel', async (t) => {
    try {
      await weedBinary();
    } catch {
      t.diagnostic('SeaweedFS is not built: run "bash scripts/go-tool.sh weed"');
      assert.fail('SeaweedFS binary missing');
    }
    const s3: TestS3 = await startS3();
    try {
      const bucket = await s3.bucket();
      const endpoint = s3.endpoint.replace('127.0.0.1', S3_NAME);
      const upstream = `${PLAIN}:${plain.port}`;
      const host = await cacheFor(
        {
          upstreams: [{ host: upstream, plainHttp: true, insecure: true }],
          storage: { s3: s3.storage(bucket, { endpoint }) },
        },
        proxyEnv(),
      );
      const lines = await through(async () => {
        const layout = await skopeoCopy(`${host}/${upstream.replace(':', '_')}/team/app:1`, work.path);
        assert.deepEqual(await unpackOci(layout), FILES);
      });
      assert.ok(lines.length > 0);
      // The SDK's agent keeps its tunnels alive: the CONNECT may date from the cache's start-up. The
      // endpoint's name resolves only for the proxy, so the pull working shows the tunnel carried it.
      const all = await proxy.requests();
      assert.ok(all.includes(`CONNECT ${S3_NAME}:${new URL(s3.endpoint).port}`), all.join('\n'));
      const keys = (await s3.list(bucket)).map((o) => o.key);
      assert.ok(
        keys.some((k) => k.endsWith(image.layer.digest.slice('sha256:'.length))),
        keys.join('\n'),
      );
    } finally {
      await s3.close();
    }
  });
});
