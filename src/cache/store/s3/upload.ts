// Uploading a verified spool file to the bucket, streamed from the file: one PUT, or a multipart upload
// whose parts are read from their range of the file as they are sent. @aws-sdk/lib-storage's Upload,
// used before, copies a stream body into part-sized buffers first (16 MiB x (queue + 1) per upload,
// two uploads at once: most of an S3 replica's peak memory, docs/decisions.md); the file is already
// on disk, so each part can be re-read from it instead, and a retry re-reads it too. The bodies go
// through `RangeSender` (put.ts: two reused buffers per PUT), the rest of the protocol through the SDK.
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  PutObjectCommand,
  type S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';

/** Attempts per PUT of a body: each one reads the file again. */
const ATTEMPTS = 3;

export interface FileUpload {
  readonly bucket: string;
  readonly key: string;
  readonly size: number;
  readonly contentType: string;
  /** Files up to this size go in one PUT; larger ones in parts of this size. */
  readonly partSize: number;
  /** Parts sent at once. */
  readonly partsInFlight: number;
}

/**
 * Sends bytes [start, end) of the file as the body of `command` (a PutObject or an UploadPart, without
 * a Body); answers the ETag the service gave it.
 */
export type RangeSender = (
  command: PutObjectCommand | UploadPartCommand,
  start: number,
  end: number,
) => Promise<string | undefined>;

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
export async function uploadFile(client: S3Client, upload: FileUpload, send: RangeSender): Promise<void> {
  const { bucket, key, size, partSize } = upload;
  if (size <= partSize) {
    await attempt(() =>
      send(new PutObjectCommand({ Bucket: bucket, Key: key, ContentType: upload.contentType }), 0, size),
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
        const etag = await attempt(() =>
          send(
            new UploadPartCommand({ Bucket: bucket, Key: key, UploadId: uploadId, PartNumber: index + 1 }),
            start,
            end,
          ),
        );
        if (etag === undefined) throw new Error(`the service answered part ${index + 1} without an ETag`);
        etags[index] = etag;
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
