// Hostile AdmissionReview bodies (issue 21 §2) against a real `pullmap serve` under the chart's memory
// limit (a 256 MiB memory cgroup where the machine allows one): bodies made of tiny JSON values or deep
// nesting, over and under the size limit, four at once, are refused before JSON.parse builds them and
// answered as the failure policy says; /healthz answers throughout and the process lives.
import assert from 'node:assert/strict';
import { Agent, request } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { type MemoryCgroup, memoryCgroup } from '../harness/cgroup.ts';
import { type Pullmap, podReview, startPullmap } from '../harness/pullmap.ts';

const MiB = 1024 * 1024;
const CHART_MEMORY_LIMIT = 256 * MiB;

interface Answer {
  status: number;
  json: Record<string, any> | undefined;
  text: string;
}

// Keep-alive, as the apiserver's client: a refusal is answered before the rest of the body is read.
const agent = new Agent({ keepAlive: true });
after(() => agent.destroy());

/** POSTs raw bytes to /mutate-pods; `hold` sends only the first bytes and keeps the request open. */
function post(pm: Pullmap, body: Buffer, hold?: { send: number; until: Promise<void> }): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${pm.url}/mutate-pods`,
      {
        method: 'POST',
        agent,
        headers: { 'content-type': 'application/json', 'content-length': String(body.length) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: Record<string, any> | undefined;
          try {
            json = JSON.parse(text);
          } catch {}
          resolve({ status: res.statusCode ?? 0, json, text });
        });
      },
    );
    req.on('error', reject);
    if (!hold) return void req.end(body);
    req.write(body.subarray(0, hold.send));
    hold.until.then(() => req.destroy());
  });
}

/** A pod review whose pod carries `junk` (raw JSON) as an annotation value; `uid` first, as the apiserver writes it. */
function reviewWith(uid: string, junk: Buffer): Buffer {
  const review = podReview({ app: 'nginx:1.27' }, { uid });
  const text = JSON.stringify(review).replace('"metadata":{', '"metadata":{"annotations":{"junk":JUNK},');
  const [head, tail] = text.split('JUNK') as [string, string];
  return Buffer.concat([Buffer.from(head), junk, Buffer.from(tail)]);
}

/** `[[],[],…]` of about `bytes` bytes: the most values per byte JSON allows. */
function flat(bytes: number): Buffer {
  const n = Math.floor((bytes - 2) / 3);
  return Buffer.from(`[${'[],'.repeat(n - 1)}[]]`);
}

/** `[[[…]]]` of about `bytes` bytes. */
function nested(bytes: number): Buffer {
  const half = Math.floor(bytes / 2);
  return Buffer.concat([Buffer.alloc(half, '['), Buffer.alloc(half, ']')]);
}

/** A realistic pod's containers: env, ports, resources, probes, mounts (about 11 bytes per JSON value). */
function bigPod(uid: string, containers: number): Buffer {
  const review = podReview({}, { uid }) as any;
  review.request.object.spec.containers = Array.from({ length: containers }, (_, i) => ({
    name: `c${i}`,
    image: 'nginx:1.27',
    command: ['/bin/app'],
    args: ['--port=8080', '--verbose'],
    env: Array.from({ length: 10 }, (_, j) => ({ name: `ENV_${j}`, value: `value-${j}` })),
    ports: [{ containerPort: 8080, protocol: 'TCP', name: 'http' }],
    resources: { limits: { cpu: '1', memory: '1Gi' }, requests: { cpu: '100m', memory: '128Mi' } },
    volumeMounts: [{ name: 'data', mountPath: '/data' }],
    terminationMessagePath: '/dev/termination-log',
    terminationMessagePolicy: 'File',
    imagePullPolicy: 'IfNotPresent',
    livenessProbe: { httpGet: { path: '/healthz', port: 8080, scheme: 'HTTP' }, periodSeconds: 10 },
  }));
  return Buffer.from(JSON.stringify(review));
}

/** Polls /healthz every 50 ms until stopped; every answer's status (or the error). Stopping twice is fine. */
function pollHealth(pm: Pullmap): { stop(): Promise<Array<number | string>> } {
  const seen: Array<number | string> = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      seen.push(
        await pm.call('/healthz').then(
          (r) => r.status,
          (e: Error) => e.message,
        ),
      );
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return seen;
    },
  };
}

// A webhook that stopped answering (caps regressed, the event loop stuck in a parse) fails the suite at
// the timeout instead of leaving the run waiting on an open request.
describe('webhook bodies under the chart memory limit', { timeout: 300_000 }, () => {
  let cgroup: MemoryCgroup | undefined;
  let unavailable = '';
  let pm: Pullmap;

  before(async () => {
    const made = await memoryCgroup('pullmap-hostile', CHART_MEMORY_LIMIT);
    if ('unavailable' in made) unavailable = made.unavailable;
    else cgroup = made;
    pm = await startPullmap(cgroup ? { wrap: cgroup.wrap } : {});
  });
  after(async () => {
    await pm.stop();
    await cgroup?.remove();
  });

  const shapes: Array<[string, Buffer, string]> = [
    ['8 MiB of [] values (over the size limit)', flat(8 * MiB), 'too_large'],
    ['8 MiB of nesting (over the size limit)', nested(8 * MiB), 'too_large'],
    ['3 MiB of [] values (under it, over the value cap)', flat(3 * MiB - 2048), 'too_complex'],
    ['3 MiB of nesting (under it, over the depth cap)', nested(3 * MiB - 2048), 'too_complex'],
  ];
  for (const [what, junk, reason] of shapes) {
    it(`refuses 4 reviews of ${what} at once, admitting the pods unchanged with a warning`, async () => {
      const failuresBefore = (await pm.metric(`pullmap_admission_failures_total{reason="${reason}"}`)) ?? 0;
      const uids = ['a', 'b', 'c', 'd'].map((x) => `${reason}-${x}-${Math.random()}`);
      const health = pollHealth(pm);
      // Stopped whatever the answers: a poller left running keeps the test process alive for ever.
      const answers = await Promise.all(uids.map((uid) => post(pm, reviewWith(uid, junk)))).finally(() =>
        health.stop(),
      );
      const statuses = await health.stop();
      for (const [i, answer] of answers.entries()) {
        assert.equal(answer.status, 200, answer.text);
        const response = answer.json?.response;
        assert.equal(response.uid, uids[i]);
        assert.equal(response.allowed, true);
        assert.equal(response.patch, undefined);
        assert.match(
          response.warnings?.[0] ?? '',
          /^pullmap: the review .*; the pod was admitted unchanged$/,
        );
      }
      assert.ok(statuses.length > 0 && statuses.every((s) => s === 200), `/healthz answered ${statuses}`);
      assert.equal(
        await pm.metric(`pullmap_admission_failures_total{reason="${reason}"}`),
        failuresBefore + 4,
      );
      assert.equal(pm.daemon.exited(), false);
    });
  }

  it('decides real pods up to the size limit as usual', async () => {
    // 250 containers: about 600 KB; the scan limits are sized from such pods.
    for (const body of [bigPod('big', 250), reviewWith('legal', flat(512 * 1024))]) {
      const answer = await post(pm, body);
      assert.equal(answer.status, 200, answer.text);
      assert.equal(answer.json?.response.allowed, true);
      for (const w of answer.json?.response.warnings ?? []) assert.doesNotMatch(w, /admitted unchanged/);
    }
  });

  it('answers a body that is not a review with an HTTP error', async () => {
    const answer = await post(pm, flat(8 * MiB));
    assert.equal(answer.status, 413);
    assert.match(answer.json?.error, /over the limit of 3145728/);
  });

  it('stayed within the memory limit (not killed by the kernel)', async (t) => {
    if (!cgroup) return t.skip(unavailable);
    assert.equal(await cgroup.oomKills(), 0);
    t.diagnostic(`highest memory use: ${((await cgroup.maxUsage()) / MiB).toFixed(0)} MiB`);
    assert.equal((await pm.call('/healthz')).status, 200);
  });
});

describe('review bytes in flight', { timeout: 120_000 }, () => {
  let pm: Pullmap;
  before(async () => {
    // The budget of one largest review, and failurePolicy Fail: a refusal is a denial.
    pm = await startPullmap({ args: ['--max-inflight-bytes', String(3 * MiB), '--failure-policy', 'Fail'] });
  });
  after(() => pm.stop());

  it('refuses a review at once while others hold the budget, and serves again once they are gone', async () => {
    let letGo = () => {};
    const until = new Promise<void>((resolve) => (letGo = resolve));
    // A large annotation (one JSON value): all but its last 8 bytes held, 24 bytes of the budget left.
    const envelope = reviewWith('slow', Buffer.from('""')).length;
    const large = Buffer.from(JSON.stringify('x'.repeat(3 * MiB - 16 - envelope)));
    const body = reviewWith('slow', large);
    const slow = post(pm, body, { send: body.length - 8, until }).catch(() => undefined);
    for (let i = 0; (await pm.metric('pullmap_review_bytes_inflight')) !== body.length - 8; i++) {
      assert.ok(i < 500, 'the slow body is never held in full');
      await new Promise((r) => setTimeout(r, 20));
    }
    const refused = await post(
      pm,
      Buffer.from(JSON.stringify(podReview({ app: 'nginx:1.27' }, { uid: 'u2' }))),
    );
    assert.equal(refused.status, 200, refused.text);
    assert.equal(refused.json?.response.uid, 'u2');
    assert.equal(refused.json?.response.allowed, false);
    assert.equal(refused.json?.response.status.code, 503);
    assert.match(refused.json?.response.status.message, /bytes in all are being read already/);
    assert.equal(await pm.metric('pullmap_admission_failures_total{reason="busy"}'), 1);
    letGo();
    await slow;
    const served = await pm.review(podReview({ app: 'nginx:1.27' }, { uid: 'u3' }));
    assert.equal(served.json.response.allowed, true);
  });
});
