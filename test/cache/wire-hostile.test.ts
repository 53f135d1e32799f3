// The blob transport (wire.ts + http1.ts) against a hostile server: a raw socket on loopback that
// answers with request-smuggling shapes, bad chunk sizes, oversized or split heads, bare LFs and early
// closes. Every answer must end in a typed error (classified by code, never by message) or in exactly
// the body a correct parser reads, and never hang. The transport's timeouts are set far beyond each
// test's, so a case that waits instead of refusing fails as a hung test; refusing is told apart from
// timing out by the error's code, never by the clock.
import assert from 'node:assert/strict';
import { type AddressInfo, createServer, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { wireGet } from '../../src/cache/transport/wire.ts';
import { classifyNetworkError } from '../../src/registry/errors.ts';

/** What the server does after reading a request: write pieces (pausing between), then end somehow. */
type Step = string | Buffer | { pause: number };
interface Script {
  readonly steps: readonly Step[];
  /** close: FIN after the last step; keep: leave the connection open; reset: RST. */
  readonly end: 'close' | 'keep' | 'reset';
}

const scripts = new Map<string, Script>();
let server: Server;
let port: number;
const sockets = new Set<Socket>();

before(async () => {
  server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    let head = '';
    socket.on('data', async function onData(data) {
      head += data.toString('latin1');
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      socket.off('data', onData);
      const path = /^GET (\S+) /.exec(head)?.[1] ?? '';
      const script = scripts.get(path);
      if (!script) {
        socket.end('HTTP/1.1 500 No Script\r\nContent-Length: 0\r\n\r\n');
        return;
      }
      for (const step of script.steps) {
        if (socket.destroyed) return;
        if (typeof step === 'object' && !Buffer.isBuffer(step)) await sleep(step.pause);
        else await new Promise<void>((resolve) => socket.write(step, () => resolve()));
      }
      if (script.end === 'close') socket.end();
      else if (script.end === 'reset') socket.resetAndDestroy();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
});
after(() => {
  for (const s of sockets) s.destroy();
  server.close();
});

let n = 0;
/** Registers a script under a fresh path; returns the path. */
function serve(steps: readonly Step[], end: Script['end'] = 'close'): string {
  const path = `/case-${++n}`;
  scripts.set(path, { steps, end });
  return path;
}

/** The transport's timeouts, beyond each test's (OPTS): only the stall cases set shorter ones. */
const TIMEOUT_MS = 60_000;

/** The whole exchange: head, then the body read to its end. Resolves with status and body. */
async function exchange(path: string, timeoutMs = TIMEOUT_MS): Promise<{ status: number; body: Buffer }> {
  const res = await wireGet({
    url: new URL(`http://127.0.0.1:${port}${path}`),
    headers: {},
    signal: new AbortController().signal,
    connectTimeoutMs: 1000,
    timeoutMs,
  });
  const parts: Buffer[] = [];
  await res.pipeTo((chunk) => {
    parts.push(Buffer.from(chunk));
    return undefined;
  });
  return { status: res.statusCode, body: Buffer.concat(parts) };
}

/** Fails with the registry error `code` (a refusal or a close: REG_TIMEOUT would mean it waited). */
async function failsAs(path: string, code: string): Promise<Error> {
  let caught: unknown;
  await assert.rejects(exchange(path), (err: unknown) => {
    caught = err;
    return true;
  });
  assert.equal(classifyNetworkError(caught, 'x').code, code, `error was: ${(caught as Error).message}`);
  return caught as Error;
}

const OPTS = { timeout: 10_000 };
const ok = 'HTTP/1.1 200 OK\r\n';

describe('request smuggling shapes', () => {
  it('refuses both Content-Length and Transfer-Encoding, in either order', OPTS, async () => {
    await failsAs(
      serve([`${ok}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n`]),
      'REG_INVALID_RESPONSE',
    );
    await failsAs(
      serve([`${ok}Transfer-Encoding: chunked\r\nContent-Length: 100\r\n\r\n5\r\nhello\r\n0\r\n\r\n`]),
      'REG_INVALID_RESPONSE',
    );
  });

  it('refuses conflicting Content-Lengths; accepts the same length repeated', OPTS, async () => {
    await failsAs(
      serve([`${ok}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!`]),
      'REG_INVALID_RESPONSE',
    );
    await failsAs(serve([`${ok}Content-Length: 5, 6\r\n\r\nhello!`]), 'REG_INVALID_RESPONSE');
    const same = await exchange(serve([`${ok}Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello`]));
    assert.equal(same.body.toString(), 'hello');
  });

  for (const value of ['-5', '+5', '0x5', '5 5', '5.0', '', '9999999999999999'])
    it(`refuses Content-Length ${JSON.stringify(value)}`, OPTS, async () => {
      await failsAs(serve([`${ok}Content-Length: ${value}\r\n\r\nhello`]), 'REG_INVALID_RESPONSE');
    });

  for (const value of ['gzip, chunked', 'chunked, chunked', 'identity', 'chunked;q=1', 'xchunked'])
    it(`refuses Transfer-Encoding ${JSON.stringify(value)}`, OPTS, async () => {
      await failsAs(
        serve([`${ok}Transfer-Encoding: ${value}\r\n\r\n5\r\nhello\r\n0\r\n\r\n`]),
        'REG_INVALID_RESPONSE',
      );
    });

  it('refuses Transfer-Encoding in an HTTP/1.0 answer', OPTS, async () => {
    await failsAs(
      serve(['HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n']),
      'REG_INVALID_RESPONSE',
    );
  });

  it('refuses a header split over lines (obs-fold) and a space before the colon', OPTS, async () => {
    await failsAs(
      serve([`${ok}X-A: 1\r\n Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello`]),
      'REG_INVALID_RESPONSE',
    );
    await failsAs(
      serve([`${ok}Transfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\nhello`]),
      'REG_INVALID_RESPONSE',
    );
  });

  it('reads no second answer from the same connection: bytes past the body are ignored', OPTS, async () => {
    const r = await exchange(
      serve([`${ok}Content-Length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil`], 'keep'),
    );
    assert.equal(r.body.toString(), 'hello');
  });
});

describe('bad chunk sizes', () => {
  const chunked = (body: string) => serve([`${ok}Transfer-Encoding: chunked\r\n\r\n${body}`]);
  for (const [why, body] of [
    ['not hex', 'zz\r\nhello\r\n0\r\n\r\n'],
    ['negative', '-5\r\nhello\r\n0\r\n\r\n'],
    ['a 0x prefix', '0x5\r\nhello\r\n0\r\n\r\n'],
    ['empty', '\r\nhello\r\n0\r\n\r\n'],
    ['a leading space', ' 5\r\nhello\r\n0\r\n\r\n'],
    ['16 hex digits (over 2^53: would overflow a double)', '1000000000000000\r\nhello\r\n0\r\n\r\n'],
    ['20 hex digits (over 2^64)', 'ffffffffffffffffffff\r\nhello\r\n0\r\n\r\n'],
    ['data longer than the size', '3\r\nhello\r\n0\r\n\r\n'],
    ['no CRLF after the data', '5\r\nhelloX0\r\n\r\n'],
    ['a size line ended by LF alone', '5\nhello\r\n0\r\n\r\n'],
    ['a size line too long', `5;${'x'.repeat(8192)}\r\nhello\r\n0\r\n\r\n`],
  ] as const)
    it(`refuses a chunk size that is ${why}`, OPTS, async () => {
      await failsAs(chunked(body), 'REG_INVALID_RESPONSE');
    });

  it('takes chunk extensions, upper-case hex, leading zeros and trailers', OPTS, async () => {
    const r = await exchange(
      chunked('5;name=value\r\nhello\r\n00A\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\n'),
    );
    assert.equal(r.body.toString(), 'hello0123456789');
  });

  it('a huge but valid size followed by a close is a body cut short, not a hang', OPTS, async () => {
    const err = await failsAs(chunked('ffffffffffff\r\nhello'), 'REG_CONNECTION_FAILED');
    assert.match(err.message, /after 5 body bytes/);
  });
});

describe('oversized and split heads', () => {
  it('refuses a head over 64 KiB, whether or not it ends in the same read', OPTS, async () => {
    const big = `X-Big: ${'a'.repeat(70 * 1024)}\r\n`;
    await failsAs(serve([`${ok}${big}Content-Length: 0\r\n\r\n`]), 'REG_INVALID_RESPONSE');
    await failsAs(serve([ok, big], 'keep'), 'REG_INVALID_RESPONSE');
    const many = Array.from({ length: 3000 }, (_, i) => `X-${i}: ${'v'.repeat(20)}\r\n`).join('');
    await failsAs(serve([ok, many], 'keep'), 'REG_INVALID_RESPONSE');
  });

  it('reads a head and a chunked body split at every awkward place across reads', OPTS, async () => {
    const p = { pause: 15 };
    const r = await exchange(
      serve([
        'HT',
        p,
        'TP/1.1 2',
        p,
        '00 OK\r',
        p,
        '\nTransfer-Enc',
        p,
        'oding: chun',
        p,
        'ked\r\n\r',
        p,
        '\n5',
        p,
        '\r',
        p,
        '\nhel',
        p,
        'lo\r',
        p,
        '\n0\r\n',
        p,
        '\r',
        p,
        '\n',
      ]),
    );
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), 'hello');
  });

  it('reads a head split one byte per read', OPTS, async () => {
    const text = `${ok}Content-Length: 5\r\nX-Long: ${'z'.repeat(200)}\r\n\r\nhello`;
    const steps = [...text].flatMap((c) => [c, { pause: 0 }]);
    assert.equal((await exchange(serve(steps))).body.toString(), 'hello');
  });
});

describe('bare LF and control characters', () => {
  it('refuses a head whose lines end in LF alone, at once (not at the timeout)', OPTS, async () => {
    await failsAs(serve(['HTTP/1.1 200 OK\nContent-Length: 5\n\nhello'], 'keep'), 'REG_INVALID_RESPONSE');
    await failsAs(serve([`${ok}Content-Length: 5\n\r\n\r\nhello`], 'keep'), 'REG_INVALID_RESPONSE');
  });

  it('refuses a header value holding a bare LF, a bare CR or NUL', OPTS, async () => {
    await failsAs(
      serve([`${ok}X-A: 1\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello`]),
      'REG_INVALID_RESPONSE',
    );
    await failsAs(
      serve([`${ok}X-A: 1\rContent-Length: 9\r\nContent-Length: 5\r\n\r\nhello`]),
      'REG_INVALID_RESPONSE',
    );
    await failsAs(serve([`${ok}X-A: a\0b\r\nContent-Length: 5\r\n\r\nhello`]), 'REG_INVALID_RESPONSE');
  });

  it('refuses a status line that is not HTTP/1.x with a three-digit status', OPTS, async () => {
    for (const line of [
      'HTTP/2 200',
      'HTTP/1.1 2000 OK',
      'ICY 200 OK',
      'HTTP/1.1  200 OK',
      'http/1.1 200 OK',
    ])
      await failsAs(serve([`${line}\r\nContent-Length: 0\r\n\r\n`]), 'REG_INVALID_RESPONSE');
  });
});

describe('early close and stalls', () => {
  it('a close before any answer, inside the head, and a reset', OPTS, async () => {
    await failsAs(serve([]), 'REG_CONNECTION_FAILED');
    await failsAs(serve(['HTTP/1.1 200 OK\r\nContent-Len']), 'REG_CONNECTION_FAILED');
    await failsAs(serve([`${ok}Content-Length: 100\r\n\r\nabc`], 'reset'), 'REG_CONNECTION_FAILED');
  });

  it('a Content-Length body cut short, and a chunked body without its last chunk', OPTS, async () => {
    const short = await failsAs(
      serve([`${ok}Content-Length: 100\r\n\r\n`, 'x'.repeat(10)]),
      'REG_CONNECTION_FAILED',
    );
    assert.match(short.message, /after 10 body bytes/);
    await failsAs(serve([`${ok}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n`]), 'REG_CONNECTION_FAILED');
    await failsAs(serve([`${ok}Transfer-Encoding: chunked\r\n\r\n5\r\nhel`]), 'REG_CONNECTION_FAILED');
  });

  it('a body without length ends at the close (RFC 9112 §6.3)', OPTS, async () => {
    assert.equal(
      (await exchange(serve([ok, '\r\n', 'until ', { pause: 10 }, 'close']))).body.toString(),
      'until close',
    );
  });

  it(
    'an answer that never comes, and a body that stops, time out (typed) instead of hanging',
    OPTS,
    async () => {
      await assert.rejects(
        exchange(serve([], 'keep'), 300),
        (err) => classifyNetworkError(err, 'x').code === 'REG_TIMEOUT',
      );
      await assert.rejects(
        exchange(serve([`${ok}Content-Length: 100\r\n\r\nabc`], 'keep'), 300),
        (err) => classifyNetworkError(err, 'x').code === 'REG_TIMEOUT',
      );
      await assert.rejects(
        exchange(serve([ok, 'X-Slow: 1\r\n'], 'keep'), 300),
        (err) => classifyNetworkError(err, 'x').code === 'REG_TIMEOUT',
      );
    },
  );

  it('an endless stream of interim 1xx answers hits the timeout, not memory', OPTS, async () => {
    const interim = Array.from({ length: 200 }, () => ['HTTP/1.1 100 Continue\r\n\r\n', { pause: 5 }]).flat();
    await assert.rejects(
      exchange(serve(interim, 'keep'), 300),
      (err) => classifyNetworkError(err, 'x').code === 'REG_TIMEOUT',
    );
  });
});

// The other HTTP client of the registry code: the shapes above that are plainly broken, undici refuses
// too (the blob transport must not be the more permissive of the two).
describe('undici on the same shapes', () => {
  const undiciFails = async (path: string) => {
    await assert.rejects(async () => {
      const res = await request(`http://127.0.0.1:${port}${path}`, {
        headersTimeout: 2000,
        bodyTimeout: 2000,
      });
      await res.body.arrayBuffer();
    });
  };
  it('refuses both lengths, conflicting lengths, and a bad chunk size', OPTS, async () => {
    await undiciFails(
      serve([`${ok}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n`]),
    );
    await undiciFails(serve([`${ok}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!`]));
    await undiciFails(serve([`${ok}Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n`]));
  });
});
