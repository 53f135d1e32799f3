// Bounded memory for a large layer (issue 24: a 1 GB layer must not cost 1 GB of RSS): the built
// `pullmap copy` copies an image with a 1 GiB layer between loopback docker-registries under GNU time,
// and its peak resident set stays far below the layer's size. The layer is streamed into the origin
// too, so the test process does not hold it either.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { type Blob, buildImage, pushBlob, pushManifest, sha256 } from '../harness/images.ts';
import { execFileAsync, requireCommand, type TempDir, tempDir } from '../harness/process.ts';
import { PULLMAP } from '../harness/pullmap.ts';
import { startRegistry, type TestRegistry } from '../harness/registry.ts';
import { rawDigest } from './skopeo.ts';

const MiB = 1024 * 1024;
const LAYER_BYTES = 1024 * MiB;
/** The chart's memory limit for pullmap: a copy that buffered the layer would pass it four times over. */
const RSS_LIMIT_MIB = 256;

/** The layer's bytes, 1 MiB at a time: a random block stamped with its index, so no two are alike. */
function* layerChunks(block: Buffer): Generator<Buffer> {
  for (let i = 0; i < LAYER_BYTES / MiB; i++) {
    const chunk = Buffer.from(block);
    chunk.writeUInt32BE(i, 0);
    yield chunk;
  }
}

/** Pushes the layer by streaming it in one PUT (the digest computed by a first pass over the same bytes). */
async function pushLargeLayer(origin: TestRegistry, repository: string): Promise<Blob> {
  const block = Buffer.from(createHash('sha512').update('pullmap').digest().toString('hex').repeat(8192));
  const hash = createHash('sha256');
  for (const chunk of layerChunks(block)) hash.update(chunk);
  const digest = `sha256:${hash.digest('hex')}`;
  const started = await request(new URL(`/v2/${repository}/blobs/uploads/`, origin.url), {
    method: 'POST',
    dispatcher: origin.dispatcher,
  });
  await started.body.dump();
  const location = started.headers['location'];
  assert.equal(typeof location, 'string', 'the upload started');
  const upload = new URL(location as string, origin.url);
  upload.searchParams.set('digest', digest);
  const done = await request(upload, {
    method: 'PUT',
    dispatcher: origin.dispatcher,
    headers: { 'content-type': 'application/octet-stream', 'content-length': String(LAYER_BYTES) },
    body: Readable.from(layerChunks(block)),
  });
  await done.body.dump();
  assert.equal(done.statusCode, 201, 'the origin stored the layer');
  // Only the descriptor matters from here on: `bytes` is never read for a blob already pushed.
  return {
    mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
    digest,
    size: LAYER_BYTES,
    bytes: Buffer.alloc(0),
  };
}

describe('pullmap copy of a 1 GiB layer', () => {
  let origin: TestRegistry;
  let mirror: TestRegistry;
  let work: TempDir;
  let digest: string;

  before(async () => {
    [origin, mirror, work] = await Promise.all([
      startRegistry(),
      startRegistry(),
      tempDir('pullmap-copy-memory-'),
    ]);
    const layer = await pushLargeLayer(origin, 'team/large');
    const base = buildImage();
    await pushBlob(origin, 'team/large', base.config);
    const d = (b: Blob) => ({ mediaType: b.mediaType, digest: b.digest, size: b.size });
    const bytes = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: base.manifest.mediaType,
        config: d(base.config),
        layers: [d(layer)],
      }),
    );
    digest = await pushManifest(origin, 'team/large', '1', {
      mediaType: base.manifest.mediaType,
      bytes,
      digest: sha256(bytes),
      size: bytes.length,
    });
  });
  after(async () => {
    await Promise.all([origin?.close(), mirror?.close(), work?.remove()]);
  });

  it(`streams the layer: the copy is exact and its peak RSS stays under ${RSS_LIMIT_MIB} MiB`, async (t) => {
    const config = join(work.path, 'maps.yaml');
    await writeFile(
      config,
      `apiVersion: pullmap.dev/v1alpha1
kind: ClusterImageMap
metadata: {name: edge}
spec:
  mappings:
    - {from: ${origin.host}/team/, to: ${mirror.host}/edge/}
`,
    );
    const { stderr } = await execFileAsync(
      requireCommand('time'),
      [
        '-f',
        'maxrss=%M',
        process.execPath,
        PULLMAP,
        'copy',
        `${origin.host}/team/large:1`,
        ...['--config', config, '--plain-http', origin.host, '--plain-http', mirror.host],
      ],
      { timeout: 600_000, maxBuffer: 16 * MiB },
    );
    assert.match(stderr, /summary: 1 copied/);
    const rssMib = Number(/maxrss=(\d+)/.exec(stderr)?.[1]) / 1024;
    t.diagnostic(`pullmap copy of a 1 GiB layer: peak RSS ${rssMib.toFixed(0)} MiB`);
    assert.ok(rssMib < RSS_LIMIT_MIB, `peak RSS ${rssMib.toFixed(0)} MiB\n${stderr.slice(-2000)}`);
    assert.equal(await rawDigest(`${mirror.host}/edge/large:1`), digest);
    const uploads = await mirror.requests({
      method: 'PUT',
      uri: '/v2/edge/large/blobs/uploads/',
      status: 201,
    });
    assert.equal(uploads.length, 2, 'the layer and the config were uploaded');
  });
});
