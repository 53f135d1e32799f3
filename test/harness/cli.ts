// The built CLI (dist/pullmap.js) in a child process, as users run it, or the CLI's `run` in this
// process (for tests that act while a command runs); and a scratch folder of input files for a test
// file's cases.

import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
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

/**
 * Runs `pullmap ARGS` in this process through the CLI's own `run`, with `stdin` as its input and `env`
 * as its environment (none by default), collecting what it writes.
 */
export async function runInProcess(
  args: readonly string[],
  options: { stdin?: string; env?: Record<string, string> } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const { run } = await import('../../src/cli/run.ts');
  const collect = (into: Buffer[]): PassThrough => {
    const stream = new PassThrough();
    stream.on('data', (chunk: Buffer) => into.push(chunk));
    return stream;
  };
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const stdin = new PassThrough();
  stdin.end(options.stdin ?? '');
  const code = await run([...args], {
    stdin,
    stdout: collect(out),
    stderr: collect(err),
    env: options.env ?? {},
  });
  return { code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() };
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
