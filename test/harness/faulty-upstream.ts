// A loopback registry stub for the faults a real registry cannot be made to produce: a blob whose
// bytes do not hash to its digest, a body cut short, a body that stops mid-way and never ends, or one
// that stops mid-way until the test resumes it.
// It serves /v2/, manifests by tag and digest, and blobs, from what the test hands it.
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { BuiltImage } from './images.ts';

/** `pause` stops the first GET of the blob half-way until `resume()`; later ones are served whole. */
export type BlobFault = 'corrupt' | 'truncate' | 'stall' | 'pause';

export interface FaultyUpstream {
  readonly host: string;
  /** Requests for blobs by digest so far. */
  blobRequests(digest: string): number;
  /** Resolves once a stalled (or paused) blob has sent its first half. */
  stalled(): Promise<void>;
  /** Sends the rest of the paused bodies. */
  resume(): void;
  close(): Promise<void>;
}

export async function startFaultyUpstream(
  repository: string,
  tag: string,
  image: BuiltImage,
  faults: Readonly<Record<string, BlobFault>>,
): Promise<FaultyUpstream> {
  const blobs = new Map([image.layer, image.config].map((b) => [b.digest, b]));
  const counts = new Map<string, number>();
  const sockets = new Set<Socket>();
  let onStall: () => void = () => {};
  const paused: Array<() => void> = [];
  const pausedOnce = new Set<string>();
  const stalledOnce = new Promise<void>((resolve) => {
    onStall = resolve;
  });
  const json = (res: ServerResponse, status: number, body: unknown): void => {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };
  /** The first GET of a paused blob stops half-way until resume(); anything else gets it whole. */
  const pauseOnce = (method: string | undefined, res: ServerResponse, digest: string, bytes: Buffer) => {
    if (method !== 'GET' || pausedOnce.has(digest)) return void res.end(bytes);
    pausedOnce.add(digest);
    const half = Math.floor(bytes.length / 2);
    res.write(bytes.subarray(0, half), () => {
      paused.push(() => res.end(bytes.subarray(half)));
      onStall();
    });
  };
  const server: Server = createServer((req, res) => {
    const path = req.url ?? '/';
    if (path === '/v2/') return json(res, 200, {});
    const manifest = `/v2/${repository}/manifests/`;
    if (path === `${manifest}${tag}` || path === `${manifest}${image.manifest.digest}`) {
      res.writeHead(200, {
        'content-type': image.manifest.mediaType,
        'content-length': image.manifest.size,
        'docker-content-digest': image.manifest.digest,
      });
      res.end(req.method === 'HEAD' ? undefined : image.manifest.bytes);
      return;
    }
    const blobPrefix = `/v2/${repository}/blobs/`;
    const blob = path.startsWith(blobPrefix) ? blobs.get(path.slice(blobPrefix.length)) : undefined;
    if (!blob) return json(res, 404, { errors: [{ code: 'NOT_FOUND', message: path }] });
    counts.set(blob.digest, (counts.get(blob.digest) ?? 0) + 1);
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': blob.size });
    const half = blob.bytes.subarray(0, Math.floor(blob.size / 2));
    switch (faults[blob.digest]) {
      case 'corrupt': {
        const bytes = Buffer.from(blob.bytes);
        bytes[bytes.length - 1] = (bytes[bytes.length - 1] ?? 0) ^ 0xff;
        res.end(bytes);
        return;
      }
      case 'truncate':
        res.write(half, () => res.destroy());
        return;
      case 'stall':
        res.write(half, () => onStall());
        return;
      case 'pause':
        pauseOnce(req.method, res, blob.digest, blob.bytes);
        return;
      default:
        res.end(blob.bytes);
    }
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    host: `127.0.0.1:${port}`,
    blobRequests: (digest) => counts.get(digest) ?? 0,
    stalled: () => stalledOnce,
    resume: () => {
      for (const send of paused.splice(0)) send();
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
