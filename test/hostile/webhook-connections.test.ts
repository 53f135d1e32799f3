// Slow and flooding clients (issue 21 §3) against a real `pullmap serve` over HTTPS: 2,100 connections
// (over the 2,048 cap) that never finish a TLS handshake or their headers. The health listener keeps
// answering /healthz and /readyz throughout, the server cuts every slow client at its 10 s header and
// handshake timeouts (not at Node's 30 s check interval or 120 s handshake default), and reviews are
// served again afterwards.
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { type Socket, connect as tcpConnect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { freePort, type TempDir, tempDir } from '../harness/process.ts';
import { type Pullmap, podReview, startPullmap } from '../harness/pullmap.ts';
import { makePki, type TestPki } from '../harness/tls.ts';

const HEADER_TIMEOUT_MS = 10_000;
const TLS_SLOW = 100;
const TCP_SLOW = 2_000;

function get(url: string): Promise<number> {
  return new Promise((resolve) => {
    const req = request(url, { agent: false, timeout: 5_000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('timeout', () => req.destroy(new Error('no answer in 5 s')));
    req.on('error', () => resolve(0));
    req.end();
  });
}

/** Resolves with how long after opening the server closed the socket. */
function closedAfter(socket: Socket, opened: number): Promise<number> {
  return new Promise((resolve) => {
    socket.on('error', () => {});
    socket.on('close', () => resolve(performance.now() - opened));
  });
}

describe('slow clients over the connection cap', () => {
  let dir: TempDir;
  let pki: TestPki;
  let pm: Pullmap;
  let healthUrl: string;

  before(async () => {
    dir = await tempDir('slow-clients');
    pki = await makePki(dir.path);
    const healthPort = await freePort();
    healthUrl = `http://127.0.0.1:${healthPort}`;
    pm = await startPullmap({
      tls: { certPath: pki.certPath, keyPath: pki.keyPath, caPem: pki.caPem },
      args: ['--health-listen', `127.0.0.1:${healthPort}`],
    });
  });
  after(async () => {
    await pm?.stop();
    await dir?.remove();
  });

  it('keeps health answering, cuts them at the timeout, then serves reviews', async () => {
    const closes: Array<Promise<number>> = [];
    const sockets: Socket[] = [];
    // TLS connections that send half a request and stop.
    for (let i = 0; i < TLS_SLOW; i++) {
      const opened = performance.now();
      const socket = tlsConnect({ host: '127.0.0.1', port: pm.port, ca: pki.caPem, servername: 'localhost' });
      closes.push(closedAfter(socket, opened));
      await new Promise<void>((resolve) => socket.once('secureConnect', resolve).once('close', resolve));
      socket.write('POST /mutate-pods HTTP/1.1\r\nhost: 127.0.0.1\r\n');
      sockets.push(socket);
    }
    // TCP connections that never start their TLS handshake; the last ones are over the cap. In batches,
    // well below the listen backlog: a connection the kernel drops from a full accept queue looks open
    // to a client that never sends, and the server cannot cut what it never saw.
    for (let i = 0; i < TCP_SLOW; i += 100) {
      const batch: Array<Promise<void>> = [];
      for (let j = i; j < Math.min(i + 100, TCP_SLOW); j++) {
        const opened = performance.now();
        const socket = tcpConnect({ host: '127.0.0.1', port: pm.port });
        closes.push(closedAfter(socket, opened));
        sockets.push(socket);
        batch.push(new Promise((resolve) => socket.once('connect', resolve).once('close', resolve)));
      }
      await Promise.all(batch);
      await new Promise((r) => setTimeout(r, 50));
    }

    let cut = false;
    const healthAnswers: number[] = [];
    const polling = (async () => {
      while (!cut) {
        healthAnswers.push(await get(`${healthUrl}/healthz`), await get(`${healthUrl}/readyz`));
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    // Bounded: a server that never cuts them fails here rather than hanging the suite.
    let closed = 0;
    for (const c of closes) c.then(() => closed++);
    const closedAt = await Promise.race([
      Promise.all(closes),
      new Promise<undefined>((r) => setTimeout(() => r(undefined), 3 * HEADER_TIMEOUT_MS)),
    ]);
    cut = true;
    await polling;
    for (const s of sockets) s.destroy();
    assert.ok(closedAt, `only ${closed} of ${closes.length} slow clients were cut in 30 s`);

    assert.ok(healthAnswers.length >= 10, `polled ${healthAnswers.length} times`);
    assert.deepEqual(
      healthAnswers.filter((s) => s !== 200),
      [],
      'the health listener answered every probe',
    );
    const slowest = Math.max(...closedAt);
    // Cut at the timeout plus at most one check interval (1 s), well before Node's 30 s interval.
    assert.ok(slowest < 2 * HEADER_TIMEOUT_MS, `the last slow client was cut after ${slowest.toFixed(0)} ms`);

    const { status, json } = await pm.review(podReview({ app: 'nginx:1.27' }, { uid: 'after' }));
    assert.equal(status, 200);
    assert.equal(json.response.uid, 'after');
    assert.equal((await pm.call('/healthz')).status, 200);
  });

  it('serves only the probes on the health listener', async () => {
    assert.equal(await get(`${healthUrl}/metrics`), 404);
    assert.equal(await get(`${healthUrl}/mutate-pods`), 404);
  });
});
