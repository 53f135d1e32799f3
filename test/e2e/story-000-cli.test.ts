// Story 000 end to end with the CLI: a Zarf-like internal registry (a real docker-registry) holds only
// the Knative sidecar. `pullmap explain` maps the sidecar, leaves the application image alone because
// the registry does not have it, and never even asks about a :latest image.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { buildImage, pushImage } from '../harness/images.ts';
import { type TempDir, tempDir } from '../harness/process.ts';
import { startRegistry, type TestRegistry } from '../harness/registry.ts';

const BIN = join(import.meta.dirname, '..', '..', 'dist', 'pullmap.js');

function pullmap(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => (stdout += c));
    child.stderr.on('data', (c) => (stderr += c));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

/** `pullmap explain -o json` with the test's config and registry; one parsed object per image. */
async function explain(images: string[], extra: string[] = []) {
  const r = await pullmap([
    'explain',
    '-o',
    'json',
    '--config',
    config,
    '--plain-http',
    registry.host,
    ...extra,
    ...images,
  ]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
}

let registry: TestRegistry;
let dir: TempDir;
let config: string;

before(async () => {
  registry = await startRegistry();
  dir = await tempDir('story000');
  await pushImage(registry, 'knative/queue', '1.0', buildImage({ files: { 'queue-proxy': 'sidecar' } }));
  config = join(dir.path, 'maps.yaml');
  writeFileSync(
    config,
    `apiVersion: pullmap.dev/v1alpha1
kind: ClusterImageMap
metadata: {name: zarf-if-exists}
spec:
  mappings:
    - from: quay.io/
      to: ${registry.host}/
      when: IfExists
  mutableTags: ["latest"]
`,
  );
});
after(async () => {
  await registry?.close();
  await dir?.remove();
});

test('sidecar mapped, application image and :latest untouched, each with reasons', async () => {
  const seen = (await registry.requests()).length;
  const [sidecar, app, latest] = await explain([
    'quay.io/knative/queue:1.0',
    'quay.io/acme/app:2.3',
    'quay.io/knative/queue:latest',
  ]);

  assert.equal(sidecar.mapped, `${registry.host}/knative/queue:1.0`);
  assert.equal(sidecar.outcome, 'Mapped');
  const available = sidecar.reasons.find((x: { code: string }) => x.code === 'CandidateAvailable');
  assert.equal(available.probe.outcome, 'Available');
  assert.match(available.probe.digest, /^sha256:[0-9a-f]{64}$/);

  assert.equal(app.mapped, 'quay.io/acme/app:2.3');
  assert.deepEqual(
    app.reasons.map((x: { code: string }) => x.code),
    ['Matched', 'CandidateMissing', 'NoCandidateHasImage'],
  );

  assert.equal(latest.mapped, 'quay.io/knative/queue:latest');
  assert.ok(latest.reasons.some((x: { code: string }) => x.code === 'MutableTagKept'));

  // Two manifest HEADs reached the registry: one per probed image; :latest was never asked about.
  const requests = (await registry.requests()).slice(seen);
  const manifestHeads = requests.filter((e) => e.method === 'HEAD' && e.uri.includes('/manifests/'));
  assert.deepEqual(manifestHeads.map((e) => e.uri).sort(), [
    '/v2/acme/app/manifests/2.3',
    '/v2/knative/queue/manifests/1.0',
  ]);
});

test('the registry stopped: the sidecar keeps its original image, with the reason', async () => {
  await registry.stop();
  const [d] = await explain(['quay.io/knative/queue:1.0'], ['--probe-timeout', '2s']);
  assert.equal(d.mapped, 'quay.io/knative/queue:1.0');
  assert.ok(
    d.reasons.some(
      (x: { code: string; probe?: { outcome: string } }) =>
        x.code === 'CandidateProbeFailed' && x.probe?.outcome === 'Unreachable',
    ),
  );
});
