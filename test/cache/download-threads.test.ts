// A download written through the page cache (storage.directIO: false) hashes on the main
// thread and starts no helper thread: each costs about 11 MiB (docs/decisions.md, "Cache memory: no
// helper threads"). A file of its own, so no earlier test in the process has started one.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { UNIT } from '../../src/cache/aligned.ts';
import { Download, PAGE_CACHE_RING } from '../../src/cache/blob-fetch.ts';
import { DiskStore } from '../../src/cache/store/disk.ts';
import { type TempDir, tempDir } from '../harness/process.ts';

const digestOf = (bytes: Buffer): string => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
/** Threads of this process (libuv's pool, V8's and any worker). */
const threads = async (): Promise<number> => (await readdir('/proc/self/task')).length;

describe('cache download on the page cache', () => {
  let work: TempDir;
  before(async () => {
    work = await tempDir('download-threads');
  });
  after(async () => work.remove());

  it('verifies the digest inline and starts no helper thread', async () => {
    const store = await DiskStore.open({ dir: work.path, directIO: false });
    assert.equal(store.spool.directIO, false);
    // libuv's pool starts all its threads at its first task: have it started before counting.
    await readFile('/proc/self/status');
    const before = await threads();
    // Longer than the ring, so units are reused once written and hashed.
    const bytes = randomBytes((PAGE_CACHE_RING + 3) * UNIT + 4321);
    const temp = await store.spool.tempFile({ direct: true });
    assert.equal(temp.direct, undefined);
    const download = new Download(digestOf(bytes), bytes.length, temp);
    for (let at = 0; at < bytes.length; at += 300_000) {
      const wait = download.append(bytes.subarray(at, at + 300_000));
      if (wait) await wait;
    }
    assert.equal(await download.digested(), digestOf(bytes));
    await download.end();
    assert.equal(await threads(), before, 'no thread was started for hashing or writing');
    download.verified();
    await store.commitBlob(temp, download.digest, download.received);
    await download.dispose();
    download.finish(undefined);
    assert.ok((await readFile(store.blobPath(download.digest))).equals(bytes), 'the stored file is exact');
  });
});
