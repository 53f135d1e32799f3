// The fast test tier (`npm run test:fast`): every test file that starts no external program: core,
// the pure units, and in-process servers on loopback. Chosen by reading each file, so a new or moved
// test joins the tier by itself; `--list` prints the files. The full suite (`npm test`) runs the rest.
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';

const ROOT = join(import.meta.dirname, '..');
/** What starts a program (a daemon from test/harness, a child process, the built CLI): not fast. */
const STARTS_A_PROGRAM =
  /\b(?:start[A-Z]\w*|spawn\w*|makePki|requireCommand|execFile\w*|kubeApiserverBinary)\s*\(|dist\/pullmap/;

export function fastTests(): string[] {
  return readdirSync(join(ROOT, 'test'), { recursive: true, encoding: 'utf8' })
    .filter((p) => p.endsWith('.test.ts'))
    .map((p) => relative(ROOT, join(ROOT, 'test', p)).replaceAll('\\', '/'))
    .filter((p) => !STARTS_A_PROGRAM.test(readFileSync(join(ROOT, p), 'utf8')))
    .sort();
}

if (import.meta.main) {
  const files = fastTests();
  if (process.argv.includes('--list')) console.log(files.join('\n'));
  else {
    // One process for all: the tier is mostly pure code, where starting 30 processes would cost more
    // than the tests.
    // Tests whose name says "linear" measure CPU time on large inputs (about 10 s): npm test runs them.
    const args = [
      '--test',
      '--test-isolation=none',
      '--test-skip-pattern=linear',
      ...process.argv.slice(2),
      ...files,
    ];
    process.exitCode = spawnSync(process.execPath, args, { stdio: 'inherit', cwd: ROOT }).status ?? 1;
  }
}
