// pullmap with Helm, as the README shows it, through the cached Helm v4: the post-renderer plugin in
// deploy/helm-plugin (installed under temporary Helm homes) on a small chart, its script alone (Helm 3
// runs it as an executable), and the examples/values-*.yaml of the user stories rendered by the chart
// and checked by `pullmap check`.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, closeSync, mkdirSync, openSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { parseCacheConfig } from '../src/cache/config.ts';
import { CHART, helmBinary } from './harness/helm.ts';
import { type TempDir, tempDir } from './harness/process.ts';

const ROOT = join(import.meta.dirname, '..');
const BIN = join(ROOT, 'dist', 'pullmap.js');
const PLUGIN = join(ROOT, 'deploy', 'helm-plugin');
const RENDER = join(PLUGIN, 'render.sh');
const PULLMAP = `${process.execPath} ${BIN}`;

type Obj = Record<string, any>;
const objects = (text: string): Obj[] =>
  parseAllDocuments(text)
    .map((d) => d.toJSON() as Obj | null)
    .filter((o): o is Obj => o !== null);

const MAPS = `apiVersion: pullmap.dev/v1alpha1
kind: ClusterImageMap
metadata: {name: hub}
spec:
  mappings:
    - {from: "docker.io/", to: "mirror.local/hub/"}
    - {from: "quay.io/", to: "mirror.local/quay/"}
`;

let dir: TempDir;
let chart: string;
let maps: string;
let helmBin: string;
let runs = 0;

/**
 * Runs helm under this test's own Helm homes, its stderr a file opened for appending, as a terminal or a CI log behaves (the
 * plugin writes pullmap's messages to Helm's stderr, which a socket, Node's usual stdio, would refuse).
 */
function helm(args: readonly string[]): { code: number | null; stdout: string; stderr: string } {
  const errPath = join(dir.path, `helm-${++runs}.err`);
  const errFd = openSync(errPath, 'a'); // O_APPEND: helm and the plugin each open it
  try {
    const r = spawnSync(helmBin, args, {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', errFd],
      timeout: 120_000,
      maxBuffer: 64 * 1024 * 1024,
      env: {
        ...process.env,
        HELM_CACHE_HOME: join(dir.path, 'helm', 'cache'),
        HELM_CONFIG_HOME: join(dir.path, 'helm', 'config'),
        HELM_DATA_HOME: join(dir.path, 'helm', 'data'),
        KUBECONFIG: join(dir.path, 'no-kubeconfig'),
        // The plugin runs pullmap from $PULLMAP: this checkout's bundle under the tests' Node.js.
        PULLMAP,
      },
    });
    return { code: r.status, stdout: r.stdout, stderr: readFileSync(errPath, 'utf8') };
  } finally {
    closeSync(errFd);
  }
}
const helmOk = (args: readonly string[]): string => {
  const r = helm(args);
  assert.equal(r.code, 0, `helm ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
};

before(async () => {
  dir = await tempDir('cli-helm');
  helmBin = await helmBinary();
  chart = join(dir.path, 'web');
  mkdirSync(join(chart, 'templates'), { recursive: true });
  writeFileSync(join(chart, 'Chart.yaml'), 'apiVersion: v2\nname: web\nversion: 0.1.0\n');
  writeFileSync(
    join(chart, 'templates', 'workloads.yaml'),
    `apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}   # a comment pullmap keeps
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: web
          image: "nginx:1.27"
        - name: exporter
          image: quay.io/prometheus/nginx-exporter:1.4
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: {{ .Release.Name }}-report}
spec:
  schedule: "@daily"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers: [{name: report, image: "registry.k8s.io/pause:3.10"}]
`,
  );
  maps = join(dir.path, 'maps.yaml');
  writeFileSync(maps, MAPS);
});
after(async () => {
  await dir?.remove();
});

describe('the Helm 4 post-renderer plugin (deploy/helm-plugin)', () => {
  test('helm plugin install, then --post-renderer pullmap --post-renderer-args maps the images', async () => {
    const installed = helm(['plugin', 'install', PLUGIN]);
    assert.equal(installed.code, 0, installed.stderr);
    const listed = helmOk(['plugin', 'list']);
    assert.match(listed, /^pullmap\s+0\.1\.0\s+postrenderer\/v1/m);

    const plain = helmOk(['template', 'web', chart]);
    const rendered = helmOk([
      'template',
      'web',
      chart,
      '--post-renderer',
      'pullmap',
      '--post-renderer-args',
      `--config=${maps}`,
    ]);
    const images = objects(rendered).flatMap((o) =>
      (o.spec.template?.spec ?? o.spec.jobTemplate.spec.template.spec).containers.map(
        (c: { image: string }) => c.image,
      ),
    );
    assert.deepEqual(images, [
      'mirror.local/hub/library/nginx:1.27',
      'mirror.local/quay/prometheus/nginx-exporter:1.4',
      'registry.k8s.io/pause:3.10',
    ]);
    // Helm 4 re-serialises what a post-renderer returns, so through Helm the objects are compared; the
    // bytes are pullmap's own when the script runs on Helm's output directly (as Helm 3 runs it).
    const expected = plain
      .replace('"nginx:1.27"', '"mirror.local/hub/library/nginx:1.27"')
      .replace('quay.io/prometheus/nginx-exporter:1.4', 'mirror.local/quay/prometheus/nginx-exporter:1.4');
    assert.deepEqual(objects(rendered), objects(expected));
    assert.match(rendered, /# a comment pullmap keeps/);
    const direct = spawnSync(RENDER, [`--config=${maps}`], {
      input: plain,
      encoding: 'utf8',
      env: { ...process.env, PULLMAP },
    });
    assert.equal(direct.status, 0, direct.stderr);
    assert.equal(direct.stdout, expected);
  });
  test("without --config the render fails with pullmap's message, never ships unmapped images", async () => {
    const r = helm(['template', 'web', chart, '--post-renderer', 'pullmap']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /rewrite needs --config PATH/);
    assert.doesNotMatch(r.stdout, /nginx:1\.27/);
  });
  test('a bad map file fails the render naming the file and line', async () => {
    const bad = join(dir.path, 'bad-maps.yaml');
    writeFileSync(bad, `${MAPS}---\nkind: [\n`);
    const r = helm([
      'template',
      'web',
      chart,
      '--post-renderer',
      'pullmap',
      '--post-renderer-args',
      `--config=${bad}`,
    ]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /bad-maps\.yaml:\d+:\d+: YAML document 2 is malformed/);
  });
});

describe("the plugin's script as Helm 3's --post-renderer executable", () => {
  const manifest = 'kind: Pod\nspec:\n  containers: [{name: a, image: "nginx:1.27"}]\n';
  test('runs $PULLMAP, else the pullmap on PATH, with the arguments it is given', () => {
    const viaEnv = spawnSync(RENDER, [`--config=${maps}`], {
      input: manifest,
      encoding: 'utf8',
      env: { ...process.env, PULLMAP },
    });
    assert.equal(viaEnv.status, 0, viaEnv.stderr);
    assert.match(viaEnv.stdout, /image: "mirror\.local\/hub\/library\/nginx:1\.27"/);

    const bin = join(dir.path, 'bin');
    mkdirSync(bin, { recursive: true });
    writeFileSync(join(bin, 'pullmap'), `#!/bin/sh\nexec "${process.execPath}" "${BIN}" "$@"\n`);
    chmodSync(join(bin, 'pullmap'), 0o755);
    const { PULLMAP: _, ...env } = process.env;
    const viaPath = spawnSync(RENDER, ['--config', maps], {
      input: manifest,
      encoding: 'utf8',
      env: { ...env, PATH: `${bin}:/usr/bin:/bin` },
    });
    assert.equal(viaPath.status, 0, viaPath.stderr);
    assert.match(viaPath.stdout, /mirror\.local\/hub\/library\/nginx:1\.27/);

    const none = spawnSync(RENDER, ['--config', maps], {
      input: manifest,
      encoding: 'utf8',
      env: { ...env, PATH: '/usr/bin:/bin' },
    });
    assert.equal(none.status, 127);
    assert.equal(none.stdout, '');
    assert.match(
      none.stderr,
      /no pullmap on PATH and PULLMAP is not set; .*export PULLMAP="\$PWD\/node_modules\/\.bin\/node \$PWD\/dist\/pullmap\.js"/,
    );
  });
});

describe('examples/values-*.yaml: one per user story, accepted by the chart', () => {
  const files = readdirSync(join(ROOT, 'examples')).filter((f) => /^values-.*\.yaml$/.test(f));
  test('there is one for each of the four stories', () => {
    assert.deepEqual(
      files.map((f) => f.match(/^values-story-(\d{3})-/)?.[1]),
      ['000', '001', '002', '003'],
    );
  });
  for (const f of files) {
    test(`${f}: helm template accepts it; its maps pass pullmap check, with the cache's upstreams`, async () => {
      const rendered = objects(
        helmOk(['template', 'pullmap', CHART, '-n', 'pullmap-system', '-f', join(ROOT, 'examples', f)]),
      );
      const maps = rendered.filter((o) => o.kind === 'ClusterImageMap');
      assert.ok(maps.length > 0, 'each story ships its maps (story 002: the platform baseline)');
      const mapFile = join(dir.path, `${f}.maps.yaml`);
      writeFileSync(mapFile, maps.map((m) => JSON.stringify(m)).join('\n---\n'));
      const cacheConfig = rendered.find((o) => o.kind === 'ConfigMap' && o.data?.['cache.yaml']);
      const args = ['check', '--config', mapFile];
      if (cacheConfig) {
        const parsed = parseCacheConfig(cacheConfig.data['cache.yaml'], `${f} cache.config`);
        assert.ok(parsed.ok, parsed.ok ? '' : parsed.errors.join('\n'));
        // The webhook is given the same hosts (its maps' status warns as check does).
        const webhook = rendered.find((o) => o.kind === 'Deployment' && o.metadata.name.endsWith('-webhook'));
        const flag = `--cache-upstreams=${parsed.config.upstreams.map((u) => u.host).join(',')}`;
        assert.ok(webhook?.spec.template.spec.containers[0].args.includes(flag), flag);
        args.push(flag);
      }
      const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stdout + r.stderr);
      assert.doesNotMatch(r.stdout, /warning/);
    });
  }
});
