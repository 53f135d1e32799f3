// The helper threads downloads use (src/cache/thread.ts, writer.ts, digester.ts): answers come back in
// order, a thread that dies fails what it had not answered and the next use starts a new one, direct
// writes land where they were sent, and the kernel's refusals keep their codes.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { giveAligned, takeAligned, UNIT } from '../../src/cache/aligned.ts';
import { digesterFor, stopHashing } from '../../src/cache/digester.ts';
import { DigesterError, WriterError } from '../../src/cache/errors.ts';
import { DiskStore } from '../../src/cache/store/disk.ts';
import { isDirectIORefusal } from '../../src/cache/store/spool.ts';
import { HelperThread } from '../../src/cache/thread.ts';
import { stopWriting, writeOnThread } from '../../src/cache/writer.ts';
import { type TempDir, tempDir } from '../harness/process.ts';

// Answers each number with its double after a pause that shrinks, so out-of-order answers would show;
// "die" ends the thread without answering.
const ECHO = `
const { parentPort } = require('node:worker_threads');
parentPort.on('message', (m) => {
  if (m.op === 'die') process.exit(3);
  const until = Date.now() + Math.max(0, 20 - m.n);
  while (Date.now() < until) {}
  parentPort.postMessage({ seq: m.seq, n: m.n * 2 });
});
`;

describe('helper thread', () => {
  it('matches each answer to its question, and a dead thread fails what it had not answered', async () => {
    const thread = new HelperThread(ECHO, (reason) => new Error(`echo lost: ${reason}`));
    const ask = (n: number) => thread.ask({ n }).then((r) => r.n);
    const first = thread.start();
    assert.deepEqual(await Promise.all([1, 2, 3, 10, 19].map(ask)), [2, 4, 6, 20, 38]);

    // Asked before "die": answered. Asked after: the thread is gone before it reads them.
    const answered = ask(5);
    thread.tell({ op: 'die' });
    const orphans = [ask(6), ask(8)];
    const settled = await Promise.allSettled([answered, ...orphans]);
    assert.deepEqual(settled[0], { status: 'fulfilled', value: 10 });
    for (const orphan of settled.slice(1)) {
      assert.equal(orphan.status, 'rejected');
      assert.match(String((orphan as PromiseRejectedResult).reason), /echo lost: exited with code 3/);
    }
    assert.equal(thread.running(first), false);

    // The next question starts a new thread, of a new generation.
    assert.equal(await ask(7), 14);
    const second = thread.start();
    assert.notEqual(second, first);
    assert.equal(thread.running(second), true);
    await thread.terminate();
    assert.equal(thread.running(second), false);
  });
});

describe('writing and hashing threads', () => {
  let work: TempDir;
  let store: DiskStore;
  before(async () => {
    work = await tempDir('threads');
    store = await DiskStore.open({ dir: work.path, directIO: true });
  });
  after(async () => work.remove());

  it('writes shared units with O_DIRECT where they were sent, in any order of positions', async () => {
    const temp = await store.spool.tempFile({ direct: true });
    assert.ok(temp.direct, 'the test machines allow O_DIRECT (ext4 or tmpfs)');
    const units = [takeAligned(), takeAligned(), takeAligned()] as Buffer[];
    const bytes = randomBytes(3 * UNIT);
    try {
      for (const [i, unit] of units.entries()) bytes.copy(unit, 0, i * UNIT, (i + 1) * UNIT);
      const written = await Promise.all(
        [2, 0, 1].map((i) => writeOnThread(temp.direct?.fd ?? -1, units[i] as Buffer, UNIT, i * UNIT)),
      );
      assert.deepEqual(written, [UNIT, UNIT, UNIT]);
      assert.ok((await readFile(temp.path)).equals(bytes));

      // The kernel refuses a direct write of a length that is not a multiple of the block: its code
      // comes back, so the download can fall back to the page cache.
      const refused = await writeOnThread(temp.direct?.fd ?? -1, units[0] as Buffer, 1000, 0).catch((e) => e);
      assert.ok(isDirectIORefusal(refused), `expected EINVAL, got ${String(refused)}`);
      const closed = await writeOnThread(1_000_000, units[0] as Buffer, UNIT, 0).catch((e) => e);
      assert.equal((closed as NodeJS.ErrnoException).code, 'EBADF');
      await assert.rejects(writeOnThread(temp.direct?.fd ?? -1, Buffer.alloc(UNIT), UNIT, 0), WriterError);
    } finally {
      for (const unit of units) giveAligned(unit);
      await temp.handle.close();
      await temp.direct?.close();
      await store.spool.discard(temp);
    }
  });

  it('fails writes and digests under way when their thread dies, and starts a new one after', async () => {
    const temp = await store.spool.tempFile({ direct: true });
    const unit = takeAligned() as Buffer;
    try {
      const writes = Array.from({ length: 8 }, (_, i) =>
        writeOnThread(temp.direct?.fd ?? -1, unit, UNIT, i * UNIT),
      );
      await stopWriting();
      const outcomes = await Promise.allSettled(writes);
      const failed = outcomes.filter((o) => o.status === 'rejected');
      assert.ok(failed.length > 0, 'writes queued when the thread ended fail');
      for (const f of failed) assert.ok((f as PromiseRejectedResult).reason instanceof WriterError);
      assert.equal(await writeOnThread(temp.direct?.fd ?? -1, unit, UNIT, 0), UNIT, 'a new thread writes');

      unit.fill(7);
      const lost = digesterFor('sha256:', true);
      await lost.update(unit, UNIT);
      await stopHashing();
      await assert.rejects(lost.update(unit, UNIT) as Promise<void>, DigesterError);
      await assert.rejects(lost.digest(), DigesterError);
      lost.dispose();
      const fresh = digesterFor('sha256:', true);
      await fresh.update(unit, 10);
      assert.equal(
        await fresh.digest(),
        `sha256:${createHash('sha256').update(unit.subarray(0, 10)).digest('hex')}`,
      );
    } finally {
      giveAligned(unit);
      await temp.handle.close();
      await temp.direct?.close();
      await store.spool.discard(temp);
    }
  });
});
