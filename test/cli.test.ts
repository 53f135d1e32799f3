// The CLI as users run it: the built bundle in a child process, real files, real exit codes.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type TempDir, tempDir } from './harness/process.ts';

const BIN = join(import.meta.dirname, '..', 'dist', 'pullmap.js');
const pullmap = (args: string[], input?: string) => {
  const r = spawnSync(process.execPath, [BIN, ...args], { input, encoding: 'utf8', timeout: 20_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
};

let dir: TempDir;
const file = (name: string, text: string): string => {
  const p = join(dir.path, name);
  writeFileSync(p, text);
  return p;
};
before(async () => {
  dir = await tempDir('cli');
});
after(() => dir.remove());

describe('pullmap explain', () => {
  test('JSON Lines in input order, invalid lines reported with exit 0', () => {
    const r = pullmap(
      ['explain', '--output', 'json'],
      'nginx\nnot valid!\n\nquay.io/a/b@sha256:' + 'c'.repeat(64) + '\n',
    );
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.equal(lines.length, 3);
    assert.deepEqual(lines[0], {
      input: 'nginx',
      valid: true,
      normalized: 'docker.io/library/nginx:latest',
      familiar: 'nginx',
      registry: 'docker.io',
      repository: 'library/nginx',
      tag: null,
      digest: null,
    });
    assert.equal(lines[1].valid, false);
    assert.match(lines[1].error, /contains U\+0020|space/);
    assert.equal(lines[2].normalized, `quay.io/a/b@sha256:${'c'.repeat(64)}`);
  });
  test('with a config: mapped image and reasons', () => {
    const r = pullmap(['explain', '-o', 'json', '--config', 'examples/default.yaml', 'nginx:1.27', 'nginx']);
    assert.equal(r.code, 0, r.stderr);
    const [mapped, kept] = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.equal(mapped.mapped, 'project-a.azurecr.io/docker-mirror/library/nginx:1.27');
    assert.equal(mapped.rule.map, 'ClusterImageMap/edge');
    assert.equal(kept.outcome, 'Unchanged');
    assert.ok(kept.reasons.some((x: { code: string }) => x.code === 'MutableTagKept'));
  });
  test("the rule names the Secret pods get for it (pullmap's copy for a ClusterImageMap)", () => {
    const cfg = file(
      'secret.yaml',
      `apiVersion: pullmap.dev/v1alpha1
kind: ClusterImageMap
metadata: {name: hub}
spec:
  mappings: [{from: "docker.io/", to: "mirror.local/hub/", pullSecret: mirror-creds}]
`,
    );
    const r = pullmap(['explain', '-o', 'json', '--config', cfg, 'nginx:1.27']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).rule.pullSecret, 'pullmap-mirror-creds');
  });
  test('a broken config is exit 2 with a located message and no stack trace', () => {
    const bad = file(
      'bad.yaml',
      'apiVersion: pullmap.dev/v1alpha1\nkind: ClusterImageMap\nmetadata: {name: x\n',
    );
    const r = pullmap(['explain', '--config', bad, 'nginx']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /bad\.yaml:\d+:\d+: YAML document 1 is malformed/);
    assert.doesNotMatch(r.stderr, /at .*\.js:\d+/);
    const missing = pullmap(['explain', '--config', join(dir.path, 'nope.yaml'), 'nginx']);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /cannot read .*nope\.yaml: no such file/);
  });
  test('bad flags are usage errors', () => {
    const r = pullmap(['explain', '--output', 'xml', 'nginx']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--output must be one of text, json/);
    assert.equal(pullmap(['explain', '--bogus']).code, 2);
    assert.equal(pullmap(['frobnicate']).code, 2);
  });
});

describe('pullmap check', () => {
  test('examples are all accepted', () => {
    const examples = readdirSync('examples').filter((f) => f.endsWith('.yaml'));
    assert.ok(examples.length >= 5, 'the default config and one per user story');
    for (const f of examples.map((e) => join('examples', e))) {
      const r = pullmap(['check', '--config', f]);
      assert.equal(r.code, 0, `${f}: ${r.stdout}${r.stderr}`);
    }
  });
  test('conflicts and errors: exit 1, every problem with map, entry and fix', () => {
    const cfg = file(
      'conflict.yaml',
      `apiVersion: pullmap.dev/v1alpha1
kind: ImageMap
metadata: {name: a, namespace: t}
spec:
  mappings: [{from: "gcr.io/x/", to: "reg.a/x/"}]
---
apiVersion: pullmap.dev/v1alpha1
kind: ImageMap
metadata: {name: b, namespace: t}
spec:
  mappings: [{from: "gcr.io/x/", to: "reg.b/x/"}]
---
apiVersion: pullmap.dev/v1alpha1
kind: ClusterImageMap
metadata: {name: c}
spec:
  mappings: [{from: "docker.io/", to: "Mirror/X/"}]
`,
    );
    const r = pullmap(['check', '--config', cfg]);
    assert.equal(r.code, 1);
    assert.match(
      r.stdout,
      /Conflict +ImageMap\/t\/b\n\s+spec\.mappings\[0\]: maps "gcr\.io\/x\/" to "reg\.b\/x\/", but ImageMap\/t\/a spec\.mappings\[0\]/,
    );
    assert.match(
      r.stdout,
      /Invalid +ClusterImageMap\/c\n\s+spec\.mappings\[0\]\.to: "Mirror\/X\/" is not a valid repository prefix/,
    );
    assert.match(r.stdout, /3 maps, 2 rejected/);
  });
});

describe('pullmap rewrite', () => {
  test('stdin to stdout, only images change', () => {
    const input =
      'kind: Pod\nmetadata: {name: p}  # keep\nspec:\n  containers:\n  - {name: a, image: "nginx:1.27"}\n';
    const r = pullmap(['rewrite', '-f', '-', '--config', 'examples/default.yaml'], input);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stdout,
      input.replace('"nginx:1.27"', '"project-a.azurecr.io/docker-mirror/library/nginx:1.27"'),
    );
  });
  test('without -f it is a usage error', () => {
    assert.equal(pullmap(['rewrite']).code, 2);
  });
});

describe('a CLI that behaves like one', () => {
  const version = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'package.json'), 'utf8')).version;
  test('every command prints its own usage for --help and -h, exit 0', () => {
    for (const command of ['explain', 'rewrite', 'check', 'serve', 'cache'])
      for (const flag of ['--help', '-h']) {
        const r = pullmap([command, flag]);
        assert.equal(r.code, 0, `${command} ${flag}: ${r.stderr}`);
        assert.match(r.stdout, new RegExp(`^Usage: pullmap ${command} `), `${command} ${flag}`);
        assert.equal(r.stderr, '');
      }
    assert.match(pullmap(['help', 'cache']).stdout, /^Usage: pullmap cache --config FILE/);
    assert.match(pullmap(['--help']).stdout, /Usage: pullmap explain[\s\S]*Usage: pullmap cache/);
  });
  test("--version prints package.json's version once, with a newline", () => {
    const r = pullmap(['--version']);
    assert.equal(r.code, 0);
    assert.equal(r.stdout, `${version}\n`);
  });
  test('unknown flags and stray arguments name themselves and the usage line', () => {
    const r = pullmap(['explain', '--bogus', 'nginx']);
    assert.equal(r.code, 2);
    assert.equal(r.stderr.split('\n')[0], 'pullmap: explain: unknown flag --bogus');
    assert.match(r.stderr.split('\n')[1]!, /^Usage: pullmap explain \[IMAGE\.\.\.\]/);
    const cache = pullmap(['cache', '--lisen', '127.0.0.1:1']);
    assert.equal(cache.code, 2);
    assert.match(cache.stderr, /^pullmap: cache: unknown flag --lisen\nUsage: pullmap cache --config FILE/);
    const stray = pullmap(['check', 'maps.yaml']);
    assert.equal(stray.code, 2);
    assert.match(stray.stderr, /check: unexpected argument "maps\.yaml"\nUsage: pullmap check --config FILE/);
    const missing = pullmap(['rewrite', '-f']);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /rewrite: .*--file.*\nUsage: pullmap rewrite/);
  });
  test('explain --pod needs NAMESPACE/NAME and no images; --kubeconfig needs --pod', () => {
    assert.match(pullmap(['explain', '--pod', 'web']).stderr, /--pod "web" is not NAMESPACE\/NAME/);
    assert.match(pullmap(['explain', '--pod', 'a/b', 'nginx']).stderr, /give no IMAGE arguments/);
    assert.match(pullmap(['explain', '--kubeconfig', 'k', 'nginx']).stderr, /--kubeconfig needs --pod/);
  });
  test('under a Node.js older than 24 it says so in one line and exits 2', (t) => {
    const old = '/usr/bin/node';
    const probe = spawnSync(old, ['-p', 'process.versions.node'], { encoding: 'utf8' });
    if (probe.status !== 0 || Number(probe.stdout.split('.')[0]) >= 24) {
      t.skip(`no Node.js older than 24 at ${old}`);
      return;
    }
    for (const args of [['--version'], ['explain', '--config', 'examples/default.yaml', 'nginx:1.27']]) {
      const r = spawnSync(old, [BIN, ...args], { encoding: 'utf8', timeout: 20_000 });
      assert.equal(r.status, 2);
      assert.equal(r.stdout, '');
      assert.match(r.stderr, /^pullmap: needs Node\.js 24 or newer, but runs on v\d+\.[^\n]*\n$/);
    }
  });
});
