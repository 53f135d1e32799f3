// The CLI as users run it: the built bundle in a child process, real files, real exit codes.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { runCli as pullmap, scratch } from './harness/cli.ts';
import { PULLMAP } from './harness/pullmap.ts';

const dir = scratch('cli');
const file = dir.file;

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
    assert.deepEqual(
      {
        input: lines[0].input,
        valid: lines[0].valid,
        normalized: lines[0].normalized,
        familiar: lines[0].familiar,
        registry: lines[0].registry,
        repository: lines[0].repository,
        tag: lines[0].tag,
        digest: lines[0].digest,
      },
      {
        input: 'nginx',
        valid: true,
        normalized: 'docker.io/library/nginx:latest',
        familiar: 'nginx',
        registry: 'docker.io',
        repository: 'library/nginx',
        tag: null,
        digest: null,
      },
    );
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
    const examples = readdirSync('examples').filter((f) => f.endsWith('.yaml') && !f.startsWith('values-'));
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
    assert.match(stray.stderr, /check: unexpected argument "maps\.yaml"\nUsage: pullmap check --config PATH/);
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
      const r = spawnSync(old, [PULLMAP, ...args], { encoding: 'utf8', timeout: 20_000 });
      assert.equal(r.status, 2);
      assert.equal(r.stdout, '');
      assert.match(r.stderr, /^pullmap: needs Node\.js 24 or newer, but runs on v\d+\.[^\n]*\n$/);
    }
  });
});

const SELECTOR_MAP = `apiVersion: pullmap.dev/v1alpha1
kind: ClusterImageMap
metadata: {name: prod-only}
spec:
  namespaceSelector: {matchLabels: {env: prod}}
  mappings: [{from: "ghcr.io/", to: "mirror.local/ghcr/"}]
`;

describe('no command silently does nothing without --config', () => {
  test('explain decides with the embedded default maps and says so on stderr', () => {
    const r = pullmap(['explain', '-o', 'json', 'nginx:1.27']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).mapped, 'project-a.azurecr.io/docker-mirror/library/nginx:1.27');
    assert.match(
      r.stderr,
      /no --config given: deciding with the embedded default maps \(examples\/default\.yaml/,
    );
  });
  test('rewrite refuses with exit 2 naming --config, and writes nothing', () => {
    const r = pullmap(['rewrite', '-f', '-'], 'kind: Pod\nspec: {containers: [{name: a, image: nginx:1}]}\n');
    assert.equal(r.code, 2);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /^pullmap: rewrite needs --config PATH, the maps to apply/);
  });
  test('check refuses with exit 2 naming --config', () => {
    const r = pullmap(['check']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /check needs --config PATH/);
  });
});

describe('several --config values and directories', () => {
  const hub = `apiVersion: pullmap.dev/v1alpha1
kind: ClusterImageMap
metadata: {name: hub}
spec:
  mappings: [{from: "docker.io/", to: "mirror.local/hub/"}]
`;
  const quay = hub.replaceAll('hub', 'quay').replace('docker.io/', 'quay.io/');
  test('files and a directory (its .yaml/.yml/.json files) are read as one set', () => {
    const a = file('multi-a.yaml', hub);
    const d = join(dir.path, 'maps.d');
    mkdirSync(d);
    writeFileSync(join(d, 'quay.yml'), quay);
    writeFileSync(join(d, 'notes.txt'), 'not a map');
    const r = pullmap(['explain', '-o', 'json', '-c', a, '--config', `${d}/`, 'nginx:1', 'quay.io/x/y:1']);
    assert.equal(r.code, 0, r.stderr);
    const [n, q] = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.equal(n.mapped, 'mirror.local/hub/library/nginx:1');
    assert.equal(q.mapped, 'mirror.local/quay/x/y:1');
    const checked = pullmap(['check', '--config', a, '--config', d]);
    assert.equal(checked.code, 0, checked.stderr);
    assert.match(checked.stdout, /2 maps, 0 rejected/);
  });
  test('one name given in two files is exit 2 naming both places', () => {
    const a = file('dup-a.yaml', hub);
    const b = file('dup-b.yaml', `# the same map again\n${hub}`);
    const r = pullmap(['check', '--config', a, '--config', b]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /dup-b\.yaml:2: ClusterImageMap\/hub is given again \(first at .*dup-a\.yaml:1\)/);
  });
  test('a Helm values file given as --config says what it is', () => {
    const r = pullmap(['check', '--config', 'examples/values-story-001-edge.yaml']);
    assert.equal(r.code, 2);
    assert.match(
      r.stderr,
      /is not a map object; .*\(this looks like Helm values for the chart: give it to helm with -f\)/,
    );
  });
  test('an empty directory is a usage error naming it', () => {
    const d = join(dir.path, 'empty.d');
    mkdirSync(d);
    const r = pullmap(['check', '--config', d]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /empty\.d: the directory holds no \.yaml, \.yml or \.json file/);
  });
});

describe('output formats', () => {
  test('explain -o yaml: one YAML document per image, the same fields as -o json', () => {
    const args = ['explain', '--config', 'examples/default.yaml', 'nginx:1.27', 'not valid!'];
    const json = pullmap([...args, '-o', 'json']);
    const yaml = pullmap([...args, '-o', 'yaml']);
    assert.equal(yaml.code, 0, yaml.stderr);
    const docs = parseAllDocuments(yaml.stdout).map((d) => d.toJS());
    assert.deepEqual(
      docs,
      json.stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l)),
    );
  });
  test('check -o json: verdicts with findings, errors and a summary; exit codes as in text', () => {
    const cfg = file(
      'json-check.yaml',
      `apiVersion: pullmap.dev/v1alpha1
kind: ClusterImageMap
metadata: {name: good}
spec:
  mappings: [{from: "docker.io/", to: "mirror.local/hub/"}]
---
apiVersion: pullmap.dev/v1alpha1
kind: ImageMap
metadata: {name: bad, namespace: t}
spec:
  mappings: [{from: "quay.io/", to: "Mirror/X/"}]
`,
    );
    const r = pullmap(['check', '-o', 'json', '--config', cfg]);
    assert.equal(r.code, 1);
    const out = JSON.parse(r.stdout);
    assert.deepEqual(out.summary, { maps: 2, rejected: 1, errors: 0, warnings: 0 });
    assert.deepEqual(out.maps[0], {
      map: 'ClusterImageMap/good',
      kind: 'ClusterImageMap',
      name: 'good',
      verdict: 'Accepted',
      findings: [],
    });
    assert.equal(out.maps[1].namespace, 't');
    assert.equal(out.maps[1].verdict, 'Invalid');
    assert.equal(out.maps[1].findings[0].path, 'spec.mappings[0].to');
    const broken = pullmap(['check', '-o', 'json', '--config', file('broken.yaml', 'kind: [\n')]);
    assert.equal(broken.code, 2);
    assert.match(JSON.parse(broken.stdout).errors[0], /broken\.yaml:\d+:\d+: YAML document 1 is malformed/);
  });
});

describe('help for every flag', () => {
  test('each command lists every flag with a description, defaults included', () => {
    for (const command of ['explain', 'rewrite', 'check', 'serve', 'cache']) {
      const help = pullmap([command, '--help']).stdout;
      const flags = help.slice(help.indexOf('\nFlags:\n') + 8).split('\n');
      const starts = flags.filter((l) => /^ {2}(-\w, | {4})--/.test(l));
      assert.ok(starts.length >= 2, `${command}: ${help}`);
      for (const [i, line] of flags.entries()) {
        if (!/^ {2}(-\w, | {4})--/.test(line)) continue;
        // The description follows on the same line, or on the next one when the flag is long.
        const description = line.slice(34).trim() || flags[i + 1]?.trim();
        assert.ok(description && !description.startsWith('-'), `${command}: no description for ${line}`);
      }
    }
    const serve = pullmap(['serve', '--help']).stdout;
    for (const [flag, dflt] of [
      ['--listen HOST:PORT', '0.0.0.0:8443'],
      ['--deadline DUR', '3s'],
      ['--failure-policy Ignore|Fail', 'Ignore'],
      ['--reload-interval DUR', '10s'],
      ['--on-rejected-update KeepLastAccepted|Undeploy', 'KeepLastAccepted'],
    ] as [string, string][])
      assert.match(serve, new RegExp(`${flag.replaceAll('|', '\\|')}[^]*?\\(default:\\s+${dflt}\\)`), flag);
    assert.match(serve, /-c, --config PATH +map objects \(file mode\): a file or a directory/);
  });
  test('--namespace-labels is documented and told apart from --labels', () => {
    const help = pullmap(['explain', '--help']).stdout;
    assert.match(help, /-l, --labels k=v,\.\.\. +the POD's labels, for podSelector/);
    assert.match(
      help,
      /--namespace-labels k=v,\.\.\. +the NAMESPACE's labels, for a ClusterImageMap's\s+namespaceSelector/,
    );
  });
  test('short flags that appear in error messages are documented in help', () => {
    const r = pullmap(['rewrite', '-f']);
    assert.match(r.stderr, /'-f, --file <value>' argument missing/);
    assert.match(pullmap(['rewrite', '--help']).stdout, /-f, --file FILE\|-/);
  });
});

describe('a namespace that a namespaceSelector leaves out', () => {
  test('explain says the map matched but did not select the namespace; its labels select it', () => {
    const cfg = file('selector.yaml', SELECTOR_MAP);
    const out = pullmap(['explain', '-o', 'json', '-c', cfg, '-n', 'shop', 'ghcr.io/a/b:1']);
    assert.equal(out.code, 0, out.stderr);
    const d = JSON.parse(out.stdout);
    assert.equal(d.outcome, 'Unchanged');
    assert.equal(d.reasons[0].code, 'NamespaceNotSelected');
    assert.match(
      d.reasons[0].message,
      /ClusterImageMap\/prod-only spec\.mappings\[0\] matches the image, but its namespaceSelector does not select namespace shop/,
    );
    const text = pullmap(['explain', '-c', cfg, '-n', 'shop', 'ghcr.io/a/b:1']);
    assert.match(text.stdout, /NamespaceNotSelected: ClusterImageMap\/prod-only/);
    const manifest =
      'kind: Pod\nmetadata: {name: p, namespace: shop}\nspec: {containers: [{name: a, image: "ghcr.io/a/b:1"}]}\n';
    assert.equal(pullmap(['rewrite', '-f', '-', '-c', cfg], manifest).stdout, manifest);
    assert.match(
      pullmap(['rewrite', '-f', '-', '-c', cfg, '--namespace-labels', 'env=prod'], manifest).stdout,
      /image: "mirror\.local\/ghcr\/a\/b:1"/,
    );
    const selected = pullmap([
      'explain',
      '-o',
      'json',
      '-c',
      cfg,
      '-n',
      'shop',
      '--namespace-labels',
      'env=prod',
      'ghcr.io/a/b:1',
    ]);
    assert.equal(JSON.parse(selected.stdout).mapped, 'mirror.local/ghcr/a/b:1');
  });
  test('serve --config with such a map and no cluster refuses to start, naming the map', () => {
    const cfg = file('serve-selector.yaml', SELECTOR_MAP);
    const { KUBERNETES_SERVICE_HOST: _, ...env } = process.env; // never in a pod, whatever runs the test
    const r = spawnSync(
      process.execPath,
      [PULLMAP, 'serve', '--no-tls', '--listen', '127.0.0.1:0', '--config', cfg],
      { encoding: 'utf8', timeout: 20_000, env },
    );
    assert.equal(r.status, 2, r.stderr);
    assert.match(
      r.stderr,
      /pullmap: ClusterImageMap\/prod-only: spec\.namespaceSelector reads namespace labels \(env\), but serve --config has no cluster to read them from; give --kubeconfig FILE/,
    );
  });
});

describe('check --cache-upstreams', () => {
  test("warns about a cache.enabled map whose target is not one of the cache's upstreams", () => {
    const cfg = file(
      'upstreams.yaml',
      `apiVersion: pullmap.dev/v1alpha1
kind: ClusterImageMap
metadata: {name: through-cache}
spec:
  mappings:
    - {from: "docker.io/", to: "docker.io/"}
    - {from: "quay.io/", to: ["quay.io/", "mirror.internal:5000/quay/"], when: IfExists}
  cache: {enabled: true}
`,
    );
    const ok = pullmap(['check', '--config', cfg]);
    assert.equal(ok.code, 0, ok.stdout);
    assert.doesNotMatch(ok.stdout, /warning/);
    const r = pullmap(['check', '--config', cfg, '--cache-upstreams', 'docker.io,quay.io']);
    assert.equal(r.code, 0, 'a warning does not fail check');
    assert.match(
      r.stdout,
      /warning +ClusterImageMap\/through-cache spec\.mappings\[1\]\.to\[1\]: mirror\.internal:5000 is not an upstream of the cache \(its upstreams: docker\.io, quay\.io\), so pulls routed through it would fail with NAME_UNKNOWN/,
    );
    assert.match(r.stdout, /1 maps, 0 rejected, 1 warning\n/);
    const json = JSON.parse(
      pullmap(['check', '-o', 'json', '-c', cfg, '--cache-upstreams', 'docker.io']).stdout,
    );
    assert.deepEqual(
      json.warnings.map((w: { path: string; registry: string }) => `${w.path} ${w.registry}`),
      ['spec.mappings[1].to[0] quay.io', 'spec.mappings[1].to[1] mirror.internal:5000'],
    );
  });

  test('a bad host is refused with the flag named, by check and serve alike; serve takes it in cluster mode only', () => {
    const cfg = file(
      'upstreams-ok.yaml',
      'apiVersion: pullmap.dev/v1alpha1\nkind: ClusterImageMap\nmetadata: {name: m}\nspec: {mappings: [{from: "docker.io/", to: "m.example/"}]}\n',
    );
    for (const args of [
      ['check', '--config', cfg],
      ['serve', '--no-tls', '--listen', '127.0.0.1:0', '--maps-from', 'cluster'],
    ]) {
      const r = pullmap([...args, '--cache-upstreams', 'docker.io,https://quay.io']);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /--cache-upstreams: "https:\/\/quay\.io" is not a registry host\[:port\]/);
    }
    const file_ = pullmap([
      'serve',
      '--no-tls',
      '--listen',
      '127.0.0.1:0',
      '--config',
      cfg,
      '--cache-upstreams',
      'docker.io',
    ]);
    assert.equal(file_.code, 2);
    assert.match(file_.stderr, /--cache-upstreams needs --maps-from cluster/);
    assert.match(
      pullmap(['serve', '--help']).stdout,
      /--cache-upstreams HOST,\.\.\. +cluster mode: the cache's upstream hosts/,
    );
  });
});

describe("the webhook's settings: --cache-address and --exclude-namespaces", () => {
  const CACHED = 'examples/story-003-cache-mutable-tags.yaml';
  const pod = (ns: string) =>
    `kind: Pod\nmetadata: {name: p, namespace: ${ns}}\nspec: {containers: [{name: a, image: "postgres:16.1"}]}\n`;

  test('explain and rewrite route through the cache address given, as serve would', () => {
    const explained = pullmap([
      'explain',
      '-o',
      'json',
      '-c',
      CACHED,
      '--cache-address',
      '10.0.0.40:30439',
      'postgres:16.1',
    ]);
    assert.equal(explained.code, 0, explained.stderr);
    assert.equal(JSON.parse(explained.stdout).mapped, '10.0.0.40:30439/docker.io/library/postgres:16.1');
    const rewritten = pullmap(
      ['rewrite', '-f', '-', '-c', CACHED, '--cache-address', '10.0.0.40:30439'],
      pod('shop'),
    );
    assert.match(rewritten.stdout, /image: "10\.0\.0\.40:30439\/docker\.io\/library\/postgres:16\.1"/);
  });

  test('an excluded namespace: rewrite leaves its images and says why, explain says the webhook would', () => {
    const kept = pullmap(['rewrite', '-f', '-', '-c', CACHED], pod('kube-system'));
    assert.equal(kept.code, 0, kept.stderr);
    assert.equal(kept.stdout, pod('kube-system'));
    assert.match(kept.stderr, /namespace kube-system is excluded/);
    const mapped = pullmap(
      ['rewrite', '-f', '-', '-c', CACHED, '--exclude-namespaces', 'pullmap-system'],
      pod('kube-system'),
    );
    assert.match(mapped.stdout, /image: "localhost:7439\/docker\.io\/library\/postgres:16\.1"/);
    assert.equal(mapped.stderr, '');
    const explained = pullmap(['explain', '-c', CACHED, '-n', 'kube-system', 'postgres:16.1']);
    assert.match(
      explained.stderr,
      /namespace kube-system is excluded, so the webhook leaves such a pod unchanged/,
    );
    const other = pullmap([
      'explain',
      '-c',
      CACHED,
      '-n',
      'kube-system',
      '--exclude-namespaces',
      'a,b',
      'postgres:16.1',
    ]);
    assert.doesNotMatch(other.stderr, /excluded/);
  });
});
