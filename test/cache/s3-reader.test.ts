// The S3 store's blob reader on the blob transport: fills each read from the transport's views, reopens
// at a new position, ends at the object's end, and turns a failed GET into the store's error. The
// bucket is played by node:http answering ranges of a buffer (the store's own tests, s3.test.ts, run it
// against SeaweedFS).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { WireObjectReader } from '../../src/cache/store/s3/reader.ts';
import { wireGet } from '../../src/cache/transport/wire.ts';

const object = randomBytes(3 * 1024 * 1024 + 777);

describe('S3 store: the blob reader on the blob transport', () => {
  let server: Server;
  let base = '';
  const ranges: string[] = [];

  before(async () => {
    server = createServer((req, res) => {
      if (req.url === '/broken') {
        res.writeHead(503).end('slow down');
        return;
      }
      const range = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
      ranges.push(req.headers.range ?? '');
      const start = Number(range?.[1] ?? 0);
      const end = Number(range?.[2] ?? object.length - 1);
      res.writeHead(range ? 206 : 200, { 'content-length': end - start + 1 });
      // In pieces, so reads span several of the transport's views.
      const body = object.subarray(start, end + 1);
      let at = 0;
      const next = (): void => {
        if (at >= body.length) {
          res.end();
          return;
        }
        const piece = body.subarray(at, at + 100_000);
        at += piece.length;
        if (res.write(piece)) setImmediate(next);
        else res.once('drain', next);
      };
      next();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  const reader = (path = '/object'): WireObjectReader =>
    new WireObjectReader(
      (position) =>
        wireGet({
          url: new URL(`${base}${path}`),
          headers: { range: `bytes=${position}-${object.length - 1}` },
          signal: new AbortController().signal,
          connectTimeoutMs: 5000,
          timeoutMs: 5000,
        }).then((res) => {
          if (res.statusCode !== 206) {
            res.cancel();
            throw new Error(`status ${res.statusCode}`);
          }
          return res;
        }),
      object.length,
      (err) => new Error(`store unavailable: ${(err as Error).message}`),
    );

  it('reads the whole object in full buffers, then 0 at the end', async () => {
    const r = reader();
    const buffer = Buffer.alloc(512 * 1024);
    const parts: Buffer[] = [];
    let position = 0;
    for (;;) {
      const n = await r.read(buffer, buffer.length, position);
      if (n === 0) break;
      // Every read but the last fills the buffer.
      if (position + n < object.length) assert.equal(n, buffer.length);
      parts.push(Buffer.from(buffer.subarray(0, n)));
      position += n;
    }
    await r.close();
    assert.ok(Buffer.concat(parts).equals(object));
  });

  it('a read at another position opens a new range there', async () => {
    const r = reader();
    const buffer = Buffer.alloc(1000);
    ranges.length = 0;
    assert.equal(await r.read(buffer, 1000, 0), 1000);
    assert.ok(buffer.equals(object.subarray(0, 1000)));
    const far = object.length - 500;
    assert.equal(await r.read(buffer, 1000, far), 500);
    assert.ok(buffer.subarray(0, 500).equals(object.subarray(far)));
    assert.deepEqual(ranges, [`bytes=0-${object.length - 1}`, `bytes=${far}-${object.length - 1}`]);
    await r.close();
  });

  it("a failed GET is the store's error", async () => {
    const r = reader('/broken');
    await assert.rejects(r.read(Buffer.alloc(10), 10, 0), /store unavailable: status 503/);
  });
});
