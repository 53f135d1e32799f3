// The cache's blob client (src/cache/transport/blobs.ts) against real docker-registry instances
// (anonymous, TLS, htpasswd with blob redirects) and a stalling upstream: streamed GETs on the blob
// transport, authenticated through the registry client's sessions.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BlobClient } from '../../src/cache/transport/blobs.ts';
import { parseReference } from '../../src/core/reference/index.ts';
import { RegistryClient } from '../../src/registry/client.ts';
import { RegistryFailure } from '../../src/registry/errors.ts';
import { startFaultyUpstream } from '../harness/faulty-upstream.ts';
import { buildImage, pushBlob, pushImage } from '../harness/images.ts';
import { startRegistry, type TestRegistry } from '../harness/registry.ts';
import { basic, errorCode, keyring, plain, ref } from '../harness/registry-client.ts';

describe('BlobClient against an anonymous registry', () => {
  let registry: TestRegistry;
  let registryClient: RegistryClient;
  let client: BlobClient;
  const image = buildImage();

  before(async () => {
    registry = await startRegistry();
    await pushImage(registry, 'team/app', 'v1', image);
    registryClient = plain(registry.host);
    client = new BlobClient(registryClient);
  });
  after(async () => {
    await registryClient.close();
    await registry.close();
  });

  it('streams a blob, verified against its digest, and passes a Range through', async () => {
    const whole = await client.getBlob(registry.host, 'team/app', image.layer.digest);
    assert.ok(whole.ok, JSON.stringify(whole));
    const chunks: Buffer[] = [];
    // The chunks are views of a reused read buffer: a sink keeping them must copy.
    await whole.value.pipeTo((chunk) => {
      chunks.push(Buffer.from(chunk));
      return undefined;
    });
    assert.deepEqual(Buffer.concat(chunks), image.layer.bytes);
    assert.equal(whole.value.size, image.layer.size);
    assert.equal(whole.value.status, 200);

    const part = await client.getBlob(registry.host, 'team/app', image.layer.digest, {
      range: 'bytes=10-19',
    });
    assert.ok(part.ok, JSON.stringify(part));
    assert.equal(part.value.status, 206);
    assert.equal(part.value.contentRange, `bytes 10-19/${image.layer.size}`);
    const partChunks: Buffer[] = [];
    for await (const chunk of part.value.stream()) partChunks.push(chunk as Buffer);
    assert.deepEqual(Buffer.concat(partChunks), image.layer.bytes.subarray(10, 20));

    const missing = await client.getBlob(registry.host, 'team/app', `sha256:${'1'.repeat(64)}`);
    assert.equal(errorCode(missing), 'REG_NOT_FOUND');
    const badDigest = await client.getBlob(registry.host, 'team/app', 'md5:abc');
    assert.equal(errorCode(badDigest), 'REG_BAD_INPUT');
  });

  it('fetches and verifies blobs named by sha384 and sha512, as references may name them', async () => {
    const bytes = Buffer.from('a layer addressed by a longer hash\n');
    for (const algorithm of ['sha384', 'sha512'] as const) {
      const digest = `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}`;
      assert.ok(parseReference(`${registry.host}/team/long@${digest}`).ok, 'the reference parses');
      await pushBlob(registry, 'team/long', { digest, size: bytes.length, bytes, mediaType: 'x' });
      const got = await client.getBlob(registry.host, 'team/long', digest);
      assert.ok(got.ok, JSON.stringify(got));
      const chunks: Buffer[] = [];
      await got.value.pipeTo((chunk) => {
        chunks.push(Buffer.from(chunk));
        return undefined;
      });
      assert.deepEqual(Buffer.concat(chunks), bytes);
    }
  });

  it('asks whether a blob exists with HEAD, answering its size', async () => {
    const head = await client.headBlob(registry.host, 'team/app', image.layer.digest);
    assert.ok(head.ok, JSON.stringify(head));
    assert.deepEqual(head.value, { size: image.layer.size, digest: image.layer.digest });
    const missing = await client.headBlob(registry.host, 'team/app', `sha256:${'1'.repeat(64)}`);
    assert.equal(errorCode(missing), 'REG_NOT_FOUND');
    assert.equal(errorCode(await client.headBlob(registry.host, 'team/app', 'md5:abc')), 'REG_BAD_INPUT');
  });
});

describe('BlobClient over TLS with a private CA', () => {
  let registry: TestRegistry;
  const image = buildImage();

  before(async () => {
    registry = await startRegistry({ tls: true });
    await pushImage(registry, 'team/app', 'v1', image);
  });
  after(() => registry.close());

  it('streams a blob over TLS on the blob transport, trusting the same CA', async () => {
    const client = new RegistryClient({ endpoints: { [registry.host]: { caPem: registry.pki?.caPem } } });
    const result = await new BlobClient(client).getBlob(registry.host, 'team/app', image.layer.digest);
    assert.ok(result.ok, JSON.stringify(result));
    const chunks: Buffer[] = [];
    for await (const chunk of result.value.stream()) chunks.push(chunk as Buffer);
    const untrusted = await new BlobClient(new RegistryClient()).getBlob(
      registry.host,
      'team/app',
      image.layer.digest,
    );
    await client.close();
    assert.deepEqual(Buffer.concat(chunks), image.layer.bytes);
    assert.equal(untrusted.ok ? '' : untrusted.error.code, 'REG_TLS_FAILED');
  });
});

describe('BlobClient and blob redirects', () => {
  let registry: TestRegistry;
  const image = buildImage({ files: { 'big.txt': 'x'.repeat(100_000) } });

  before(async () => {
    registry = await startRegistry({
      auth: { kind: 'htpasswd', users: { alice: 'wonderland' } },
      blobRedirect: true,
    });
    await pushImage(registry, 'team/app', 'v1', image);
  });
  after(() => registry.close());

  it('follows the redirect to blob storage without sending Authorization there', async () => {
    const client = plain(registry.host, {
      credentials: keyring(registry.host, basic('alice', 'wonderland')),
    });
    const result = await new BlobClient(client).getBlob(registry.host, 'team/app', image.layer.digest);
    assert.ok(result.ok, JSON.stringify(result));
    const chunks: Buffer[] = [];
    for await (const chunk of result.value.stream()) chunks.push(chunk as Buffer);
    await client.close();
    assert.deepEqual(Buffer.concat(chunks), image.layer.bytes);
    const gets = await registry.requests({ method: 'GET', uri: `/blobs/${image.layer.digest}` });
    assert.deepEqual(
      gets.map((g) => g.status),
      [401, 307],
    );
    const storage = registry.blobStorage?.requests() ?? [];
    assert.equal(storage.length, 1);
    assert.ok(storage[0]?.path.endsWith(`/${image.layer.digest.slice(7)}/data`));
    assert.equal(storage[0]?.authorization, undefined);
  });

  it('fails the stream when stored content does not match its digest', async () => {
    const victim = buildImage({ files: { 'victim.txt': 'original content\n' } });
    await pushImage(registry, 'team/victim', 'v1', victim);
    const hex = victim.layer.digest.slice('sha256:'.length);
    const file = join(registry.dir, 'data/docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data');
    const corrupted = Buffer.from(victim.layer.bytes);
    corrupted[corrupted.length - 1] = (corrupted.at(-1) ?? 0) ^ 0xff;
    await writeFile(file, corrupted);
    const client = plain(registry.host, {
      credentials: keyring(registry.host, basic('alice', 'wonderland')),
    });
    const result = await new BlobClient(client).getBlob(registry.host, 'team/victim', victim.layer.digest);
    assert.ok(result.ok, JSON.stringify(result));
    let received = 0;
    await assert.rejects(
      result.value.pipeTo((chunk) => {
        received += chunk.length;
        return undefined;
      }),
      (err: unknown) => err instanceof RegistryFailure && err.code === 'REG_DIGEST_MISMATCH',
    );
    // Every byte was handed over before the verdict: the consumer decides what to do with them.
    assert.equal(received, corrupted.length);
    await client.close();
  });

  it('frees the request slot when a blob stream is abandoned', async () => {
    const client = new RegistryClient({
      endpoints: { [registry.host]: { scheme: 'http', maxConcurrent: 1, requestTimeoutMs: 2000 } },
      credentials: keyring(registry.host, basic('alice', 'wonderland')),
    });
    const first = await new BlobClient(client).getBlob(registry.host, 'team/app', image.layer.digest);
    assert.ok(first.ok);
    first.value.cancel();
    const second = await client.headManifest(ref(`${registry.host}/team/app:v1`));
    await client.close();
    assert.ok(second.ok, JSON.stringify(second));
  });
});

describe('RegistryClient.close and blob transfers', () => {
  it('ends a blob transfer under way (it runs on a connection of its own)', async () => {
    const image = buildImage({ files: { 'big.bin': 'x'.repeat(256 * 1024) } });
    const upstream = await startFaultyUpstream('team/app', 'v1', image, { [image.layer.digest]: 'stall' });
    const client = new RegistryClient({
      endpoints: { [upstream.host]: { scheme: 'http', requestTimeoutMs: 60_000 } },
    });
    try {
      const blob = await new BlobClient(client).getBlob(upstream.host, 'team/app', image.layer.digest);
      assert.ok(blob.ok, JSON.stringify(blob));
      const reading = blob.value.pipeTo(() => undefined);
      await upstream.stalled();
      await client.close();
      await assert.rejects(reading, (err: unknown) => {
        assert.ok(err instanceof RegistryFailure);
        assert.equal(err.code, 'REG_CONNECTION_FAILED');
        return true;
      });
    } finally {
      await upstream.close();
    }
  });
});
