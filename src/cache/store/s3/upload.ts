// Uploading a verified spool file to the bucket, streamed from the file: one PUT, or a multipart upload
// whose parts are read from their range of the file as they are sent. @aws-sdk/lib-storage's Upload,
// used before, copies a stream body into part-sized buffers first (16 MiB x (queue + 1) per upload,
// two uploads at once: most of an S3 replica's peak memory, docs/decisions.md); the file is already
// on disk, so each part can be re-read from it instead, and a retry re-reads it too.
import { createReadStream } from 'node:fs';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  PutObjectCommand,
  type S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';

/** Bytes per read from the file while a part streams out. */
const READ_CHUNK = 256 * 1024;
/** Attempts per request: a body stream cannot be replayed by the SDK, so a retry opens the file again. */
const ATTEMPTS = 3;

export interface FileUpload {
  readonly bucket: string;
  readonly key: string;
  readonly path: string;
  readonly size: number;
  readonly contentType: string;
  /** Files up to this size go in one PUT; larger ones in parts of this size. */
  readonly partSize: number;
  /** Parts sent at once. */
  readonly partsInFlight: number;
}

/**
 * Sends the bytes [start, end) of the file as a fresh stream (one per attempt). The SDK may fail before it
 * reads the stream (the service is down), and the caller then removes the file: the stream's late error
 * (ENOENT on open) must not become an uncaught exception, so it is listened to and the stream destroyed.
 */
async function withRange<T>(
  path: string,
  start: number,
  end: number,
  send: (body: ReturnType<typeof createReadStream>) => Promise<T>,
): Promise<T> {
  const body = createReadStream(path, { start, end: end - 1, highWaterMark: READ_CHUNK });
  body.on('error', () => {});
  try {
    return await send(body);
  } finally {
    body.destroy();
  }
}

async function attempt<T>(run: () => Promise<T>): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await run();
    } catch (err) {
      // The service's own refusals (4xx) do not improve by asking again.
      const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
      if (i >= ATTEMPTS || (status !== undefined && status >= 400 && status < 500)) throw err;
    }
  }
}

/** Uploads the file under `key`; a failed multipart upload is aborted, so no parts are left behind. */
export async function uploadFile(client: S3Client, upload: FileUpload): Promise<void> {
  const { bucket, key, path, size, partSize } = upload;
  if (size <= partSize) {
    await attempt(() =>
      withRange(path, 0, size, (body) =>
        client.send(
          new PutObjectCommand({
            Bucket: bucket,
            Key: key,
            Body: body,
            ContentLength: size,
            ContentType: upload.contentType,
          }),
        ),
      ),
    );
    return;
  }
  const created = await client.send(
    new CreateMultipartUploadCommand({ Bucket: bucket, Key: key, ContentType: upload.contentType }),
  );
  const uploadId = created.UploadId;
  if (uploadId === undefined) throw new Error('the service started a multipart upload without an UploadId');
  try {
    const count = Math.ceil(size / partSize);
    const etags: string[] = [];
    let next = 0;
    let failed = false;
    const sender = async (): Promise<void> => {
      while (next < count && !failed) {
        const index = next++;
        const start = index * partSize;
        const end = Math.min(size, start + partSize);
        const res = await attempt(() =>
          withRange(path, start, end, (body) =>
            client.send(
              new UploadPartCommand({
                Bucket: bucket,
                Key: key,
                UploadId: uploadId,
                PartNumber: index + 1,
                Body: body,
                ContentLength: end - start,
              }),
            ),
          ),
        );
        if (res.ETag === undefined) throw new Error(`the service answered part ${index + 1} without an ETag`);
        etags[index] = res.ETag;
      }
    };
    // The first failure stops the other senders before their next part.
    await Promise.all(
      Array.from({ length: Math.min(upload.partsInFlight, count) }, () =>
        sender().catch((err: unknown) => {
          failed = true;
          throw err;
        }),
      ),
    );
    await attempt(() =>
      client.send(
        new CompleteMultipartUploadCommand({
          Bucket: bucket,
          Key: key,
          UploadId: uploadId,
          MultipartUpload: { Parts: etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) },
        }),
      ),
    );
  } catch (err) {
    await client
      .send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId }))
      .catch(() => {});
    throw err;
  }
}
