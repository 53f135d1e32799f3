// Direct writes of download units, made by a thread of their own (thread.ts) back to back: through
// libuv's pool each write is a hand-off and back while both cores are busy, and ext4 extends a file one
// direct write at a time anyway, so a gap between writes idles the disk (measured: docs/decisions.md,
// "Threads").
//
// The thread writes units in the order sent, straight from shared memory (aligned.ts): a unit must stay
// unchanged until its write settles.
import { WriterError } from './errors.ts';
import { HelperThread } from './thread.ts';

const WRITE_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { writeSync } = require('node:fs');
parentPort.on('message', (m) => {
  try {
    const written = writeSync(m.fd, new Uint8Array(m.memory, m.offset, m.length), 0, m.length, m.position);
    parentPort.postMessage({ seq: m.seq, written });
  } catch (err) {
    parentPort.postMessage({ seq: m.seq, code: typeof err.code === 'string' ? err.code : undefined, message: String(err.message) });
  }
});
`;

/** The one writing thread every download shares. */
const writing = new HelperThread(
  WRITE_SOURCE,
  (reason, cause) => new WriterError(`the writing thread failed: ${reason}`, { cause }),
);

/** Whether the writing thread runs (starting it if need be); false: write through libuv's pool instead. */
export function writerAvailable(): boolean {
  try {
    writing.start();
    return true;
  } catch {
    return false;
  }
}

/**
 * Writes `unit[0, length)` (a unit of shared memory) at `position` of file descriptor `fd`, started
 * after every write sent before it; answers the bytes written. A failed write rejects with the system
 * error's code (EINVAL where the filesystem refuses direct I/O), a dead thread with WriterError.
 */
export async function writeOnThread(
  fd: number,
  unit: Buffer,
  length: number,
  position: number,
): Promise<number> {
  if (!(unit.buffer instanceof SharedArrayBuffer))
    throw new WriterError('a unit outside shared memory cannot be written off-thread');
  const reply = await writing.ask({
    op: 'write',
    fd,
    memory: unit.buffer,
    offset: unit.byteOffset,
    length,
    position,
  });
  if (typeof reply.written === 'number') return reply.written;
  throw Object.assign(new Error(String(reply.message)), { code: reply.code });
}

/** Ends the writing thread; writes under way fail with WriterError, later ones start a new thread. */
export function stopWriting(): Promise<void> {
  return writing.terminate();
}
