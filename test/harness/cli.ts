// The built CLI (dist/pullmap.js) in a child process, as users run it, and a scratch folder of input
// files for a test file's cases.

import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before } from 'node:test';
import { type TempDir, tempDir } from './process.ts';
import { PULLMAP } from './pullmap.ts';

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `pullmap ARGS` to completion with `input` on stdin. */
export function runCli(
  args: readonly string[],
  input?: string | Buffer,
  options: { timeoutMs?: number; maxBuffer?: number } = {},
): CliResult {
  const r = spawnSync(process.execPath, [PULLMAP, ...args], {
    input,
    encoding: 'utf8',
    timeout: options.timeoutMs ?? 30_000,
    maxBuffer: options.maxBuffer ?? 64 * 1024 * 1024,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

export interface Scratch {
  /** The folder (valid once the test file's `before` hooks ran). */
  readonly path: string;
  /** Writes `text` to `name` in the folder and returns its path. */
  file(name: string, text: string | Buffer): string;
}

/** A temporary folder made before this test file's tests and removed after them. */
export function scratch(prefix: string): Scratch {
  let dir: TempDir | undefined;
  before(async () => {
    dir = await tempDir(prefix);
  });
  after(() => dir?.remove());
  const path = (): string => {
    if (dir === undefined) throw new Error('scratch: used before the before() hook ran');
    return dir.path;
  };
  return {
    get path() {
      return path();
    },
    file(name, text) {
      const p = join(path(), name);
      writeFileSync(p, text);
      return p;
    },
  };
}
