// The copy engine between real docker-registry instances, checked with skopeo as the reference client:
// digests equal byte for byte, the copy pullable, blobs the target has not sent again, refusals typed.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Copier, type CopyEvent } from '../../src/mirror/copy.ts';
import { PushLedger } from '../../src/mirror/push-ledger.ts';
import { RegistryClient } from '../../src/registry/client.ts';
import { CredentialKeyring } from '../../src/registry/keyring.ts';
import { skopeoCopy, unpackOci } from '../harness/cache.ts';
import { buildImage, buildIndex, pushBlob, pushImage, pushIndex } from '../harness/images.ts';
import { startBodyLimitProxy } from '../harness/nginx.ts';
import { freePort, type TempDir, tempDir } from '../harness/process.ts';
import { startRegistry, type TestRegistry } from '../harness/registry.ts';
import { ref } from '../harness/registry-client.ts';
import { rawDigest } from './skopeo.ts';

describe('Copier between docker-registry instances', () => {
  let origin: TestRegistry;
  let mirror: TestRegistry;
  let locked: TestRegistry;
  let work: TempDir;
  let client: RegistryClient;
  let lockedClient: RegistryClient;
  const single = buildImage({ files: { 'hello.txt': 'single\n' } });
  const multi = buildIndex([
    { os: 'linux', architecture: 'amd64' },
    { os: 'linux', architecture: 'arm64' },
  ]);

  before(async () => {
    [origin, mirror, locked, work] = await Promise.all([
      startRegistry(),
      startRegistry(),
      startRegistry({ auth: { kind: 'htpasswd', users: { filler: 'secret' } } }),
      tempDir('pullmap-copy-'),
    ]);
    await pushImage(origin, 'team/app', '1', single);
    await pushIndex(origin, 'team/multi', '2', multi);
    const endpoints = Object.fromEntries(
      [origin, mirror, locked].map((r) => [r.host, { scheme: 'http' as const }]),
    );
    client = new RegistryClient({ endpoints });
    lockedClient = new RegistryClient({
      endpoints,
      credentials: new CredentialKeyring([
        {
          key: locked.host,
          credential: { kind: 'basic', username: 'filler', password: 'secret', source: 'test' },
        },
      ]),
    });
  });
  after(async () => {
    await Promise.all([client?.close(), lockedClient?.close()]);
    await Promise.all([origin?.close(), mirror?.close(), locked?.close(), work?.remove()]);
  });

  it('copies a single-platform image byte for byte, tag last, and skopeo pulls it from the mirror', async () => {
    const events: CopyEvent[] = [];
    const copier = new Copier({ source: client, target: client });
    const result = await copier.copy({
      source: ref(`${origin.host}/team/app:1`),
      target: ref(`${mirror.host}/mirror/team/app:1`),
      onEvent: (e) => events.push(e),
    });
    assert.ok(result.ok, JSON.stringify(result));
    assert.equal(result.value.state, 'copied');
    assert.equal(result.value.tagged, '1');
    assert.equal(result.value.blobsUploaded, 2);
    assert.equal(result.value.bytesUploaded, single.layer.size + single.config.size);
    assert.equal(await rawDigest(`${mirror.host}/mirror/team/app:1`), single.manifest.digest);
    assert.equal(await rawDigest(`${origin.host}/team/app:1`), single.manifest.digest);
    const files = await unpackOci(await skopeoCopy(`${mirror.host}/mirror/team/app:1`, work.path));
    assert.equal(files['hello.txt'], 'single\n');
    assert.ok(events.some((e) => e.kind === 'bytes'));
    // The tag was set by the last PUT, after the manifest by digest.
    const puts = await mirror.requests({ method: 'PUT', uri: '/v2/mirror/team/app/manifests/' });
    assert.deepEqual(
      puts.map((p) => p.uri.split('/').pop()),
      [single.manifest.digest, '1'],
    );
  });

  it('does not upload blobs the target already has, and a second copy sends nothing', async () => {
    const copier = new Copier({ source: client, target: client });
    const before =
      (await mirror.count({ method: 'PATCH' })) +
      (await mirror.count({ method: 'PUT', uri: '/blobs/uploads/' }));
    const again = await copier.copy({
      source: ref(`${origin.host}/team/app:1`),
      target: ref(`${mirror.host}/mirror/team/app:1`),
    });
    assert.ok(again.ok);
    assert.equal(again.value.state, 'present');
    assert.equal(again.value.blobsUploaded, 0);
    // Another repository of the same mirror, with the same layer already in a sibling: HEAD says no
    // (repositories are separate), so it is uploaded; the registry's own access log counts the uploads.
    const other = await copier.copy({
      source: ref(`${origin.host}/team/app:1`),
      target: ref(`${mirror.host}/other/app:1`),
    });
    assert.ok(other.ok);
    const uploads = (await mirror.count({ method: 'PUT', uri: '/blobs/uploads/' })) - before;
    assert.equal(uploads, 2, 'only the new repository got uploads');
    assert.equal(await rawDigest(`${mirror.host}/other/app:1`), single.manifest.digest);
  });

  it('HEADs each blob first and uploads only what the target repository lacks', async () => {
    await pushBlob(mirror, 'partial/app', single.layer);
    const before = await mirror.count({ method: 'PUT', uri: '/v2/partial/app/blobs/uploads/' });
    const result = await new Copier({ source: client, target: client }).copy({
      source: ref(`${origin.host}/team/app:1`),
      target: ref(`${mirror.host}/partial/app:1`),
    });
    assert.ok(result.ok, JSON.stringify(result));
    assert.equal(result.value.blobsPresent, 1);
    assert.equal(result.value.blobsUploaded, 1);
    const after = await mirror.count({ method: 'PUT', uri: '/v2/partial/app/blobs/uploads/' });
    assert.equal(after - before, 1, 'the registry received one blob upload: the config');
  });

  it('uploads in chunks (PATCH with Content-Range, then PUT) when asked to', async () => {
    const big = buildImage({ files: { 'big.bin': Buffer.alloc(300_000, 7) } });
    await pushImage(origin, 'team/big', '1', big);
    const result = await new Copier({
      source: client,
      target: client,
      upload: 'chunked',
      chunkBytes: 64 * 1024,
    }).copy({
      source: ref(`${origin.host}/team/big:1`),
      target: ref(`${mirror.host}/chunked/big:1`),
    });
    assert.ok(result.ok, JSON.stringify(result));
    assert.ok(
      (await mirror.count({ method: 'PATCH', uri: '/v2/chunked/big/blobs/uploads/', status: 202 })) >= 2,
    );
    assert.equal(await rawDigest(`${mirror.host}/chunked/big:1`), big.manifest.digest);
    const files = await unpackOci(await skopeoCopy(`${mirror.host}/chunked/big:1`, work.path));
    assert.equal(files['big.bin']?.length, 300_000);
  });

  it('falls back to chunks the target accepts when a proxy in front refuses the monolithic upload (nginx, 1m body limit)', async () => {
    const large = buildImage({ files: { 'large.bin': randomBytes(3_000_000) } });
    await pushImage(origin, 'team/large', '1', large);
    const proxy = await startBodyLimitProxy(mirror.host, '1m');
    const viaProxy = new RegistryClient({ endpoints: { [proxy.host]: { scheme: 'http' } } });
    try {
      const result = await new Copier({ source: client, target: viaProxy }).copy({
        source: ref(`${origin.host}/team/large:1`),
        target: ref(`${proxy.host}/limited/large:1`),
      });
      assert.ok(result.ok, JSON.stringify(result));
      assert.equal(result.value.blobsUploaded, 2);
      assert.ok(
        (await mirror.count({ method: 'PATCH', uri: '/v2/limited/large/blobs/uploads/', status: 202 })) >= 3,
      );
      assert.equal(await rawDigest(`${mirror.host}/limited/large:1`), large.manifest.digest);
    } finally {
      await viaProxy.close();
      await proxy.close();
    }
  });

  it('mounts blobs across repositories of the same registry instead of uploading them', async () => {
    const copier = new Copier({ source: client, target: client });
    const result = await copier.copy({
      source: ref(`${mirror.host}/mirror/team/app:1`),
      target: ref(`${mirror.host}/copied/app:1`),
    });
    assert.ok(result.ok, JSON.stringify(result));
    assert.equal(result.value.blobsMounted, 2);
    assert.equal(result.value.blobsUploaded, 0);
    assert.equal(
      await mirror.count({ method: 'POST', uri: /copied\/app\/blobs\/uploads\/\?mount=/, status: 201 }),
      2,
    );
    assert.equal(await rawDigest(`${mirror.host}/copied/app:1`), single.manifest.digest);
  });

  it('copies a multi-arch index whole, children by digest before the index and the tag', async () => {
    const copier = new Copier({ source: client, target: client });
    const result = await copier.copy({
      source: ref(`${origin.host}/team/multi:2`),
      target: ref(`${mirror.host}/mirror/team/multi:2`),
    });
    assert.ok(result.ok, JSON.stringify(result));
    assert.equal(result.value.state, 'copied');
    assert.deepEqual(result.value.platforms, ['linux/amd64', 'linux/arm64']);
    assert.equal(await rawDigest(`${mirror.host}/mirror/team/multi:2`), multi.index.digest);
    for (const image of multi.images)
      assert.equal(
        await rawDigest(`${mirror.host}/mirror/team/multi@${image.manifest.digest}`),
        image.manifest.digest,
      );
    const layout = await skopeoCopy(`${mirror.host}/mirror/team/multi:2`, work.path, [
      '--override-arch',
      'arm64',
    ]);
    assert.equal((await unpackOci(layout))['platform.txt'], 'linux/arm64\n');
  });

  it('with a platform filter copies the selected manifests only and neither pushes the index nor tags', async () => {
    const copier = new Copier({ source: client, target: client });
    const result = await copier.copy({
      source: ref(`${origin.host}/team/multi:2`),
      target: ref(`${mirror.host}/filtered/multi:2`),
      platforms: [{ os: 'linux', architecture: 'arm64' }],
    });
    assert.ok(result.ok, JSON.stringify(result));
    assert.equal(result.value.state, 'partial');
    assert.equal(result.value.tagged, undefined);
    const arm = multi.images.find((i) => i.platform.architecture === 'arm64')!;
    assert.equal(
      await rawDigest(`${mirror.host}/filtered/multi@${arm.manifest.digest}`),
      arm.manifest.digest,
    );
    await assert.rejects(rawDigest(`${mirror.host}/filtered/multi:2`));
    await assert.rejects(rawDigest(`${mirror.host}/filtered/multi@${multi.index.digest}`));
    const none = await copier.copy({
      source: ref(`${origin.host}/team/multi:2`),
      target: ref(`${mirror.host}/filtered/multi:2`),
      platforms: [{ os: 'windows', architecture: 'amd64' }],
    });
    assert.equal(none.ok ? 'ok' : none.error.code, 'NO_PLATFORM');
  });

  it('copies a digest-pinned reference without a tag; the digest stays valid at the target', async () => {
    const copier = new Copier({ source: client, target: client });
    const result = await copier.copy({
      source: ref(`${origin.host}/team/multi@${multi.index.digest}`),
      target: ref(`${mirror.host}/pinned/multi@${multi.index.digest}`),
    });
    assert.ok(result.ok, JSON.stringify(result));
    assert.equal(result.value.tagged, undefined);
    assert.equal(await rawDigest(`${mirror.host}/pinned/multi@${multi.index.digest}`), multi.index.digest);
  });

  it('writes to an htpasswd registry with credentials, and a refusal without them is typed', async () => {
    const refused = await new Copier({ source: client, target: client, attempts: 1 }).copy({
      source: ref(`${origin.host}/team/app:1`),
      target: ref(`${locked.host}/team/app:1`),
    });
    assert.equal(refused.ok, false);
    assert.equal(refused.ok ? '' : refused.error.code, 'TARGET_REFUSED');
    assert.equal(refused.ok ? '' : refused.error.registry?.code, 'REG_UNAUTHORIZED');
    assert.match(refused.ok ? '' : refused.error.message, /requires credentials/);
    const allowed = await new Copier({ source: client, target: lockedClient }).copy({
      source: ref(`${origin.host}/team/app:1`),
      target: ref(`${locked.host}/team/app:1`),
    });
    assert.ok(allowed.ok, JSON.stringify(allowed));
    assert.equal(await rawDigest(`${locked.host}/team/app:1`, 'filler:secret'), single.manifest.digest);
  });

  it('a copy cut short leaves nothing tagged, and the next copy finishes without sending blobs again', async () => {
    const three = buildImage({ files: { 'a.bin': Buffer.alloc(2_000_000, 1), 'b.txt': 'b\n' } });
    await pushImage(origin, 'team/cut', '1', three);
    const stop = new AbortController();
    const cut = await new Copier({ source: client, target: client, blobsPerRegistry: 1 }).copy({
      source: ref(`${origin.host}/team/cut:1`),
      target: ref(`${mirror.host}/cut/app:1`),
      signal: stop.signal,
      // The leader dies after the first blob: no manifest, no tag.
      onEvent: (e) => {
        if (e.kind === 'blob') stop.abort();
      },
    });
    assert.equal(cut.ok ? 'ok' : cut.error.code, 'CANCELLED');
    await assert.rejects(rawDigest(`${mirror.host}/cut/app:1`));
    await assert.rejects(rawDigest(`${mirror.host}/cut/app@${three.manifest.digest}`));
    const resumed = await new Copier({ source: client, target: client }).copy({
      source: ref(`${origin.host}/team/cut:1`),
      target: ref(`${mirror.host}/cut/app:1`),
    });
    assert.ok(resumed.ok, JSON.stringify(resumed));
    assert.equal(resumed.value.blobsPresent, 1, 'the blob of the first attempt is not sent again');
    assert.equal(resumed.value.blobsUploaded, 1);
    assert.equal(await rawDigest(`${mirror.host}/cut/app:1`), three.manifest.digest);
  });

  it('keeps at most blobsPerRegistry blob transfers in flight at one target registry, across copies and copiers', async () => {
    const images = [1, 2, 3].map(() => buildImage({ files: { 'r.bin': randomBytes(4_000_000) } }));
    await Promise.all(images.map((image, i) => pushImage(origin, `team/wide${i}`, '1', image)));
    const inFlight = new Set<string>();
    let most = 0;
    const onEvent = (e: CopyEvent) => {
      if (e.kind === 'bytes') inFlight.add(e.digest);
      else if (e.kind === 'blob') inFlight.delete(e.digest);
      most = Math.max(most, inFlight.size);
    };
    // Two copiers (as the fill loop has one per set of credentials) sharing the per-registry slots.
    const ledger = new PushLedger();
    const copiers = [1, 2].map(
      () => new Copier({ source: client, target: client, blobsPerRegistry: 2, ledger }),
    );
    const results = await Promise.all(
      images.map((_, i) =>
        copiers[i % 2]!.copy({
          source: ref(`${origin.host}/team/wide${i}:1`),
          target: ref(`${mirror.host}/wide/app${i}:1`),
          onEvent,
        }),
      ),
    );
    for (const r of results) assert.ok(r.ok && r.value.blobsUploaded === 2, JSON.stringify(r));
    assert.ok(most >= 1 && most <= 2, `${most} blobs were in transfer at once`);
  });

  it('pushes each blob and manifest once when copies of one image into one repository run at once', async () => {
    // By tag and by digest at once, as a pod that names both gives them (docker-registry refused one
    // manifest with DIGEST_INVALID while the other copy's upload rewrote a blob link it checked).
    const image = buildIndex([
      { os: 'linux', architecture: 'amd64' },
      { os: 'linux', architecture: 'arm64' },
    ]);
    await pushIndex(origin, 'team/twice', '1', image);
    const copier = new Copier({ source: client, target: client });
    const results = await Promise.all(
      [':1', `@${image.index.digest}`, ':1'].map((at, i) =>
        copier.copy({
          source: ref(`${origin.host}/team/twice${at}`),
          target: ref(`${mirror.host}/twice/app${i === 2 ? ':2' : at}`),
        }),
      ),
    );
    for (const r of results) assert.ok(r.ok && r.value.state === 'copied', JSON.stringify(r));
    const blobs = new Set(image.images.flatMap((i) => [i.config.digest, i.layer.digest]));
    const sum = (pick: (v: { blobsUploaded: number; manifestsPushed: number }) => number) =>
      results.reduce((n, r) => n + (r.ok ? pick(r.value) : 0), 0);
    assert.equal(
      sum((v) => v.blobsUploaded),
      blobs.size,
    );
    // Two platform manifests and the index, each pushed once by digest.
    assert.equal(
      sum((v) => v.manifestsPushed),
      3,
    );
    const uploads = await mirror.requests({ method: 'PUT', uri: '/v2/twice/app/blobs/uploads/' });
    assert.equal(uploads.length, blobs.size);
    assert.equal(await rawDigest(`${mirror.host}/twice/app:1`), image.index.digest);
    assert.equal(await rawDigest(`${mirror.host}/twice/app:2`), image.index.digest);
  });

  it('retries a target that is not up yet with backoff, and says TARGET_FAILED when the attempts run out', async () => {
    const port = await freePort();
    const source = ref(`${origin.host}/team/app:1`);
    const target = ref(`127.0.0.1:${port}/late/app:1`);
    const local = new RegistryClient({ endpoints: { [`127.0.0.1:${port}`]: { scheme: 'http' } } });
    try {
      const once = await new Copier({ source: client, target: local, attempts: 1 }).copy({ source, target });
      assert.equal(once.ok ? '' : once.error.code, 'TARGET_FAILED');
      assert.equal(once.ok ? '' : once.error.registry?.code, 'REG_CONNECTION_FAILED');
      // Connections are refused until the registry starts: only retries can finish this copy.
      const retries: CopyEvent[] = [];
      const copying = new Copier({
        source: client,
        target: local,
        attempts: 60,
        backoffMs: 100,
        maxBackoffMs: 400,
      }).copy({ source, target, onEvent: (e) => e.kind === 'retry' && retries.push(e) });
      await new Promise((r) => setTimeout(r, 1000));
      const late = await startRegistry({ port });
      try {
        const result = await copying;
        assert.ok(result.ok, JSON.stringify(result));
        assert.equal(await rawDigest(`127.0.0.1:${port}/late/app:1`), single.manifest.digest);
        // Each failed attempt was announced, with its cause and the wait before the next (the blobs
        // are tried in parallel, each with its own count).
        const seen = retries.flatMap((e) => (e.kind === 'retry' ? [e] : []));
        assert.ok(seen.length >= 2, `${seen.length} retry events`);
        for (const e of seen) {
          assert.deepEqual([e.side, e.code, e.attempts], ['target', 'REG_CONNECTION_FAILED', 60]);
          assert.ok(e.waitMs >= 50 && e.waitMs <= 400, `waited ${e.waitMs} ms`);
        }
        assert.ok(Math.max(...seen.map((e) => e.attempt)) >= 2);
      } finally {
        await late.close();
      }
    } finally {
      await local.close();
    }
  });

  it('answers SOURCE_FAILED for an image the source lacks', async () => {
    const result = await new Copier({ source: client, target: client }).copy({
      source: ref(`${origin.host}/team/none:1`),
      target: ref(`${mirror.host}/team/none:1`),
    });
    assert.equal(result.ok ? '' : result.error.code, 'SOURCE_FAILED');
    assert.equal(result.ok ? '' : result.error.registry?.code, 'REG_NOT_FOUND');
  });
});
