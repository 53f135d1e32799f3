// The CLI's inputs when they are hostile or absurd (issue 21): sizes are bounded before reading, an alias
// bomb is a located error, malformed YAML is exit 2 everywhere, and text output never replays terminal
// control or bidi characters it was given. The built bundle in a child process, as users run it.
import assert from 'node:assert/strict';
import { closeSync, ftruncateSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { runCli as pullmap, scratch } from './harness/cli.ts';

const dir = scratch('cli-inputs');
const file = dir.file;

const MAP = `apiVersion: pullmap.dev/v1alpha1
kind: ClusterImageMap
metadata: {name: hub}
spec:
  mappings: [{from: "docker.io/", to: "mirror.local/hub/"}]
`;
// Six levels of ten aliases: a million nodes if expanded.
const BOMB = `a: &a ["x","x","x","x","x","x","x","x","x","x"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]
`;
const noStack = (stderr: string) => assert.doesNotMatch(stderr, /\n\s+at .*:\d+:\d+/);

describe('input size limits', () => {
  test('a regular file over the limit is refused by its size, before it is read', () => {
    // 100 MB, sparse: only stat could tell its size without reading it.
    const big = join(dir.path, 'big.yaml');
    const fd = openSync(big, 'w');
    ftruncateSync(fd, 100 * 1024 * 1024);
    closeSync(fd);
    for (const args of [
      ['check', '--config', big],
      ['explain', '--config', big, 'nginx'],
      ['rewrite', '-f', big, '--config', file('map.yaml', MAP)],
    ]) {
      const r = pullmap(args);
      assert.equal(r.code, 2, `${args[0]}: ${r.stderr}`);
      assert.match(
        r.stderr,
        /big\.yaml is 100 MiB, over the input limit of 16 MiB; raise it with --max-input-bytes/,
        args[0],
      );
      noStack(r.stderr);
    }
  });
  test('/dev/zero (no size, no end) is read only up to the limit, then refused', () => {
    const r = pullmap(['check', '--config', '/dev/zero']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^pullmap: \/dev\/zero is larger than the input limit of 16 MiB/);
    const small = pullmap([
      'rewrite',
      '-f',
      '/dev/zero',
      '--config',
      file('map2.yaml', MAP),
      '--max-input-bytes',
      '1Ki',
    ]);
    assert.equal(small.code, 2);
    assert.match(small.stderr, /\/dev\/zero is larger than the input limit of 1 KiB/);
  });
  test('stdin over the limit is refused; --max-input-bytes raises the limit', () => {
    const manifest = `kind: Pod\nspec: {containers: [{name: a, image: "nginx:1"}]}\n# ${'x'.repeat(4096)}\n`;
    const cfg = file('map3.yaml', MAP);
    const refused = pullmap(['rewrite', '-f', '-', '--config', cfg, '--max-input-bytes', '4Ki'], manifest);
    assert.equal(refused.code, 2);
    assert.equal(refused.stdout, '');
    assert.match(refused.stderr, /stdin is larger than the input limit of 4 KiB/);
    const raised = pullmap(['rewrite', '-f', '-', '--config', cfg, '--max-input-bytes', '8Ki'], manifest);
    assert.equal(raised.code, 0, raised.stderr);
    assert.match(raised.stdout, /image: "mirror\.local\/hub\/library\/nginx:1"/);
    assert.match(
      pullmap(['check', '-c', cfg, '--max-input-bytes', 'lots']).stderr,
      /--max-input-bytes "lots" is not a size/,
    );
  });
  test('several --config files share one limit', () => {
    const a = file('share-a.yaml', `${MAP}# ${'x'.repeat(700)}\n`);
    const b = file('share-b.yaml', `${MAP.replaceAll('hub', 'hub2')}# ${'x'.repeat(700)}\n`);
    assert.equal(pullmap(['check', '-c', a, '--max-input-bytes', '1Ki']).code, 0);
    const r = pullmap(['check', '-c', a, '-c', b, '--max-input-bytes', '1Ki']);
    assert.equal(r.code, 2);
    assert.match(
      r.stderr,
      /the --config inputs together are over the input limit of 1 KiB \(reached at .*share-b\.yaml\)/,
    );
  });
});

describe('malformed and hostile YAML', () => {
  test('rewrite -f with an alias bomb: exit 2 with file:line, no ReferenceError', () => {
    const manifest = file('bomb.yaml', `${BOMB}kind: Pod\nspec: {containers: [{name: a, image: nginx}]}\n`);
    const r = pullmap(['rewrite', '-f', manifest, '--config', file('map4.yaml', MAP)]);
    assert.equal(r.code, 2);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /bomb\.yaml:1:1: YAML document 1 cannot be read: Excessive alias count/);
    assert.doesNotMatch(r.stderr, /ReferenceError/);
    noStack(r.stderr);
    const config = pullmap(['check', '--config', file('bomb-config.yaml', BOMB)]);
    assert.equal(config.code, 2);
    assert.match(config.stderr, /bomb-config\.yaml:1:1: YAML document 1 cannot be read/);
  });
  test('check exits 2 (unusable input), not 1, on malformed YAML', () => {
    const r = pullmap(['check', '--config', file('malformed.yaml', `${MAP}---\nkind: [\n`)]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /malformed\.yaml:\d+:\d+: YAML document 2 is malformed/);
    assert.match(r.stdout, /the input is unusable: 1 error above/);
  });
});

describe('map fields the API server would refuse, or that are too large', () => {
  test('check names an UPPER_case name with a name that would do, and a duration too large (not "not a duration")', () => {
    const cfg = file(
      'names.yaml',
      `apiVersion: pullmap.dev/v1alpha1
kind: ClusterImageMap
metadata: {name: UPPER_case}
spec:
  mappings: [{from: "docker.io/", to: "mirror.local/hub/"}]
  existence: {positiveTTL: 1000000h, negativeTTL: 1 minute}
`,
    );
    const r = pullmap(['check', '--config', cfg]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stdout, /metadata\.name: is not a valid Kubernetes name: .*\(such as "upper-case"\)/);
    assert.match(r.stdout, /spec\.existence\.positiveTTL: is too large; the maximum is 8784h \(366 days\)/);
    assert.match(r.stdout, /spec\.existence\.negativeTTL: is not a duration; write it like "90s"/);
  });
});

describe('terminal escapes and bidi controls are escaped in text output', () => {
  // OSC retitling the terminal, a colour change, and a right-to-left override.
  const hostile = 'nginx\u001b]0;owned\u0007\u001b[31m\u202e:1';
  const raw = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;
  test('explain prints each control character as \\u{XXXX}', () => {
    const r = pullmap(['explain', '--config', file('map5.yaml', MAP), hostile]);
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stdout, raw);
    assert.match(
      r.stdout,
      /^nginx\\u\{001B\}\]0;owned\\u\{0007\}\\u\{001B\}\[31m\\u\{202E\}:1\n {2}invalid: /,
    );
  });
  test('check and rewrite escape what they quote from maps and manifests', () => {
    const cfg = file(
      'hostile-map.yaml',
      `apiVersion: pullmap.dev/v1alpha1
kind: ClusterImageMap
metadata: {name: hub}
spec:
  mappings: [{from: "docker.io/", to: "mirror\\u001b[2J/\\u202ehub/"}]
`,
    );
    const r = pullmap(['check', '--config', cfg]);
    assert.equal(r.code, 1);
    // JSON quoting already escapes C0 controls (\u001b); bidi controls it leaves raw are escaped too.
    assert.match(r.stdout, /"mirror\\u001b\[2J\/\\u\{202E\}hub\/"/);
    assert.doesNotMatch(r.stdout + r.stderr, raw);
    const manifest = file(
      'hostile-pod.yaml',
      `kind: Pod\nspec: {containers: [{name: a, image: "nginx\\u001b[2J"}]}\n`,
    );
    const w = pullmap(['rewrite', '-f', manifest, '--config', file('map6.yaml', MAP)]);
    assert.equal(w.code, 0, w.stderr);
    assert.match(
      w.stderr,
      /warning: Pod\/\? spec\.containers\[0\]: "nginx\\u001b\[2J" is not a valid image reference/,
    );
    assert.doesNotMatch(w.stderr, raw);
  });
});
