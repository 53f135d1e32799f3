// The CLI's memory on the largest inputs it accepts, in a memory cgroup (test-infra.md §9) where the
// machine allows one: the built bundle in a child process, as users run it.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { memoryCgroup } from '../harness/cgroup.ts';
import { scratch } from '../harness/cli.ts';
import { PULLMAP } from '../harness/pullmap.ts';

const dir = scratch('cli-memory');
const file = dir.file;

const MAP = `apiVersion: pullmap.dev/v1alpha1
kind: ClusterImageMap
metadata: {name: hub}
spec:
  mappings: [{from: "docker.io/", to: "mirror.local/hub/"}]
`;

test('rewrite -f reads a stream one document at a time: 8 MiB of small objects in 256 MiB', async (t) => {
  // Helm output is many small documents; building them all before reading the first took 1.1 GB for
  // 16 MiB of them here, and over this limit for these 8.
  const docs: string[] = [];
  let size = 0;
  for (let i = 0; size < 8 * 1024 * 1024; i++) {
    const doc =
      i % 1000 === 0
        ? `---\nkind: Pod\nmetadata: {name: p${i}}\nspec: {containers: [{name: a, image: "nginx:${i}"}]}\n`
        : `---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c${i}}\ndata: {a: b}\n`;
    docs.push(doc);
    size += doc.length;
  }
  const input = file('stream.yaml', docs.join(''));
  const cgroup = await memoryCgroup('pullmap-rewrite-stream', 256 * 1024 * 1024);
  if ('unavailable' in cgroup) return t.skip(cgroup.unavailable);
  try {
    const run = cgroup.wrap(process.execPath, [
      PULLMAP,
      'rewrite',
      '-f',
      input,
      '--config',
      file('map-s.yaml', MAP),
    ]);
    const r = spawnSync(run.command, run.args, {
      encoding: 'utf8',
      maxBuffer: 64 * 1024 * 1024,
      timeout: 300_000,
    });
    assert.equal(await cgroup.oomKills(), 0, 'killed at the memory limit');
    assert.equal(r.status, 0, r.stderr);
    const expected = docs
      .join('')
      .replace(/image: "nginx:(\d+)"/g, 'image: "mirror.local/hub/library/nginx:$1"');
    assert.ok(r.stdout === expected, 'the output is the input with each Pod image mapped');
    t.diagnostic(`highest memory use: ${((await cgroup.maxUsage()) / 2 ** 20).toFixed(0)} MiB`);
  } finally {
    await cgroup.remove();
  }
});
