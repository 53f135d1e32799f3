// Starting and stopping the real daemons that integration tests use (registry, etcd, apiserver, ...):
// on loopback, in temporary directories, stopped by PID, with their output kept for failure messages.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { promisify } from 'node:util';

export const execFileAsync = promisify(execFile);

/** Fails with an actionable message when a binary the tests need is not installed. */
export function requireCommand(name: string): string {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not in this directory
    }
  }
  throw new Error(
    `${name} is not installed; run "bash scripts/test-prereqs.sh" (npm test does) or install the packages it lists`,
  );
}

/** A port the kernel just handed out on 127.0.0.1 (for daemons that cannot bind port 0 themselves). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });
}

export interface TempDir {
  readonly path: string;
  remove(): Promise<void>;
}

export async function tempDir(prefix: string): Promise<TempDir> {
  const path = await mkdtemp(join(tmpdir(), `pullmap-${prefix}-`));
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}

export interface DaemonOptions {
  /** Name used in error messages. */
  name: string;
  command: string;
  args: readonly string[];
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Resolves true once the daemon serves; polled until it does or the timeout passes. */
  ready: (daemon: Daemon) => Promise<boolean>;
  readyTimeoutMs?: number;
  /** Sees every chunk of stdout and stderr, for callers that parse logs beyond the kept tail. */
  onOutput?: (text: string, stream: 'stdout' | 'stderr') => void;
}

export interface Daemon {
  readonly name: string;
  readonly pid: number;
  /** stdout and stderr so far (the last 256 KiB). */
  output(): string;
  /** Whether the process has exited. */
  exited(): boolean;
  /** SIGTERM, then SIGKILL after a grace period; resolves once the process is gone. */
  stop(graceMs?: number): Promise<void>;
}

const OUTPUT_LIMIT = 256 * 1024;

/** Starts a daemon and waits until `ready` says it serves; on failure the error carries its output. */
export async function startDaemon(options: DaemonOptions): Promise<Daemon> {
  const child: ChildProcess = spawn(options.command, options.args, {
    env: options.env ?? process.env,
    cwd: options.cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  let exitCode: number | null | undefined;
  const exitedPromise = new Promise<void>((resolve) => {
    child.on('exit', (code, signal) => {
      exitCode = code ?? (signal ? -1 : 0);
      resolve();
    });
    child.on('error', (err) => {
      output += `\n[spawn error] ${err.message}`;
      exitCode = -1;
      resolve();
    });
  });
  const collect =
    (stream: 'stdout' | 'stderr') =>
    (chunk: Buffer): void => {
      const text = chunk.toString('utf8');
      options.onOutput?.(text, stream);
      output += text;
      if (output.length > OUTPUT_LIMIT) output = output.slice(-OUTPUT_LIMIT);
    };
  child.stdout?.on('data', collect('stdout'));
  child.stderr?.on('data', collect('stderr'));

  const daemon: Daemon = {
    name: options.name,
    pid: child.pid ?? -1,
    output: () => output,
    exited: () => exitCode !== undefined,
    async stop(graceMs = 5000) {
      if (exitCode !== undefined) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exitedPromise;
      clearTimeout(timer);
    },
  };

  const deadline = Date.now() + (options.readyTimeoutMs ?? 30_000);
  for (;;) {
    if (exitCode !== undefined) {
      throw new Error(
        `${options.name} exited (code ${exitCode}) before it was ready:\n${output.slice(-4000)}`,
      );
    }
    let ok = false;
    try {
      ok = await options.ready(daemon);
    } catch {
      ok = false;
    }
    if (ok) return daemon;
    if (Date.now() > deadline) {
      await daemon.stop(1000);
      throw new Error(
        `${options.name} was not ready within ${options.readyTimeoutMs ?? 30_000} ms:\n${output.slice(-4000)}`,
      );
    }
    await new Promise((r) => setTimeout(r, 25));
  }
}
