// One download as clients see it, on a real store directory: the ring of units in memory, the file
// behind it (written with O_DIRECT on the test machines' filesystem, or through the page cache), and
// clients that keep up, start late or ask for a range. The bytes every client gets, and the stored
// file, are compared with what upstream "sent".
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { giveAligned, takeAligned, UNIT } from '../../src/cache/aligned.ts';
import { Download, RING } from '../../src/cache/blob-fetch.ts';
import { copyRange } from '../../src/cache/copy.ts';
import { StoreWriteError } from '../../src/cache/errors.ts';
import { DiskStore } from '../../src/cache/store/disk.ts';
import type { TempFile } from '../../src/cache/store/spool.ts';
import { type TempDir, tempDir } from '../harness/process.ts';

const digestOf = (bytes: Buffer): string => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

/** What copyRange writes for [start, end] of a download, collected. */
function reader(download: Download, start = 0, end?: number): Promise<Buffer> {
  const out = new PassThrough();
  const chunks: Buffer[] = [];
  // Copied: copyRange reuses its buffers once a write is done, as a socket lets it.
  out.on('data', (c: Buffer) => chunks.push(Buffer.from(c)));
  assert.ok(download.acquire());
  return copyRange(download, start, end, out, () => {})
    .then(() => Buffer.concat(chunks))
    .finally(() => download.release());
}

/** Appends `bytes` in uneven chunks (as a socket delivers them), waiting whenever the download says so. */
async function feed(download: Download, bytes: Buffer): Promise<void> {
  const sizes = [65_536, 1_000, 300_000, 17, 524_288, 700_001];
  for (let at = 0, i = 0; at < bytes.length; i++) {
    const n = Math.min(sizes[i % sizes.length] as number, bytes.length - at);
    const wait = download.append(bytes.subarray(at, at + n));
    if (wait) await wait;
    at += n;
    // Let readers run between chunks, as they would between socket reads.
    if (i % 3 === 0) await new Promise((r) => setImmediate(r));
  }
  await download.end();
}

/**
 * Ends a fed download as the fetcher does (verified, stored, disposed), checking that the client and the
 * stored file got exactly `bytes`.
 */
async function settle(
  store: DiskStore,
  temp: TempFile,
  download: Download,
  got: Promise<Buffer>,
  bytes: Buffer,
): Promise<void> {
  download.verified();
  assert.ok((await got).equals(bytes), 'the client got every byte');
  await store.commitBlob(temp, download.digest, download.received);
  await download.dispose();
  download.finish(undefined);
  assert.ok((await readFile(store.blobPath(download.digest))).equals(bytes), 'the stored file is exact');
}

describe('cache download: ring, file and clients', () => {
  let work: TempDir;
  before(async () => {
    work = await tempDir('download');
  });
  after(async () => work.remove());

  const storeAt = (name: string, directIO = true) =>
    DiskStore.open({ dir: `${work.path}/${name}`, directIO });

  it('serves a blob longer than the ring to a client keeping up, a late one and a range, and stores it exactly', async () => {
    const store = await storeAt('direct');
    // Longer than the ring, and not a multiple of the unit or of the disk block.
    const bytes = randomBytes(RING * UNIT + 3 * UNIT + 12_345);
    const temp = await store.spool.tempFile({ direct: true });
    assert.ok(temp.direct, 'the test machines write downloads with O_DIRECT (ext4 or tmpfs)');
    const download = new Download(digestOf(bytes), bytes.length, temp);
    const early = reader(download);
    await feed(download, bytes);
    // Everything is on disk now; the first units left the ring long ago, so these read the file first.
    const late = reader(download);
    const range = reader(download, 12_345, 5 * UNIT + 99);
    download.verified();
    await store.commitBlob(temp, download.digest, download.received);
    await download.dispose();
    download.finish(undefined);
    assert.ok((await early).equals(bytes), 'the client that kept up got every byte');
    assert.ok((await late).equals(bytes), 'the client that started late got every byte');
    assert.ok((await range).equals(bytes.subarray(12_345, 5 * UNIT + 100)), 'the range is exact');
    const path = store.blobPath(download.digest);
    assert.equal((await stat(path)).size, bytes.length, 'the padded last block was cut back');
    assert.ok((await readFile(path)).equals(bytes));
    assert.equal(store.spool.directIO, true);
  });

  it('uses ordinary memory and the page cache when direct I/O is off or no aligned unit is left', async () => {
    const bytes = randomBytes(2 * UNIT + 777);
    const off = await storeAt('buffered', false);
    const temp = await off.spool.tempFile({ direct: true });
    assert.equal(temp.direct, undefined, 'directIO: false opens no O_DIRECT handle');
    const a = new Download(digestOf(bytes), bytes.length, temp);
    const got = reader(a);
    await feed(a, bytes);
    a.verified();
    assert.ok((await got).equals(bytes));
    await a.dispose();
    a.finish(undefined);

    const on = await storeAt('exhausted');
    const taken: Buffer[] = [];
    for (let unit = takeAligned(); unit !== undefined; unit = takeAligned()) taken.push(unit);
    try {
      // Longer than the small ring such a download keeps, so its units are reused.
      const longer = randomBytes((RING + 3) * UNIT + 777);
      const temp2 = await on.spool.tempFile({ direct: true });
      const b = new Download(digestOf(longer), undefined, temp2);
      const got2 = reader(b);
      await feed(b, longer);
      await settle(on, temp2, b, got2, longer);
    } finally {
      for (const unit of taken) giveAligned(unit);
    }
  });

  it('leaves the aligned units in the pool when fewer than a ring are free, and uses ordinary memory', async () => {
    const store = await storeAt('partial');
    const taken: Buffer[] = [];
    for (let unit = takeAligned(); unit !== undefined; unit = takeAligned()) taken.push(unit);
    const left = taken.splice(0, RING - 1);
    for (const unit of left) giveAligned(unit);
    try {
      const bytes = randomBytes((RING + 5) * UNIT + 4321);
      const temp = await store.spool.tempFile({ direct: true });
      const d = new Download(digestOf(bytes), bytes.length, temp);
      const back = Array.from({ length: RING - 1 }, () => takeAligned());
      assert.ok(
        back.every((u) => u !== undefined),
        'the download gave back the units it could not make a ring of',
      );
      for (const unit of back) giveAligned(unit as Buffer);
      const got = reader(d);
      // One chunk longer than the ring: the rest of it waits until written units can be reused.
      await d.append(bytes);
      await d.end();
      assert.ok(d.diskWaitSeconds > 0, 'the wait for the disk is counted');
      await settle(store, temp, d, got, bytes);
    } finally {
      for (const unit of taken) giveAligned(unit);
    }
  });

  it('checks each algorithm a digest may name as itself (sha384 once hashed as sha256)', async () => {
    const store = await storeAt('algorithms');
    const bytes = randomBytes(UNIT + 999);
    for (const algorithm of ['sha256', 'sha384', 'sha512']) {
      const digest = `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}`;
      const temp = await store.spool.tempFile({ direct: true });
      const d = new Download(digest, bytes.length, temp);
      await feed(d, bytes);
      assert.equal(await d.digested(), digest);
      await d.dispose();
      d.finish(undefined);
      await store.spool.discard(temp);
      await temp.handle.close();
      await temp.direct?.close();
    }
  });

  it('fails with a StoreWriteError, not a crash, when the file cannot be written', async () => {
    const store = await storeAt('broken');
    const temp = await store.spool.tempFile({ direct: true });
    await temp.handle.close();
    await temp.direct?.close();
    const bytes = randomBytes(3 * UNIT);
    const download = new Download(digestOf(bytes), bytes.length, temp);
    await assert.rejects(feed(download, bytes), StoreWriteError);
    await download.dispose();
  });

  it('an aligned unit given back twice is handed out once', () => {
    const unit = takeAligned();
    assert.ok(unit);
    giveAligned(unit);
    giveAligned(unit);
    const x = takeAligned();
    const y = takeAligned();
    assert.ok(x && y);
    assert.notEqual(x, y);
    giveAligned(x);
    giveAligned(y);
  });
});
