// Hashing downloads off the main thread (src/cache/digester.ts): the worker's digests must equal
// node:crypto's on the same bytes, for digests interleaved as concurrent downloads interleave them.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { giveAligned, takeAligned, UNIT } from '../../src/cache/aligned.ts';
import { digesterFor } from '../../src/cache/digester.ts';
import { DigesterError } from '../../src/cache/errors.ts';

describe('digester', () => {
  it('hashes shared units on the worker exactly as node:crypto does, for interleaved digests', async () => {
    const units = [takeAligned(), takeAligned()] as Buffer[];
    assert.ok(units.every((u) => u !== undefined && u.buffer instanceof SharedArrayBuffer));
    const blobs = [randomBytes(3 * UNIT + 123), randomBytes(2 * UNIT)];
    const digesters = [digesterFor('sha256:', true), digesterFor('sha512:', true)];
    for (let at = 0; at < 3 * UNIT + 123; at += UNIT) {
      const pending: Promise<void>[] = [];
      for (const [i, blob] of blobs.entries()) {
        if (at >= blob.length) continue;
        const unit = units[i] as Buffer;
        const length = blob.copy(unit, 0, at, at + UNIT);
        pending.push((digesters[i]?.update(unit, length) as Promise<void>) ?? Promise.resolve());
      }
      // A unit is reused only once its hashing is over, as the download's ring does.
      await Promise.all(pending);
    }
    assert.equal(
      await digesters[0]?.digest(),
      `sha256:${createHash('sha256')
        .update(blobs[0] as Buffer)
        .digest('hex')}`,
    );
    assert.equal(
      await digesters[1]?.digest(),
      `sha512:${createHash('sha512')
        .update(blobs[1] as Buffer)
        .digest('hex')}`,
    );
    for (const unit of units) giveAligned(unit);
  });

  it('hashes ordinary buffers inline, and refuses them on the worker', async () => {
    const bytes = randomBytes(1000);
    const inline = digesterFor('sha256:', false);
    assert.equal(inline.update(bytes, 600), undefined);
    assert.equal(
      await inline.digest(),
      `sha256:${createHash('sha256').update(bytes.subarray(0, 600)).digest('hex')}`,
    );
    // Every algorithm a reference may name is hashed as itself (sha384 once fell back to sha256).
    for (const algorithm of ['sha384', 'sha512']) {
      const digester = digesterFor(`${algorithm}:`, false);
      digester.update(bytes, 1000);
      assert.equal(
        await digester.digest(),
        `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}`,
      );
    }
    const worker = digesterFor('sha256:', true);
    await assert.rejects(worker.update(bytes, 10) as Promise<void>, DigesterError);
    worker.dispose();
  });
});
