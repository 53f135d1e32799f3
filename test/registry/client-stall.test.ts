// Blob uploads over a slow link: docker-registry behind socat under trickle (768 KiB/s, under the old
// 1 MiB/s floor) on loopback. An upload has no total time limit, only a stall limit (4 s here, through
// the endpoint settings): one that takes nearly three times that while it progresses succeeds; one the target
// stops reading fails with REG_TIMEOUT, long before the caller's own deadline; the same through the
// Copier that `pullmap copy` and the fill loop run.
// On loopback the kernel's send buffer grows to 4 MiB and takes that much of a body at once: the
// blobs that must succeed are 8 MiB, so the answer after the last byte is not awaited for the
// buffer's drain alone (which the clock allows only as long as the body took). A full buffer takes
// more only once a third of it drained (1.8 s at this rate): the stall limit is above that.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { Copier, type CopyEvent } from '../../src/mirror/copy.ts';
import { RegistryClient, type UploadSession } from '../../src/registry/client.ts';
import { runInProcess } from '../harness/cli.ts';
import { buildImage, pushImage } from '../harness/images.ts';
import { tempDir } from '../harness/process.ts';
import { startRegistry, type TestRegistry } from '../harness/registry.ts';
import { errorCode, ref } from '../harness/registry-client.ts';
import { startThrottle, type ThrottledPath } from '../harness/throttle.ts';

const STALL_MS = 4000;
const KIB_PER_SECOND = 768;
const MIB = 1024 * 1024;
/** The caller's deadline: a stall must be caught long before it (the old total limit was 61 s). */
const CALLER_DEADLINE_MS = 20_000;

const sha256 = (bytes: Buffer): string => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

/** The blob as a stream of 64 KiB pieces; `onPulled` sees how many bytes the upload has taken. */
function pieces(bytes: Buffer, onPulled: (taken: number) => void = () => {}): Readable {
  let taken = 0;
  return Readable.from(
    (function* () {
      for (let start = 0; start < bytes.length; start += 64 * 1024) {
        const piece = bytes.subarray(start, start + 64 * 1024);
        taken += piece.length;
        onPulled(taken);
        yield piece;
      }
    })(),
    { objectMode: false },
  );
}

describe('blob uploads through a 768 KiB/s path (trickle + socat) to docker-registry', () => {
  let registry: TestRegistry;
  let slow: ThrottledPath;
  let client: RegistryClient;

  before(async () => {
    registry = await startRegistry();
    slow = await startThrottle(registry.host, KIB_PER_SECOND);
  });
  // A client per test: a connection a stalled test left behind is not the next test's.
  beforeEach(() => {
    client = new RegistryClient({
      endpoints: {
        [slow.host]: { scheme: 'http', stallTimeoutMs: STALL_MS },
        [registry.host]: { scheme: 'http' },
      },
    });
  });
  afterEach(async () => {
    await client.close();
  });

  after(async () => {
    await slow?.close();
    await registry?.stop();
  });

  async function session(repository: string): Promise<UploadSession> {
    const started = await client.startUpload(slow.host, repository);
    assert.ok(started.ok && started.value.kind === 'session', JSON.stringify(started));
    return started.value.session;
  }

  /** The blob as the registry serves it directly (not through the slow path). */
  async function stored(repository: string, digest: string): Promise<Buffer | undefined> {
    const res = await request(`${registry.url}/v2/${repository}/blobs/${digest}`);
    if (res.statusCode !== 200) {
      await res.body.dump();
      return undefined;
    }
    return Buffer.from(await res.body.arrayBuffer());
  }

  it('a chunk (PATCH of one buffer) that outlasts the stall limit succeeds', async () => {
    // 8 MiB is the copier's chunk size. Passes only if the buffer goes to the socket in pieces, each
    // piece taken being progress; written at once, it would show none until the answer.
    const blob = randomBytes(8 * MIB);
    const digest = sha256(blob);
    const patched = await client.patchBlob(await session('edge/chunked'), 0, blob, {
      signal: AbortSignal.timeout(CALLER_DEADLINE_MS),
    });
    assert.ok(patched.ok, JSON.stringify(patched));
    const closed = await client.putBlob(patched.value, digest, 0, Buffer.alloc(0));
    assert.equal(errorCode(closed), 'ok', JSON.stringify(closed));
    assert.deepEqual(await stored('edge/chunked', digest), blob);
  });

  it('the copier (pullmap copy, fill) copies an image with an 8 MiB layer over the slow path', async () => {
    // The layer is random, so it stays 8 MiB gzipped: about 11 s at this rate, streamed (monolithic PUT).
    const image = buildImage({ files: { 'big.bin': randomBytes(8 * MIB) } });
    await pushImage(registry, 'origin/big', '1', image);
    const result = await new Copier({ source: client, target: client, attempts: 1 }).copy({
      source: ref(`${registry.host}/origin/big:1`),
      target: ref(`${slow.host}/edge/big:1`),
    });
    assert.ok(result.ok, JSON.stringify(result));
    assert.equal(result.value.state, 'copied');
    assert.equal(result.value.bytesUploaded, image.layer.size + image.config.size);
    assert.deepEqual(await stored('edge/big', image.layer.digest), image.layer.bytes);
  });

  it('the copier says TARGET_FAILED with REG_TIMEOUT when the target stalls mid-layer', async () => {
    const image = buildImage({ files: { 'stuck.bin': randomBytes(8 * MIB) } });
    await pushImage(registry, 'origin/stuck', '1', image);
    let paused = false;
    const onEvent = (e: CopyEvent): void => {
      if (!paused && e.kind === 'bytes' && e.digest === image.layer.digest && e.bytes > 0) {
        paused = true;
        slow.pause();
      }
    };
    try {
      const result = await new Copier({ source: client, target: client, attempts: 1 }).copy({
        source: ref(`${registry.host}/origin/stuck:1`),
        target: ref(`${slow.host}/edge/stuck:1`),
        onEvent,
        signal: AbortSignal.timeout(CALLER_DEADLINE_MS),
      });
      assert.ok(paused);
      assert.equal(result.ok ? 'ok' : result.error.code, 'TARGET_FAILED', JSON.stringify(result));
      assert.equal(result.ok ? undefined : result.error.registry?.code, 'REG_TIMEOUT');
    } finally {
      slow.resume();
    }
  });

  it('fails with REG_TIMEOUT when the target stops reading mid-body', async () => {
    const blob = randomBytes(8 * MIB);
    const digest = sha256(blob);
    const upload = await session('edge/stuck');
    let paused = false;
    const body = pieces(blob, (taken) => {
      // A quarter MiB through, the relay stops reading; the rest fills the kernel's buffers and stops.
      if (!paused && taken > 256 * 1024) {
        paused = true;
        slow.pause();
      }
    });
    try {
      const put = await client.putBlob(upload, digest, blob.length, body, {
        signal: AbortSignal.timeout(CALLER_DEADLINE_MS),
      });
      assert.ok(paused);
      assert.equal(errorCode(put), 'REG_TIMEOUT', JSON.stringify(put));
    } finally {
      slow.resume();
    }
    assert.equal(await stored('edge/stuck', digest), undefined);
  });

  it('fails with REG_TIMEOUT when no answer comes after the whole body was sent', async () => {
    // Small enough to sit whole in the kernel's buffers: the body is all taken, the answer never comes.
    const blob = randomBytes(32 * 1024);
    const digest = sha256(blob);
    const upload = await session('edge/unanswered');
    slow.pause();
    try {
      const put = await client.putBlob(upload, digest, blob.length, blob, {
        signal: AbortSignal.timeout(CALLER_DEADLINE_MS),
      });
      assert.equal(errorCode(put), 'REG_TIMEOUT', JSON.stringify(put));
    } finally {
      slow.resume();
    }
  });

  it('pullmap copy --upload-stall-timeout 2s gives up on an upload the target stops taking, and retries', async () => {
    // The relay is paused for 6 s mid-layer; the connection it held never carries bytes again, so the
    // upload is retried only once the stall limit gives up on it: with the default 60 s, after the
    // caller's deadline here.
    const image = buildImage({ files: { 'paused.bin': randomBytes(8 * MIB) } });
    await pushImage(registry, 'origin/paused', '1', image);
    const dir = await tempDir('pullmap-stall-cli-');
    try {
      const config = join(dir.path, 'maps.yaml');
      await writeFile(
        config,
        `apiVersion: pullmap.dev/v1alpha1
kind: ClusterImageMap
metadata: {name: edge}
spec:
  mappings: [{from: ${registry.host}/origin/, to: ${slow.host}/edge/}]
`,
      );
      const args = ['copy', `${registry.host}/origin/paused:1`, '-c', config, '--upload-stall-timeout', '2s'];
      for (const host of [registry.host, slow.host]) args.push('--plain-http', host);
      const copying = runInProcess(args);
      const sessions = () => registry.count({ method: 'POST', uri: '/v2/edge/paused/blobs/uploads/' });
      for (let i = 0; (await sessions()) === 0; i++) {
        assert.ok(i < 200, 'no upload started');
        await sleep(50);
      }
      slow.pause();
      await sleep(6000);
      slow.resume();
      const deadline = sleep(2 * CALLER_DEADLINE_MS).then(() => 'deadline' as const);
      const done = await Promise.race([copying, deadline]);
      assert.ok(done !== 'deadline', 'the copy still waits on the stalled upload at the deadline');
      assert.equal(done.code, 0, done.stderr);
      // The stall limit that gave up is the flag's, named in the retry line the copy printed.
      assert.match(
        done.stderr,
        /attempt 1 of 4 failed, again in [\d.]+ s: REG_TIMEOUT: .*stalled \(no body bytes taken for 2000 ms/,
      );
      assert.ok(
        (await sessions()) > 2,
        `${await sessions()} upload sessions for 2 blobs: nothing was retried`,
      );
      assert.deepEqual(await stored('edge/paused', image.layer.digest), image.layer.bytes);
    } finally {
      slow.resume();
      await dir.remove();
    }
  });

  it('after a stall the same path carries the next upload (the relay is healthy again)', async () => {
    const blob = randomBytes(64 * 1024);
    const digest = sha256(blob);
    const put = await client.putBlob(await session('edge/after'), digest, blob.length, blob);
    assert.equal(errorCode(put), 'ok', JSON.stringify(put));
    assert.deepEqual(await stored('edge/after', digest), blob);
  });
});
