// `pullmap serve` as a real process over HTTPS: reviews, hostile input, the internal deadline against a
// slow real registry, certificate rotation, config reload and graceful shutdown.
import assert from 'node:assert/strict';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect } from 'node:tls';
import { type TempDir, tempDir } from '../harness/process.ts';
import { example, type Pullmap, patchOf, podReview, startPullmap } from '../harness/pullmap.ts';
import { startRegistry, type TestRegistry } from '../harness/registry.ts';
import { type LoopbackStub, startDelayingProxy } from '../harness/registry-stubs.ts';
import { makePki, type TestPki } from '../harness/tls.ts';

let dir: TempDir;
let pki: TestPki;

before(async () => {
  dir = await tempDir('serve');
  pki = await makePki(dir.path);
});
after(async () => dir?.remove());

/** Sends only the headers of a POST declaring `length` bytes and returns the server's answer. */
function rawPost(port: number, ca: string, length: number, head = ''): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const socket = connect({ host: '127.0.0.1', port, ca, servername: 'localhost' }, () => {
      socket.write(
        `POST /mutate-pods HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: ${length}\r\n\r\n${head}`,
      );
    });
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      text += chunk;
      if (/\r\n\r\n[\s\S]*\}/.test(text)) {
        socket.destroy();
        resolve(text);
      }
    });
    socket.on('error', reject);
    socket.setTimeout(10_000, () => socket.destroy(new Error(`no answer; got ${JSON.stringify(text)}`)));
  });
}

const tls = () => ({ certPath: pki.certPath, keyPath: pki.keyPath, caPem: pki.caPem });

describe('reviews on the embedded default maps, over HTTPS', () => {
  let pm: Pullmap;
  before(async () => {
    pm = await startPullmap({ tls: tls() });
  });
  after(async () => pm?.stop());

  it('answers the example review with a JSON Patch and the original-images annotation', async () => {
    const body = JSON.parse(await readFile(example('admission-review.json'), 'utf8'));
    const { status, json } = await pm.review(body);
    assert.equal(status, 200);
    assert.equal(json.apiVersion, 'admission.k8s.io/v1');
    assert.equal(json.kind, 'AdmissionReview');
    assert.equal(json.response.uid, body.request.uid);
    assert.equal(json.response.allowed, true);
    assert.equal(json.response.patchType, 'JSONPatch');
    const patch = patchOf(json.response);
    const images = Object.fromEntries(
      patch.filter((p) => p.path.endsWith('/image')).map((p) => [p.path, p.value]),
    );
    assert.deepEqual(images, {
      '/spec/initContainers/0/image': 'project-a.azurecr.io/ghcr-mirror/acme/migrate:2.1',
      '/spec/containers/0/image': 'project-a.azurecr.io/docker-mirror/library/nginx:1.27',
      '/spec/containers/2/image': 'registry.local/bootcamp:v1',
    });
    const annotations = patch.find((p) => p.path === '/metadata/annotations')?.value as Record<
      string,
      string
    >;
    assert.deepEqual(JSON.parse(annotations['pullmap.dev/original-images']!), {
      migrate: 'ghcr.io/acme/migrate:2.1',
      app: 'nginx:1.27',
      bootcamp: 'gcr.io/google-samples/kubernetes-bootcamp:v1',
    });
    assert.equal(await pm.metric('pullmap_admissions_total{result="mutated"}'), 1);
    assert.equal(await pm.metric('pullmap_image_rewrites_total'), 3);
  });

  it('leaves opted-out pods, excluded namespaces and latest tags alone', async () => {
    const optOut = await pm.review(
      podReview({ a: 'nginx:1.27' }, { labels: { 'pullmap.dev/ignore': 'true' } }),
    );
    assert.equal(optOut.json.response.patch, undefined);
    const system = await pm.review(podReview({ a: 'nginx:1.27' }, { namespace: 'kube-system' }));
    assert.equal(system.json.response.patch, undefined);
    const latest = await pm.review(podReview({ a: 'nginx:latest', b: 'nginx' }));
    assert.equal(latest.json.response.patch, undefined);
    assert.equal(latest.json.response.allowed, true);
  });

  it('does not map twice when the patched pod comes back (reinvocation)', async () => {
    const first = await pm.review(podReview({ a: 'nginx:1.27' }));
    const patch = patchOf(first.json.response);
    const again = podReview(
      { a: 'project-a.azurecr.io/docker-mirror/library/nginx:1.27' },
      {
        annotations: patch.find((p) => p.path === '/metadata/annotations')?.value as Record<string, string>,
      },
    );
    const second = await pm.review(again);
    assert.equal(second.json.response.allowed, true);
    assert.equal(second.json.response.patch, undefined);
  });

  it('maps ephemeral containers through the subresource', async () => {
    const review = podReview({ a: 'project-a.azurecr.io/docker-mirror/library/nginx:1.27' }) as any;
    review.request.subResource = 'ephemeralcontainers';
    review.request.operation = 'UPDATE';
    review.request.object.spec.ephemeralContainers = [{ name: 'debug', image: 'busybox:1.36' }];
    const { json } = await pm.review(review);
    const patch = patchOf(json.response);
    assert.deepEqual(
      patch.filter((p) => p.path.endsWith('/image')),
      [
        {
          op: 'replace',
          path: '/spec/ephemeralContainers/0/image',
          value: 'project-a.azurecr.io/docker-mirror/library/busybox:1.36',
        },
      ],
    );
  });

  it('refuses hostile and malformed requests with an error naming the problem, and keeps serving', async () => {
    const post = (body: string | Buffer, type = 'application/json') =>
      pm.call('/mutate-pods', { method: 'POST', headers: { 'content-type': type }, body });
    const cases: Array<[string, () => Promise<{ status: number; body: string }>, number, RegExp]> = [
      ['wrong content type', () => post('{}', 'text/plain'), 415, /content-type must be application\/json/],
      ['invalid JSON', () => post('{"apiVersion":'), 400, /not valid JSON/],
      ['not an object', () => post('[1,2,3]'), 400, /JSON object/],
      [
        'wrong kind',
        () => post('{"apiVersion":"admission.k8s.io/v1","kind":"Pod"}'),
        400,
        /kind must be "AdmissionReview"/,
      ],
      [
        'v1beta1',
        () => post('{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{}}'),
        400,
        /admissionReviewVersions/,
      ],
      [
        'no request',
        () => post('{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}'),
        400,
        /request is missing/,
      ],
      [
        'no uid',
        () =>
          post(
            '{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"kind":{"kind":"Pod"}}}',
          ),
        400,
        /request\.uid/,
      ],
      ['deep nesting', () => post(`${'['.repeat(200_000)}${']'.repeat(200_000)}`), 413, /deeper than 100/],
      ['GET on the review path', () => pm.call('/mutate-pods'), 405, /POST/],
      ['unknown path', () => pm.call('/nope'), 404, /no such path/],
      [
        'POST to an unknown path',
        () => pm.call('/nope', { method: 'POST', body: '{}' }),
        404,
        /no such path/,
      ],
    ];
    for (const [name, pending, status, pattern] of cases) {
      const res = await pending().catch((err: Error) => ({
        status: -1,
        body: JSON.stringify({ error: err.message }),
      }));
      assert.equal(res.status, status, `${name}: ${res.body}`);
      const error = JSON.parse(res.body) as { error: string; status: number };
      assert.equal(error.status, status);
      assert.match(error.error, pattern, name);
    }
    // A body declared over the limit is answered as soon as its uid has arrived, before the rest is sent:
    // as the failure policy says (here Ignore), so the apiserver shows the warning.
    const head = '{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"big-1",';
    const huge = await rawPost(pm.port, pki.caPem, 9 * 1024 * 1024, head);
    assert.match(huge, /^HTTP\/1\.1 200 /);
    assert.match(huge, /"uid":"big-1","allowed":true/);
    assert.match(
      huge,
      /the review is 9437184 bytes, over the limit of 3145728; the pod was admitted unchanged/,
    );
    // Without a uid in its first 64 KiB, an HTTP error.
    const noUid = await rawPost(pm.port, pki.caPem, 9 * 1024 * 1024, ' '.repeat(65 * 1024));
    assert.match(noUid, /^HTTP\/1\.1 413 /);
    // A review of something that is not a Pod is allowed unchanged, with a warning about the rules.
    const review = podReview({ a: 'nginx:1.27' }) as any;
    review.request.kind = { group: 'apps', version: 'v1', kind: 'Deployment' };
    review.request.resource = { group: 'apps', version: 'v1', resource: 'deployments' };
    const { json } = await pm.review(review);
    assert.equal(json.response.allowed, true);
    assert.equal(json.response.patch, undefined);
    assert.match(json.response.warnings[0], /only changes Pods/);
    // Still healthy and still deciding.
    assert.equal((await pm.call('/healthz')).status, 200);
    assert.equal(patchOf((await pm.review(podReview({ a: 'nginx:1.27' }))).json.response).length, 2);
  });

  it('answers pods like ones it has seen from its plan memo, with the same patch', async () => {
    const before = (await pm.metric('pullmap_plan_memo_lookups_total{result="hit"}')) ?? 0;
    const patches = [];
    for (let i = 0; i < 4; i++) {
      const { json } = await pm.review(
        podReview({ web: 'nginx:1.27', side: 'quay.io/acme/tool:2' }, { labels: { app: 'memo' } }),
      );
      patches.push(patchOf(json.response));
    }
    for (const p of patches.slice(1)) assert.deepEqual(p, patches[0]);
    assert.ok(patches[0]!.length > 0);
    const hits = (await pm.metric('pullmap_plan_memo_lookups_total{result="hit"}')) ?? 0;
    assert.ok(hits - before >= 2, `${hits - before} hits`);
  });

  it('exposes Prometheus metrics for admissions, latency and maps', async () => {
    const res = await pm.call('/metrics');
    assert.equal(res.status, 200);
    assert.match(String(res.headers['content-type']), /text\/plain; version=0\.0\.4/);
    for (const name of [
      'pullmap_admissions_total',
      'pullmap_admission_duration_seconds_bucket',
      'pullmap_maps_version',
    ])
      assert.match(res.body, new RegExp(`^${name}`, 'm'), name);
    // Standard process metrics, as stock dashboards query them.
    for (const name of [
      'process_resident_memory_bytes',
      'process_cpu_seconds_total',
      'process_start_time_seconds',
      'process_open_fds',
      'nodejs_eventloop_lag_seconds',
      'nodejs_eventloop_lag_p99_seconds',
    ])
      assert.match(res.body, new RegExp(`^${name} [0-9.e+-]+$`, 'm'), name);
    assert.match(res.body, /^pullmap_build_info\{version="0\.\d+\.\d+[^"]*",nodejs="24\.[^"]+"\} 1$/m);
    // A start time in the past few hours, as seconds since the epoch (not milliseconds, not uptime).
    const start = (await pm.metric('process_start_time_seconds')) ?? 0;
    assert.ok(start > Date.now() / 1000 - 3600 && start <= Date.now() / 1000, String(start));
    assert.equal(await pm.metric('pullmap_maps{verdict="Accepted"}'), 1);
  });
});

describe('the internal deadline against a slow registry', () => {
  let registry: TestRegistry;
  let slow: LoopbackStub;
  let pm: Pullmap;
  before(async () => {
    registry = await startRegistry();
    slow = await startDelayingProxy(registry.url, 4000);
    const config = join(dir.path, 'slow.yaml');
    await writeFile(
      config,
      [
        'apiVersion: pullmap.dev/v1alpha1',
        'kind: ClusterImageMap',
        'metadata: { name: airgap }',
        'spec:',
        '  mappings:',
        `    - { from: docker.io/, to: "${slow.host}/mirror/", when: IfExists }`,
      ].join('\n'),
    );
    pm = await startPullmap({
      tls: tls(),
      args: ['--config', config, '--deadline', '800ms', '--plain-http', slow.host],
    });
  });
  after(async () => {
    await pm?.stop();
    await slow?.close();
    await registry?.stop();
  });

  it('answers before the deadline with the image kept and a warning saying why', async () => {
    const { status, json } = await pm.review(podReview({ app: 'nginx:1.27' }));
    assert.equal(status, 200);
    assert.equal(json.response.allowed, true);
    assert.equal(json.response.patch, undefined, 'the image is kept');
    assert.match(
      json.response.warnings.join('\n'),
      /container app: could not ask .*\(Timeout\); kept nginx:1\.27/,
    );
    // The registry delays 4 s: the deadline's own counter says it acted, not the clock.
    assert.equal(await pm.metric(`pullmap_existence_deadline_exceeded_total{registry="${slow.host}"}`), 1);
    // Said at the default level, naming the image, the registry and the outcome.
    const warned = pm.logs().filter((l) => l.msg === 'registry probe failed; kept the original image');
    assert.equal(warned.length, 1, JSON.stringify(pm.logs()));
    assert.equal(warned[0]!.level, 'warn');
    assert.equal(warned[0]!.image, 'nginx:1.27');
    assert.equal(warned[0]!.registry, slow.host);
    assert.equal(warned[0]!.outcome, 'Timeout');
  });

  it('finishes an in-flight review after SIGTERM, then exits cleanly', async () => {
    const pending = pm.review(podReview({ app: 'nginx:1.25' }));
    await new Promise((r) => setTimeout(r, 100));
    const stopping = pm.daemon.stop(10_000);
    const { status, json } = await pending;
    assert.equal(status, 200);
    assert.equal(json.response.allowed, true);
    await stopping;
    const logs = pm.logs().map((l) => l.msg);
    assert.ok(logs.indexOf('shutting down') >= 0 && logs.indexOf('stopped') > logs.indexOf('shutting down'));
  });
});

describe('rotation and reload without restart', () => {
  it('serves a rotated certificate to new connections', async () => {
    const certDir = await tempDir('rotate');
    try {
      const first = await makePki(join(certDir.path));
      const second = await makePki(await tempDir('rotate2').then((d) => d.path));
      const pm = await startPullmap({
        tls: { certPath: first.certPath, keyPath: first.keyPath, caPem: first.caPem },
        args: ['--reload-interval', '200ms'],
      });
      try {
        const before = await pm.call('/healthz');
        // Swap both files the way a Secret volume does: new content, atomically renamed into place.
        await writeFile(`${first.keyPath}.new`, second.keyPem);
        await writeFile(`${first.certPath}.new`, second.certPem);
        await rename(`${first.keyPath}.new`, first.keyPath);
        await rename(`${first.certPath}.new`, first.certPath);
        let after: { fingerprint?: string } | undefined;
        for (let i = 0; i < 100; i++) {
          after = await pm.call('/healthz', { ca: second.caPem }).catch(() => undefined);
          if (after) break;
          await new Promise((r) => setTimeout(r, 100));
        }
        assert.ok(after, 'the new certificate was never served');
        assert.notEqual(after.fingerprint, before.fingerprint);
        assert.ok(pm.logs().some((l) => l.msg === 'serving certificate reloaded'));
      } finally {
        await pm.stop();
      }
    } finally {
      await certDir.remove();
    }
  });

  it('picks up a changed config and keeps the old maps when the new file is broken', async () => {
    const config = join(dir.path, 'reload.yaml');
    const map = (to: string) =>
      `apiVersion: pullmap.dev/v1alpha1\nkind: ClusterImageMap\nmetadata: { name: m }\nspec:\n  mappings:\n    - { from: docker.io/, to: ${to} }\n`;
    // Replaced the way a ConfigMap volume or an editor's save-as does (written aside, renamed): a
    // writeFile in place is truncated first, and a reload in between would read an empty file (no maps).
    const replace = async (text: string) => {
      await writeFile(`${config}.new`, text);
      await rename(`${config}.new`, config);
    };
    await replace(map('one.example/'));
    const pm = await startPullmap({ tls: tls(), args: ['--config', config, '--reload-interval', '100ms'] });
    const imageOf = async () =>
      patchOf((await pm.review(podReview({ a: 'nginx:1.27' }))).json.response).find((p) =>
        p.path.endsWith('/image'),
      )?.value;
    const waitFor = async (want: string) => {
      for (let i = 0; i < 100 && (await imageOf()) !== want; i++)
        await new Promise((r) => setTimeout(r, 100));
      return imageOf();
    };
    try {
      assert.equal(await imageOf(), 'one.example/library/nginx:1.27');
      await replace(map('two.example/'));
      assert.equal(await waitFor('two.example/library/nginx:1.27'), 'two.example/library/nginx:1.27');
      await replace('kind: [unclosed');
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(
        await imageOf(),
        'two.example/library/nginx:1.27',
        'a broken file keeps the maps in force',
      );
      assert.ok(pm.logs().some((l) => l.msg === 'config not reloaded; the maps in force stay'));
    } finally {
      await pm.stop();
    }
  });
});

describe("what a running webhook loads of Node's own modules", () => {
  let registry: TestRegistry;
  let loaded: string[];
  before(async () => {
    registry = await startRegistry();
    const config = join(dir.path, 'probe.yaml');
    await writeFile(
      config,
      [
        'apiVersion: pullmap.dev/v1alpha1',
        'kind: ClusterImageMap',
        'metadata: { name: mirror }',
        'spec:',
        '  mappings:',
        `    - { from: docker.io/, to: "${registry.host}/mirror/", when: IfExists }`,
      ].join('\n'),
    );
    const list = join(dir.path, 'modules.json');
    const probe = `import { writeFileSync } from 'node:fs';
process.on('exit', () => writeFileSync(${JSON.stringify(list)}, JSON.stringify(process.moduleLoadList)));`;
    const pm = await startPullmap({
      tls: tls(),
      args: ['--config', config, '--plain-http', registry.host],
      // Loaded before pullmap, the probe writes the list when the process exits.
      wrap: (command, args) => ({
        command,
        args: ['--import', `data:text/javascript,${encodeURIComponent(probe)}`, ...args],
      }),
    });
    try {
      // A review that asks the registry: the registry client and its HTTP stack are loaded too.
      const { json } = await pm.review(podReview({ app: 'nginx:1.27' }));
      assert.equal(json.response.allowed, true);
      assert.equal(
        await pm.metric(`pullmap_existence_probes_total{registry="${registry.host}",outcome="NotFound"}`),
        1,
      );
    } finally {
      await pm.stop();
    }
    loaded = JSON.parse(await readFile(list, 'utf8')) as string[];
  });
  after(async () => registry?.stop());

  it("has not loaded Node's fetch and WebSocket (its bundled undici): importing node:http as an ES module would", () => {
    assert.ok(loaded.includes('NativeModule https'), 'the probe saw the webhook');
    assert.ok(!loaded.includes('NativeModule internal/deps/undici/undici'), loaded.join('\n'));
  });
});
