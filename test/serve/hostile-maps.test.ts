// Hostile map input against a real `pullmap serve --config` process (issue 21 §1 and §5): patterns that
// freeze a backtracking engine, and a config file that is broken, emptied, pointed at /dev/zero or
// kept broken while the webhook keeps running on the last good maps.
import assert from 'node:assert/strict';
import { mkdir, rename, symlink, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type MemoryCgroup, memoryCgroup } from '../harness/cgroup.ts';
import { execFileAsync, type TempDir, tempDir } from '../harness/process.ts';
import { PULLMAP, patchOf, podReview, startPullmap } from '../harness/pullmap.ts';

let dir: TempDir;
before(async () => {
  dir = await tempDir('hostile-maps');
});
after(async () => dir?.remove());

const mapYaml = (to: string, mutableTags: readonly string[] = []) =>
  `apiVersion: pullmap.dev/v1alpha1
kind: ClusterImageMap
metadata: { name: m }
spec:
  mappings:
    - { from: docker.io/, to: ${to} }
  mutableTags: ${JSON.stringify(mutableTags)}
`;

const imagesOf = (response: Record<string, any>): Record<string, unknown> =>
  Object.fromEntries(
    patchOf(response)
      .filter((p) => /^\/spec\/containers\/\d+\/image$/.test(p.path))
      .map((p) => [p.path, p.value]),
  );

describe('catastrophic mutableTags patterns in a served config', () => {
  it('decides pods with hostile 128-character tags and keeps answering /healthz', async () => {
    const config = join(dir.path, 'catastrophic.yaml');
    await writeFile(
      config,
      mapYaml('mirror.example/', ['(a|a)*', '\\w*\\w*\\w*\\w*\\w*\\w*\\w*\\w*!', '(x+x+)+y', '(a+)+b']),
    );
    const pm = await startPullmap({ args: ['--config', config] });
    try {
      const hostile = `${'a'.repeat(127)}-`;
      const { status, json } = await pm.review(
        podReview({
          hostile: `nginx:${hostile}`,
          chain: `nginx:${'x'.repeat(128)}`,
          kept: `nginx:${'a'.repeat(128)}`,
          plain: 'nginx:1.27',
        }),
      );
      assert.equal(status, 200);
      assert.equal(json.response.allowed, true);
      assert.deepEqual(imagesOf(json.response), {
        '/spec/containers/0/image': `mirror.example/library/nginx:${hostile}`,
        '/spec/containers/1/image': `mirror.example/library/nginx:${'x'.repeat(128)}`,
        '/spec/containers/3/image': 'mirror.example/library/nginx:1.27',
      });
      assert.equal((await pm.call('/healthz')).status, 200);
    } finally {
      await pm.stop();
    }
  });

  it('refuses a pattern RE2 cannot express in check and at start-up, naming the field', async () => {
    const config = join(dir.path, 'lookaround.yaml');
    await writeFile(config, mapYaml('mirror.example/', ['latest', '(?!rc)[a-z]+']));
    const check = await execFileAsync(process.execPath, [PULLMAP, 'check', '--config', config]).then(
      () => assert.fail('check accepted a lookaround'),
      (err: { code: number; stdout: string }) => err,
    );
    assert.equal(check.code, 1);
    assert.match(check.stdout, /spec\.mutableTags\[1\]: uses the lookaround \(\?! \.\.\.\)/);
    await assert.rejects(startPullmap({ args: ['--config', config] }), (err: Error) => {
      assert.match(
        err.message,
        /exited \(code 2\)[\s\S]*spec\.mutableTags\[1\]: uses the lookaround \(\?! \.\.\.\)/,
      );
      return true;
    });
  });
});

describe('a config file that goes bad while serving', () => {
  it('keeps the last good maps, says so in the metrics, re-reads only a changed file, and takes the fixed file', async () => {
    const config = join(dir.path, 'reload.yaml');
    const replace = async (text: string) => {
      await writeFile(`${config}.new`, text);
      await rename(`${config}.new`, config);
    };
    await replace(mapYaml('one.example/'));
    const pm = await startPullmap({ args: ['--config', config, '--reload-interval', '100ms'] });
    const image = async () =>
      imagesOf((await pm.review(podReview({ a: 'nginx:1.27' }))).json.response)['/spec/containers/0/image'];
    const failures = () => pm.metric('pullmap_config_reload_failures_total');
    const inForce = () => pm.metric('pullmap_config_file_in_force');
    const until = async (what: string, check: () => Promise<boolean>) => {
      for (let i = 0; i < 200; i++) {
        if (await check()) return;
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.fail(`never: ${what}`);
    };
    const errorLogs = () => pm.logs().filter((l) => l.msg === 'config not reloaded; the maps in force stay');
    try {
      assert.equal(await image(), 'one.example/library/nginx:1.27');
      assert.equal(await inForce(), 1);
      assert.equal(await failures(), 0);

      // Valid YAML, Invalid map: the old maps stay, the finding is logged with its field path.
      await replace(mapYaml('{ bad: 1 }'));
      await until('the invalid file is refused', async () => (await failures()) === 1);
      assert.equal(await inForce(), 0);
      assert.equal(await image(), 'one.example/library/nginx:1.27');
      assert.match(JSON.stringify(errorLogs().at(-1)?.findings), /spec\.mappings\[0\]\.to: must be a string/);
      // Unchanged, the file is not read again: the failure count stays while reviews go on.
      for (let i = 0; i < 5; i++) {
        await new Promise((r) => setTimeout(r, 150));
        assert.equal(await image(), 'one.example/library/nginx:1.27');
      }
      assert.equal(await failures(), 1);

      // Emptied in place (a non-atomic write caught half-way).
      await writeFile(config, '');
      await until('the empty file is refused', async () => (await failures()) === 2);
      assert.equal(await image(), 'one.example/library/nginx:1.27');
      assert.match(JSON.stringify(errorLogs().at(-1)), /holds no map objects/);

      // A symlink to /dev/zero is refused unread.
      await unlink(config);
      await symlink('/dev/zero', config);
      await until('the device is refused', async () => (await failures()) === 3);
      assert.match(JSON.stringify(errorLogs().at(-1)), /is a character device, not a regular file/);
      assert.equal(await image(), 'one.example/library/nginx:1.27');
      assert.equal((await pm.call('/healthz')).status, 200);

      // Over the size limit: refused unread, with the limit (renamed over the symlink).
      await replace(`${mapYaml('three.example/')}${'#'.repeat(5 * 1024 * 1024)}\n`);
      await until('the large file is refused', async () => (await failures()) === 4);
      assert.match(
        JSON.stringify(errorLogs().at(-1)),
        /is 524\d{4} bytes; a map file may have at most 4194304 bytes/,
      );
      assert.equal(await image(), 'one.example/library/nginx:1.27');

      // Fixed: the new maps apply and the file is in force again.
      await replace(mapYaml('two.example/'));
      await until('the fixed file applies', async () => (await image()) === 'two.example/library/nginx:1.27');
      assert.equal(await inForce(), 1);
      assert.equal(await failures(), 4);
    } finally {
      await pm.stop();
    }
  });
});

describe('several --config values and a directory of map files, served as one set', () => {
  const cmap = (name: string, from: string, to: string) =>
    `apiVersion: pullmap.dev/v1alpha1\nkind: ClusterImageMap\nmetadata: { name: ${name} }\nspec:\n  mappings:\n    - { from: ${from}, to: ${to} }\n`;

  it('watches files added, changed and removed; a bad file keeps the whole set in force and is named', async () => {
    const mapsDir = join(dir.path, 'maps.d');
    await mkdir(mapsDir);
    const put = async (path: string, text: string) => {
      await writeFile(`${path}.new`, text);
      await rename(`${path}.new`, path);
    };
    await put(join(mapsDir, 'a.yaml'), cmap('a', 'docker.io/', 'one.example/'));
    await put(join(mapsDir, 'b.yml'), cmap('b', 'quay.io/', 'q.example/'));
    // Not map files by the CLI's rule: a hidden file and another extension are never read.
    await writeFile(join(mapsDir, '.hidden.yaml'), 'kind: [unclosed');
    await writeFile(join(mapsDir, 'notes.txt'), 'not yaml: [');
    const extra = join(dir.path, 'extra.json');
    await put(
      extra,
      JSON.stringify({
        apiVersion: 'pullmap.dev/v1alpha1',
        kind: 'ClusterImageMap',
        metadata: { name: 'e' },
        spec: { mappings: [{ from: 'ghcr.io/', to: 'g.example/' }] },
      }),
    );
    const pm = await startPullmap({
      args: ['--config', mapsDir, '-c', extra, '--reload-interval', '100ms'],
    });
    const images = async () => {
      const patch = imagesOf(
        (
          await pm.review(
            podReview({
              a: 'nginx:1.27',
              b: 'quay.io/x/y:1',
              c: 'ghcr.io/x/y:1',
              d: 'registry.k8s.io/pause:3',
            }),
          )
        ).json.response,
      );
      return [0, 1, 2, 3].map((i) => patch[`/spec/containers/${i}/image`] ?? 'unchanged');
    };
    const failures = () => pm.metric('pullmap_config_reload_failures_total');
    const until = async (what: string, check: () => Promise<boolean>) => {
      for (let i = 0; i < 200; i++) {
        if (await check()) return;
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.fail(`never: ${what}`);
    };
    const lastError = () =>
      JSON.stringify(
        pm
          .logs()
          .filter((l) => l.msg === 'config not reloaded; the maps in force stay')
          .at(-1),
      );
    try {
      assert.deepEqual(await images(), [
        'one.example/library/nginx:1.27',
        'q.example/x/y:1',
        'g.example/x/y:1',
        'unchanged',
      ]);
      assert.equal(await pm.metric('pullmap_config_file_in_force'), 1);

      // A file added to the directory is taken.
      await put(join(mapsDir, 'c.yaml'), cmap('c', 'registry.k8s.io/', 'k.example/'));
      await until('the added file applies', async () => (await images())[3] === 'k.example/pause:3');

      // One file goes bad: the whole set in force stays (the others' maps too), the file is named.
      await put(join(mapsDir, 'b.yml'), cmap('b', 'quay.io/', '{ bad: 1 }'));
      await until('the bad file is refused', async () => (await failures()) === 1);
      assert.equal(await pm.metric('pullmap_config_file_in_force'), 0);
      assert.match(
        lastError(),
        /b\.yml:1: ClusterImageMap\/b is Invalid: spec\.mappings\[0\]\.to: must be a string/,
      );
      assert.deepEqual((await images()).slice(0, 2), ['one.example/library/nginx:1.27', 'q.example/x/y:1']);

      // A map given twice across files is refused with both places.
      await put(join(mapsDir, 'b.yml'), cmap('a', 'quay.io/', 'q2.example/'));
      await until('the duplicate is refused', async () => (await failures()) === 2);
      assert.match(lastError(), /b\.yml:1: ClusterImageMap\/a is given again \(first at [^)]*a\.yaml:1\)/);

      // A file that held maps, emptied in place (a write caught half-way): refused, naming it.
      await put(join(mapsDir, 'b.yml'), cmap('b', 'quay.io/', 'q2.example/'));
      await until('the fixed file applies', async () => (await images())[1] === 'q2.example/x/y:1');
      assert.equal(await pm.metric('pullmap_config_file_in_force'), 1);
      await writeFile(join(mapsDir, 'a.yaml'), '');
      await until('the emptied file is refused', async () => (await failures()) === 3);
      assert.match(lastError(), /a\.yaml holds no map objects/);
      assert.equal((await images())[0], 'one.example/library/nginx:1.27');

      // Over the per-file limit: refused unread, naming the file.
      await put(extra, `${' '.repeat(5 * 1024 * 1024)}{}`);
      await until('the large file is refused', async () => (await failures()) === 4);
      assert.match(lastError(), /extra\.json is 524\d{4} bytes; a map file may have at most 4194304 bytes/);

      // Removing a file from the directory is a change like any other: its maps go.
      await put(
        extra,
        JSON.stringify({
          apiVersion: 'pullmap.dev/v1alpha1',
          kind: 'ClusterImageMap',
          metadata: { name: 'e' },
          spec: { mappings: [{ from: 'ghcr.io/', to: 'g.example/' }] },
        }),
      );
      await unlink(join(mapsDir, 'a.yaml'));
      await unlink(join(mapsDir, 'c.yaml'));
      await until('the removed files stop applying', async () => (await images())[3] === 'unchanged');
      assert.deepEqual(await images(), ['unchanged', 'q2.example/x/y:1', 'g.example/x/y:1', 'unchanged']);
      assert.equal(await pm.metric('pullmap_config_file_in_force'), 1);
      assert.equal(await failures(), 4);
    } finally {
      await pm.stop();
    }
  });

  it('at start-up: an empty directory, stdin and a set over 16 MiB are refused, exit 2', async () => {
    const serve = (args: string[]) =>
      execFileAsync(process.execPath, [
        PULLMAP,
        'serve',
        '--no-tls',
        '--listen',
        '127.0.0.1:0',
        ...args,
      ]).then(
        () => assert.fail('serve started'),
        (err: { code: number; stderr: string }) => err,
      );
    const empty = join(dir.path, 'empty.d');
    await mkdir(empty);
    await writeFile(join(empty, 'README.md'), '# not a map file');
    let r = await serve(['--config', empty]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /empty\.d: the directory holds no \.yaml, \.yml or \.json file/);
    r = await serve(['--config', '-']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /serve --config cannot read stdin/);
    const big = join(dir.path, 'big.d');
    await mkdir(big);
    for (const n of [1, 2, 3, 4, 5])
      await writeFile(
        join(big, `${n}.yaml`),
        `${cmap(`m${n}`, `r${n}.example/`, 't.example/')}#${'x'.repeat(3.5 * 1024 * 1024)}\n`,
      );
    r = await serve(['--config', big]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /the map files together are over 16777216 bytes \(reached at [^)]*5\.yaml\)/);
  });
});

describe('a map file of tiny YAML values under the chart memory limit', () => {
  let cgroup: MemoryCgroup | undefined;
  let unavailable = '';
  before(async () => {
    const made = await memoryCgroup('pullmap-map-values', 256 * 1024 * 1024);
    if ('unavailable' in made) unavailable = made.unavailable;
    else cgroup = made;
  });
  after(async () => cgroup?.remove());

  it('refuses it before parsing (YAML costs about 1 KB of memory per value), keeping the last good maps', async (t) => {
    const config = join(dir.path, 'values.yaml');
    const replace = async (text: string) => {
      await writeFile(`${config}.new`, text);
      await rename(`${config}.new`, config);
    };
    await replace(mapYaml('one.example/'));
    const pm = await startPullmap({
      args: ['--config', config, '--reload-interval', '100ms'],
      ...(cgroup ? { wrap: cgroup.wrap } : {}),
    });
    try {
      // A valid map with 4 MiB of `kN: 1` under a field: within the file size limit, ~800,000 values.
      const lines: string[] = [];
      for (let i = 0, size = 0; size < 4 * 1024 * 1024 - 1024; i++) {
        lines.push(`  k${i}: 1\n`);
        size += lines[i]!.length;
      }
      await replace(`${mapYaml('two.example/')}junk:\n${lines.join('')}`);
      for (let i = 0; (await pm.metric('pullmap_config_reload_failures_total')) !== 1; i++) {
        assert.ok(
          i < 600 && !pm.daemon.exited(),
          `the file is never refused:\n${pm.daemon.output().slice(-2000)}`,
        );
        await new Promise((r) => setTimeout(r, 100));
      }
      const refused = pm.logs().filter((l) => l.msg === 'config not reloaded; the maps in force stay');
      assert.match(JSON.stringify(refused.at(-1)), /values\.yaml: holds over 100000 YAML values/);
      const { json } = await pm.review(podReview({ a: 'nginx:1.27' }));
      assert.equal(imagesOf(json.response)['/spec/containers/0/image'], 'one.example/library/nginx:1.27');
      assert.equal((await pm.call('/healthz')).status, 200);
      // check says the same as serve: unusable input, exit 2.
      const check = await execFileAsync(process.execPath, [PULLMAP, 'check', '--config', config]).then(
        () => assert.fail('check accepted the file'),
        (err: { code: number; stderr: string }) => err,
      );
      assert.equal(check.code, 2);
      assert.match(check.stderr, /values\.yaml: holds over 100000 YAML values/);
      if (!cgroup) return t.skip(unavailable);
      assert.equal(await cgroup.oomKills(), 0);
      t.diagnostic(`highest memory use: ${((await cgroup.maxUsage()) / 2 ** 20).toFixed(0)} MiB`);
    } finally {
      await pm.stop();
    }
  });
});
