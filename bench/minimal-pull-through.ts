// The least a Node.js pull-through can do per byte, as a yardstick for the cache's cold path (it is
// not product code and handles only what bench/cold-ceiling.ts sends it):
//   GET /<digest> -> one plain-HTTP GET of /v2/<repository>/blobs/<digest> upstream, on a raw socket
//   that reads into a small ring of reused buffers (no allocation per read, so no GC), each chunk
//   hashed inline, written to a file with a positional write (synchronous, or not at all with
//   --no-store) and written to the client. No stream layers, no read-back, no last-byte hold-back,
//   no error handling beyond giving up.
//
// Usage: node bench/minimal-pull-through.ts <port> <upstream port> <repository> <dir> [--no-store]
import { createHash } from 'node:crypto';
import { closeSync, openSync, writeSync } from 'node:fs';
import { createServer } from 'node:http';
import { connect } from 'node:net';
import { join } from 'node:path';

const [port, upstreamPort, repository, dir] = process.argv.slice(2);
const store = !process.argv.includes('--no-store');
const BUFFER = 256 * 1024;
const RING = 8;

createServer((req, res) => {
  const digest = (req.url ?? '/').slice(1);
  if (!/^sha256:[a-f0-9]{64}$/.test(digest)) {
    res.writeHead(200).end('ready');
    return;
  }
  const path = join(dir as string, `${digest.slice(7)}.part`);
  const fd = store ? openSync(path, 'w') : -1;
  const free: Buffer[] = Array.from({ length: RING }, () => Buffer.allocUnsafeSlow(BUFFER));
  // Each buffer is busy until the client's socket has taken the bytes read into it.
  let paused = false;
  let head: Buffer | undefined;
  let remaining = -1;
  let position = 0;
  const hash = createHash('sha256');
  const upstream = connect({
    port: Number(upstreamPort),
    host: '127.0.0.1',
    onread: {
      buffer: () => free.pop() as Buffer,
      callback(n: number, buffer: Buffer): boolean {
        let body = buffer.subarray(0, n);
        let owned: Buffer | undefined = buffer;
        if (remaining < 0) {
          // Status line and headers: copied aside until complete.
          head = head ? Buffer.concat([head, body]) : Buffer.from(body);
          free.push(buffer);
          const end = head.indexOf('\r\n\r\n');
          if (end < 0) return true;
          const length = /\r\ncontent-length: *(\d+)/i.exec(head.subarray(0, end).toString('latin1'));
          if (!length) throw new Error('upstream sent no Content-Length');
          remaining = Number(length[1]);
          res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': remaining });
          body = head.subarray(end + 4);
          owned = undefined;
        }
        if (body.length > 0) {
          hash.update(body);
          if (store) writeSync(fd, body, 0, body.length, position);
          position += body.length;
          remaining -= body.length;
          res.write(body, () => {
            if (owned === undefined) return;
            free.push(owned);
            if (paused && free.length >= 2) {
              paused = false;
              upstream.resume();
            }
          });
        }
        if (remaining === 0) {
          // Checked, so the bytes are hashed for a reason; a mismatch cuts the response short.
          if (`sha256:${hash.digest('hex')}` === digest) res.end();
          else res.destroy();
          upstream.destroy();
          if (store) closeSync(fd);
          return false;
        }
        if (free.length < 2) paused = true;
        return !paused;
      },
    },
  });
  upstream.write(`GET /v2/${repository}/blobs/${digest} HTTP/1.1\r\nHost: 127.0.0.1:${upstreamPort}\r\n\r\n`);
}).listen(Number(port), '127.0.0.1');
