// The S3 store's upload of a verified spool file (store/s3/upload.ts, put.ts) against SeaweedFS: one
// PUT for a small blob, a multipart upload in parts read back from the file for a large one, and a
// failed upload aborted so that no parts are left behind.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { checkCacheConfig, type S3StorageConfig } from '../../src/cache/config.ts';
import { StoreWriteError } from '../../src/cache/errors.ts';
import { S3Store } from '../../src/cache/store/s3/store.ts';
import { startS3, type TestS3 } from '../harness/s3.ts';

const digestOf = (bytes: Buffer): string => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
const MiB = 2 ** 20;

describe('S3 store: uploads from the spool', () => {
  let s3: TestS3;
  let bucket = '';
  let store: S3Store;

  before(async () => {
    s3 = await startS3();
    bucket = await s3.bucket();
    const checked = checkCacheConfig(
      { upstreams: [{ host: 'upstream.test' }], storage: { s3: s3.storage(bucket, { prefix: 'up/' }) } },
      'test',
    );
    assert.ok(checked.ok);
    store = await S3Store.open({
      s3: checked.config.storage.s3 as S3StorageConfig,
      spoolDir: undefined,
      maxSize: undefined,
      directIO: false,
    });
  });
  after(async () => {
    await store?.close();
    await s3?.close();
  });

  /** Spools `bytes` (claiming `size` of them) and commits the file as the blob `digest`. */
  const commit = async (bytes: Buffer, digest: string, size = bytes.length): Promise<void> => {
    const temp = await store.spool.tempFile();
    await temp.handle.write(bytes, 0, bytes.length, 0);
    try {
      await store.commitBlob(temp, digest, size);
    } finally {
      await temp.handle.close();
    }
  };

  const stored = async (digest: string): Promise<Buffer> => {
    const hex = digest.slice('sha256:'.length);
    const res = await s3.client.send(new GetObjectCommand({ Bucket: bucket, Key: `up/blobs/sha256/${hex}` }));
    return Buffer.from(
      await (res.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray(),
    );
  };

  it('stores a small blob with one PUT and a large one in parts, byte for byte', async () => {
    const small = randomBytes(300_000 + 17);
    await commit(small, digestOf(small));
    assert.ok((await stored(digestOf(small))).equals(small), 'the small blob is exact');
    // Over the 16 MiB part size, not a multiple of it or of the 256 KiB reads.
    const large = randomBytes(2 * 16 * MiB + 3 * 256 * 1024 + 99);
    await commit(large, digestOf(large));
    assert.ok((await stored(digestOf(large))).equals(large), 'the large blob is exact');
    assert.equal(await s3.pendingUploads(bucket, 'up/'), 0);
    assert.equal(await store.useBlob(digestOf(large)).then((b) => b?.size), large.length);
  });

  it('aborts a multipart upload whose file is shorter than the blob, storing nothing', async () => {
    const bytes = randomBytes(20 * MiB);
    const digest = digestOf(bytes);
    await assert.rejects(commit(bytes, digest, 40 * MiB), StoreWriteError);
    assert.equal(await s3.pendingUploads(bucket, 'up/'), 0, 'no parts are left behind');
    assert.equal(await store.useBlob(digest), undefined, 'nothing is stored under the key');
  });
});
