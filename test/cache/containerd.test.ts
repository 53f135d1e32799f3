// containerd's ctr pulling through the cache, both path-prefixed (what the webhook's stage 2 writes)
// and with the cache as a hosts.toml mirror (requests carry ?ns=<upstream>); the image is unpacked by
// containerd and its files are read from a mount. Also the story 001 chain: a map redirects docker.io
// to a mirror registry, stage 2 routes it through the cache, and ctr pulls the result.
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { run } from '../../src/cli/run.ts';
import { embedRegistry } from '../../src/core/reference/index.ts';
import {
  type Containerd,
  closeAll,
  mirrorHostsDir,
  readTree,
  skopeoCopy,
  startContainerd,
  startTestCache,
  type TestCache,
  unpackOci,
} from '../harness/cache.ts';
import { buildImage, buildIndex, pushImage, pushIndex } from '../harness/images.ts';
import { type TempDir, tempDir } from '../harness/process.ts';
import { startRegistry, type TestRegistry } from '../harness/registry.ts';

describe('cache: containerd pulls', () => {
  let upstream: TestRegistry;
  let cache: TestCache;
  let containerd: Containerd;
  let work: TempDir;
  const image = buildImage({ files: { 'srv/index.html': '<h1>via ctr</h1>\n' } });
  const multi = buildIndex([
    { os: 'linux', architecture: 'amd64' },
    { os: 'linux', architecture: 'arm64' },
  ]);

  /** Pulls `ref` with ctr (extra flags first), mounts it, and returns the files of the image. */
  const pullAndRead = async (ref: string, flags: readonly string[]): Promise<Record<string, string>> => {
    await containerd.ctr(['images', 'pull', ...flags, ref]);
    const mount = join(work.path, `mnt-${Math.random().toString(36).slice(2)}`);
    await mkdir(mount);
    await containerd.ctr(['images', 'mount', ref, mount]);
    try {
      return await readTree(mount);
    } finally {
      await containerd.ctr(['images', 'unmount', '--rm', mount]).catch(() => {});
    }
  };

  before(async () => {
    upstream = await startRegistry();
    work = await tempDir('cache-ctr');
    await pushImage(upstream, 'web/site', '2', image);
    await pushIndex(upstream, 'base/multi', '1', multi);
    cache = await startTestCache({ upstreams: [{ host: upstream.host, plainHttp: true }] });
    containerd = await startContainerd();
  });
  after(() => closeAll(containerd, cache, upstream, work));

  it('path-prefixed: ctr pulls and unpacks an image, and a multi-arch index', async () => {
    const ref = `${cache.host}/${embedRegistry(upstream.host)}/web/site:2`;
    assert.deepEqual(await pullAndRead(ref, ['--plain-http']), { 'srv/index.html': '<h1>via ctr</h1>\n' });
    const multiRef = `${cache.host}/${embedRegistry(upstream.host)}/base/multi:1`;
    assert.deepEqual(await pullAndRead(multiRef, ['--plain-http']), { 'platform.txt': 'linux/amd64\n' });
  });

  it('hosts.toml mirror: ctr asks the cache with ?ns= and never the upstream directly', async () => {
    const hostsDir = await mirrorHostsDir(work.path, upstream.host, cache.host);
    const before = await upstream.count({ uri: 'web/site/manifests' });
    const hits = (): number =>
      Number(
        /pullmap_cache_requests_total\{kind="manifest",upstream="[^"]+",result="hit"\} (\d+)/.exec(
          cache.instance.metrics.render(),
        )?.[1] ?? 0,
      );
    const hitsBefore = hits();
    const files = await pullAndRead(`${upstream.host}/web/site:2`, ['--hosts-dir', hostsDir]);
    assert.deepEqual(files, { 'srv/index.html': '<h1>via ctr</h1>\n' });
    // Everything came from the cache's store: the tag was fresh, so upstream was not even asked.
    assert.equal(await upstream.count({ uri: 'web/site/manifests' }), before);
    assert.ok(hits() > hitsBefore, 'the manifest was answered from the store');
  });
});

describe('story 001: redirect to a mirror, then through the cache', () => {
  let mirror: TestRegistry;
  let cache: TestCache;
  let containerd: Containerd;
  let work: TempDir;
  const nats = buildImage({ files: { 'nats-server': 'nats 2.10.26\n' } });

  before(async () => {
    // The mirror holds Docker Hub images under docker-mirror/, as project-a.azurecr.io/docker-mirror/ does.
    mirror = await startRegistry();
    work = await tempDir('story001');
    await pushImage(mirror, 'docker-mirror/library/nats', '2.10.26-alpine', nats);
    cache = await startTestCache({ upstreams: [{ host: mirror.host, plainHttp: true }] });
    containerd = await startContainerd();
  });
  after(() => closeAll(containerd, cache, mirror, work));

  it('docker.io/nats is rewritten to <cache>/<mirror>/docker-mirror/library/nats and pulls', async () => {
    const config = join(work.path, 'maps.yaml');
    await writeFile(
      config,
      `apiVersion: pullmap.dev/v1alpha1
kind: ClusterImageMap
metadata: {name: edge}
spec:
  mappings:
    - from: docker.io/
      to: ${mirror.host}/docker-mirror/
  cache: {enabled: true, address: "${cache.host}"}
`,
    );
    const stdout = new PassThrough();
    let text = '';
    stdout.on('data', (c: Buffer) => (text += c.toString()));
    const code = await run(['explain', '-o', 'json', '--config', config, 'nats:2.10.26-alpine'], {
      stdin: new PassThrough(),
      stdout,
      stderr: new PassThrough(),
      env: {},
    });
    assert.equal(code, 0);
    const decided = JSON.parse(text.trim()) as { mapped: string };
    const expected = `${cache.host}/${embedRegistry(mirror.host)}/docker-mirror/library/nats:2.10.26-alpine`;
    assert.equal(decided.mapped, expected, text);
    await containerd.ctr(['images', 'pull', '--plain-http', decided.mapped]);
    const layout = await skopeoCopy(decided.mapped, work.path);
    assert.deepEqual(await unpackOci(layout), { 'nats-server': 'nats 2.10.26\n' });
    assert.equal(await mirror.count({ method: 'GET', uri: `/blobs/${nats.layer.digest}` }), 1);
  });
});
