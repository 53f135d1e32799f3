// Hostile map input against a real `pullmap serve --config` process (issue 21 §1 and §5): patterns that
// freeze a backtracking engine, and a config file that is broken, emptied, pointed at /dev/zero or
// kept broken while the webhook keeps running on the last good maps.
import assert from 'node:assert/strict';
import { rename, symlink, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
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
