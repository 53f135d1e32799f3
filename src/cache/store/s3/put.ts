// One PUT of a byte range of a local file to a presigned URL (an object, or a part of a multipart
// upload), read into two reused buffers: each is read again only once the socket has taken its bytes.
// Through the SDK, a file stream allocated a fresh 256 KiB buffer per read and the garbage piled up to
// 20-40 MiB of an S3 replica's peak between collections (docs/decisions.md, "Cache memory on S3").

import { open } from 'node:fs/promises';
import type { Agent, ClientRequest, IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { http } from '../../../net/node-http.ts';

/** Bytes per read from the file and write to the socket. */
const CHUNK = 256 * 1024;
/** Bytes of an error answer kept for the message (S3 answers a short XML document). */
const MAX_ERROR_BODY = 4096;

export interface RangePut {
  readonly url: URL;
  /** Headers the URL was signed with (Content-Type), besides Content-Length. */
  readonly headers: Record<string, string>;
  readonly agent: Agent;
  readonly path: string;
  readonly start: number;
  readonly end: number;
  /** Idle time allowed on the connection (no bytes taken, or no answer) before the PUT fails. */
  readonly timeoutMs: number;
}

/** An answer other than 200, shaped as the SDK's errors are (`$metadata.httpStatusCode`). */
function unexpected(status: number, body: string): Error {
  const code = /<Code>([^<]*)<\/Code>/.exec(body)?.[1];
  return Object.assign(new Error(`PUT answered HTTP ${status}${code ? ` (${code})` : ''}`), {
    name: code ?? 'UnexpectedStatus',
    $metadata: { httpStatusCode: status },
  });
}

/** Sends bytes [start, end) of the file; answers the ETag of what the service stored. */
export async function putFileRange(put: RangePut): Promise<string | undefined> {
  const file = await open(put.path, 'r');
  let req: ClientRequest | undefined;
  try {
    const send = put.url.protocol === 'https:' ? httpsRequest : http.request;
    const sent = send(put.url, {
      method: 'PUT',
      agent: put.agent,
      headers: { ...put.headers, 'content-length': String(put.end - put.start) },
    });
    req = sent;
    // Settles with the answer, or with the request's failure; an answer may come before the body is
    // sent (a refusal), which ends the writing.
    const answered = new Promise<IncomingMessage>((resolve, reject) => {
      sent.once('response', resolve);
      sent.once('error', reject);
    });
    answered.catch(() => {});
    sent.setTimeout(put.timeoutMs, () =>
      sent.destroy(new Error(`PUT to the bucket idle for ${put.timeoutMs} ms`)),
    );
    const buffers = [Buffer.allocUnsafeSlow(CHUNK), Buffer.allocUnsafeSlow(CHUNK)];
    let writing: Promise<void> = Promise.resolve();
    let early: IncomingMessage | undefined;
    void answered.then(
      (res) => {
        early = res;
      },
      () => {},
    );
    for (let at = put.start, i = 0; at < put.end && early === undefined; i++) {
      const buffer = buffers[i % 2] as Buffer;
      const { bytesRead } = await file.read(buffer, 0, Math.min(CHUNK, put.end - at), at);
      if (bytesRead === 0) throw new Error(`${put.path} ended at byte ${at} of ${put.end}`);
      at += bytesRead;
      // The other buffer's write must be over before it is read into again, at the next turn.
      await Promise.race([writing, answered]);
      const chunk = buffer.subarray(0, bytesRead);
      writing = new Promise<void>((resolve, reject) =>
        sent.write(chunk, (err) => (err ? reject(err) : resolve())),
      );
      writing.catch(() => {});
    }
    if (early === undefined) {
      await Promise.race([writing, answered]);
      sent.end();
    }
    const res = await answered;
    if (res.statusCode === 200) {
      res.resume();
      const etag = res.headers.etag;
      return typeof etag === 'string' ? etag : undefined;
    }
    let body = '';
    for await (const piece of res) if (body.length < MAX_ERROR_BODY) body += String(piece);
    throw unexpected(res.statusCode ?? 0, body);
  } catch (err) {
    req?.destroy();
    throw err;
  } finally {
    await file.close();
  }
}
