// The blob transport (src/cache/transport/wire.ts) against Node.js's own HTTP server (chunked bodies, interim
// answers, stalls, early closes) and, for a close-delimited body, which that server does not send to
// an HTTP/1.1 client, a raw socket.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { type AddressInfo, createServer as createNetServer, type Server as NetServer } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { type WireResponse, wireGet } from '../../src/cache/transport/wire.ts';
import { classifyNetworkError } from '../../src/registry/errors.ts';

const BODY = randomBytes(6 * 1024 * 1024 + 17);

function listen(server: Server | NetServer): Promise<number> {
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)),
  );
}

/** Rejects with an error that classifies as `code`; answers the error for further checks. */
async function failsAs(promise: Promise<unknown>, code: string): Promise<Error> {
  let caught: unknown;
  await assert.rejects(promise, (err: unknown) => {
    caught = err;
    return true;
  });
  assert.equal(classifyNetworkError(caught, 'x').code, code);
  return caught as Error;
}

async function collect(
  res: WireResponse,
  sink?: (chunk: Buffer) => Promise<void> | undefined,
): Promise<Buffer> {
  const parts: Buffer[] = [];
  await res.pipeTo((chunk) => {
    parts.push(Buffer.from(chunk));
    return sink?.(chunk);
  });
  return Buffer.concat(parts);
}

describe('wireGet', () => {
  let server: Server;
  let port: number;
  const seen: IncomingMessage[] = [];
  let connections = 0;
  const routes: Record<string, (req: IncomingMessage, res: ServerResponse) => void> = {
    '/length': (_req, res) => res.writeHead(200, { 'content-length': BODY.length }).end(BODY),
    '/chunked': (_req, res) => {
      // No length: Node.js frames the body as chunked, in pieces of odd sizes.
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      for (let at = 0; at < BODY.length; at += 100_003) res.write(BODY.subarray(at, at + 100_003));
      res.end();
    },
    '/continue': (_req, res) => {
      res.writeContinue();
      res.writeHead(200, { 'content-length': 5 }).end('after');
    },
    '/empty': (_req, res) => res.writeHead(204).end(),
    '/silent': () => {},
    '/stall': (_req, res) => {
      res.writeHead(200, { 'content-length': BODY.length });
      res.write(BODY.subarray(0, 1000));
    },
    '/cut': (_req, res) => {
      res.writeHead(200, { 'content-length': BODY.length });
      res.write(BODY.subarray(0, 1000), () => res.socket?.destroy());
    },
    '/not-found': (_req, res) => res.writeHead(404, { 'content-length': 2 }).end('{}'),
    '/bad-chunk': (req, res) => {
      // A chunk size that is not hex, past Node.js's own framing.
      res.writeHead(200, { 'transfer-encoding': 'chunked' });
      res.flushHeaders();
      req.socket.write('zz\r\nhello\r\n');
    },
  };

  before(async () => {
    server = createServer((req, res) => {
      seen.push(req);
      const route = routes[req.url ?? ''];
      if (route) route(req, res);
      else res.writeHead(500).end();
    });
    server.on('connection', () => connections++);
    port = await listen(server);
  });
  after(() => {
    server.closeAllConnections();
    server.close();
  });

  const get = (path: string, extra: Partial<Parameters<typeof wireGet>[0]> = {}) =>
    wireGet({
      url: new URL(`http://127.0.0.1:${port}${path}`),
      headers: { 'user-agent': 'wire-test' },
      signal: new AbortController().signal,
      connectTimeoutMs: 1000,
      timeoutMs: 2000,
      ...extra,
    });

  it('delivers a Content-Length body whole, sends the request as asked, and closes the connection', async () => {
    const before = seen.length;
    const res = await get('/length');
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['content-length'], String(BODY.length));
    assert.ok((await collect(res)).equals(BODY));
    const req = seen[before] as IncomingMessage;
    assert.equal(req.headers['user-agent'], 'wire-test');
    assert.equal(req.headers.connection, 'close');
    assert.equal(req.headers.host, `127.0.0.1:${port}`);
  });

  it('decodes a chunked body', async () => {
    assert.ok((await collect(await get('/chunked'))).equals(BODY));
  });

  it('keeps each chunk intact while a slow consumer holds it, pausing the connection meanwhile', async () => {
    const res = await get('/length');
    let at = 0;
    let waits = 0;
    const changed: number[] = [];
    const checks: Promise<void>[] = [];
    const body = await collect(res, (chunk) => {
      const from = at;
      at += chunk.length;
      if (waits++ % 3 !== 0) return undefined;
      const check = sleep(2).then(() => {
        // Still the bytes it was handed: the read buffer was not reused under it.
        if (!chunk.equals(BODY.subarray(from, from + chunk.length))) changed.push(from);
      });
      checks.push(check);
      return check;
    });
    await Promise.all(checks);
    assert.ok(body.equals(BODY));
    assert.deepEqual(changed, []);
    assert.ok(waits > 3);
  });

  it('skips an interim 1xx answer', async () => {
    const res = await get('/continue');
    assert.equal(res.statusCode, 200);
    assert.equal((await collect(res)).toString(), 'after');
  });

  it('answers a body-less status with an empty body', async () => {
    const res = await get('/empty');
    assert.equal(res.statusCode, 204);
    assert.equal((await collect(res)).length, 0);
  });

  it('gives an error answer its head and body like any other', async () => {
    const res = await get('/not-found');
    assert.equal(res.statusCode, 404);
    assert.equal((await collect(res)).toString(), '{}');
  });

  it('times out waiting for the head, and between body bytes', async () => {
    await failsAs(get('/silent', { timeoutMs: 200 }), 'REG_TIMEOUT');
    const res = await get('/stall', { timeoutMs: 200 });
    let received = 0;
    const reading = res.pipeTo((chunk) => {
      received += chunk.length;
      return undefined;
    });
    await failsAs(reading, 'REG_TIMEOUT');
    assert.equal(received, 1000);
  });

  it('does not time out while the consumer holds the connection paused', async () => {
    const res = await get('/length', { timeoutMs: 100 });
    let first = true;
    const body = await collect(res, () => {
      if (!first) return undefined;
      first = false;
      return sleep(300);
    });
    assert.ok(body.equals(BODY));
  });

  it('fails a malformed chunked body as an invalid answer', async () => {
    const res = await get('/bad-chunk');
    await failsAs(
      res.pipeTo(() => undefined),
      'REG_INVALID_RESPONSE',
    );
  });

  it('fails a body cut short as a connection failure', async () => {
    const res = await get('/cut');
    const err = await failsAs(
      res.pipeTo(() => undefined),
      'REG_CONNECTION_FAILED',
    );
    assert.match(err.message, /after 1000 body bytes/);
  });

  it('stops at once when the caller aborts, and when the consumer fails', async () => {
    const abort = new AbortController();
    const res = await get('/stall', { signal: abort.signal });
    const reading = res.pipeTo(() => undefined);
    setTimeout(() => abort.abort(new Error('deadline')), 50);
    await assert.rejects(reading, /deadline/);

    const failing = await get('/length');
    const disk = new Error('disk full');
    await assert.rejects(
      failing.pipeTo(() => Promise.reject(disk)),
      (err: unknown) => err === disk,
    );
  });

  it('closes the connection on cancel, and refuses a second read', async () => {
    const res = await get('/stall');
    res.cancel();
    await failsAs(
      res.pipeTo(() => undefined),
      'REG_CONNECTION_FAILED',
    );
    const twice = await get('/length');
    const first = collect(twice);
    await assert.rejects(
      twice.pipeTo(() => undefined),
      /already being read/,
    );
    assert.ok((await first).equals(BODY));
  });

  it('refuses a header value with a line break, or a name that is not a token, before connecting', async () => {
    const before = connections;
    await assert.rejects(
      get('/length', { headers: { authorization: 'Bearer x\r\nX-Injected: 1' } }),
      (err: unknown) => {
        assert.equal((err as { code?: string }).code, 'ERR_INVALID_CHAR');
        return true;
      },
    );
    await assert.rejects(get('/length', { headers: { 'bad name': 'x' } }), (err: unknown) => {
      assert.equal((err as { code?: string }).code, 'ERR_INVALID_HTTP_TOKEN');
      return true;
    });
    assert.equal(connections, before);
  });

  it('offers the body as a stream of copies', async () => {
    const res = await get('/chunked');
    const parts: Buffer[] = [];
    for await (const chunk of res.stream()) parts.push(chunk as Buffer);
    assert.ok(Buffer.concat(parts).equals(BODY));
  });
});

describe('wireGet with a close-delimited body', () => {
  let server: NetServer;
  let port: number;
  before(async () => {
    server = createNetServer((socket) => {
      socket.once('data', () => {
        socket.write('HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n');
        socket.end(BODY);
      });
    });
    port = await listen(server);
  });
  after(() => server.close());

  it('takes everything until the connection closes', async () => {
    const res = await wireGet({
      url: new URL(`http://127.0.0.1:${port}/`),
      headers: {},
      signal: new AbortController().signal,
      connectTimeoutMs: 1000,
      timeoutMs: 2000,
    });
    assert.ok((await collect(res, () => sleep(0))).equals(BODY));
  });
});
