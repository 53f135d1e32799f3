// HTTP/1.1 response framing (src/cache/transport/http1.ts): heads, how bodies end, and chunked bodies split
// at every possible place across reads.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ProtocolError } from '../../src/cache/errors.ts';
import { framer, framingOf, parseHead } from '../../src/cache/transport/http1.ts';

/** Feeds `wire` to a framer in pieces cut at `cuts`; the body bytes and whether it ended. */
function frame(
  kind: Parameters<typeof framer>[0],
  wire: Buffer,
  cuts: number[],
): { body: Buffer; done: boolean } {
  const f = framer(kind);
  const parts: Buffer[] = [];
  let done = false;
  let at = 0;
  for (const cut of [...cuts, wire.length]) {
    const taken = f.take(wire.subarray(at, cut));
    for (const d of taken.data) parts.push(Buffer.from(d));
    at = cut;
    if (taken.done) {
      done = true;
      break;
    }
  }
  const body = Buffer.concat(parts);
  assert.equal(f.received, body.length);
  return { body, done };
}

describe('parseHead', () => {
  it('reads the status and headers, lower-casing names and gathering repeats', () => {
    const head = parseHead(
      'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm="a"\r\nwww-authenticate: Basic realm="b"\r\nContent-Length:  12 ',
    );
    assert.equal(head.statusCode, 401);
    assert.deepEqual(head.headers['www-authenticate'], ['Bearer realm="a"', 'Basic realm="b"']);
    assert.equal(head.headers['content-length'], '12');
    assert.equal(parseHead('HTTP/1.0 200').statusCode, 200);
  });

  for (const [why, text] of [
    ['not HTTP', 'SSH-2.0-OpenSSH_9.6'],
    ['HTTP/2 status line', 'HTTP/2 200'],
    ['three-digit status missing', 'HTTP/1.1 20 OK'],
    ['space before the colon', 'HTTP/1.1 200 OK\r\nContent-Length : 5'],
    ['obsolete line folding', 'HTTP/1.1 200 OK\r\nX-A: 1\r\n  continued'],
    ['no colon', 'HTTP/1.1 200 OK\r\nnonsense'],
  ] as const) {
    it(`refuses a head with ${why}`, () => {
      assert.throws(() => parseHead(text), ProtocolError);
    });
  }
});

describe('framingOf', () => {
  const head = (status: number, headers: Record<string, string | string[]>) => ({
    statusCode: status,
    headers,
  });
  it('follows RFC 9112 §6.3 for responses to GET', () => {
    assert.deepEqual(framingOf(head(204, { 'content-length': '5' })), { kind: 'none' });
    assert.deepEqual(framingOf(head(304, {})), { kind: 'none' });
    assert.deepEqual(framingOf(head(200, { 'transfer-encoding': 'Chunked' })), { kind: 'chunked' });
    assert.deepEqual(framingOf(head(200, { 'content-length': ['7', '7'] })), { kind: 'length', length: 7 });
    assert.deepEqual(framingOf(head(200, { 'content-length': '7, 7' })), { kind: 'length', length: 7 });
    assert.deepEqual(framingOf(head(200, {})), { kind: 'close' });
  });

  const refused: [string, Record<string, string | string[]>][] = [
    ['conflicting lengths', { 'content-length': ['7', '8'] }],
    ['a negative length', { 'content-length': '-1' }],
    ['a length that is not a number', { 'content-length': '0x10' }],
    ['a compressed transfer coding', { 'transfer-encoding': 'gzip, chunked' }],
    ['an unknown transfer coding', { 'transfer-encoding': 'identity' }],
    ['both a transfer coding and a length', { 'transfer-encoding': 'chunked', 'content-length': '5' }],
  ];
  for (const [why, headers] of refused) {
    it(`refuses ${why}`, () => {
      assert.throws(() => framingOf(head(200, headers)), ProtocolError);
    });
  }
});

describe('body framers', () => {
  it('takes exactly Content-Length bytes, ignoring anything after them', () => {
    const wire = Buffer.from('0123456789EXTRA');
    for (let cut = 0; cut <= wire.length; cut++) {
      const { body, done } = frame({ kind: 'length', length: 10 }, wire, [cut]);
      assert.equal(body.toString(), '0123456789');
      assert.ok(done);
    }
    assert.deepEqual(frame({ kind: 'length', length: 10 }, Buffer.from('01234'), []), {
      body: Buffer.from('01234'),
      done: false,
    });
  });

  it('decodes a chunked body cut at any one or two places', () => {
    const wire = Buffer.from(
      '5;name=value\r\nhello\r\n1A \r\n, this is chunked framing.\r\n0\r\nX-Trailer: yes\r\n\r\nAFTER',
    );
    const expected = 'hello, this is chunked framing.';
    for (let a = 0; a <= wire.length; a++) {
      for (let b = a; b <= wire.length; b += 3) {
        const { body, done } = frame({ kind: 'chunked' }, wire, [a, b]);
        assert.equal(body.toString(), expected, `cut at ${a} and ${b}`);
        assert.ok(done, `cut at ${a} and ${b}`);
      }
    }
  });

  it('is not done before the last chunk and its empty line', () => {
    const f = framer({ kind: 'chunked' });
    assert.equal(f.take(Buffer.from('3\r\nabc\r\n0\r\n')).done, false);
    assert.equal(f.closeEnds(), false);
    assert.equal(f.take(Buffer.from('\r\n')).done, true);
    assert.equal(f.closeEnds(), true);
  });

  for (const [why, wire] of [
    ['a size that is not hex', 'zz\r\n'],
    ['data longer than its size', '3\r\nabcd\r\n0\r\n\r\n'],
    ['lines ending in a bare LF', '3\nabc\n0\n\n'],
    ['a size line without end', `${'1'.repeat(5000)}`],
    ['a size beyond 12 hex digits', `${'f'.repeat(13)}\r\n`],
  ] as const) {
    it(`refuses a chunked body with ${why}`, () => {
      assert.throws(() => framer({ kind: 'chunked' }).take(Buffer.from(wire)), ProtocolError);
    });
  }

  it('ends a close-delimited body only when the connection closes', () => {
    const f = framer({ kind: 'close' });
    assert.equal(f.take(Buffer.from('abc')).done, false);
    assert.equal(f.closeEnds(), true);
    assert.equal(f.received, 3);
  });
});
