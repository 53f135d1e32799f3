// The helm binary for chart tests: env HELM, else the one scripts/go-tool.sh cached (never built from a
// test). Each run gets its own Helm home directories, so tests neither read nor write ~/.config/helm.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFileAsync, type TempDir, tempDir } from './process.ts';

const scriptPath = fileURLToPath(new URL('../../scripts/go-tool.sh', import.meta.url));

/** The chart in this repository. */
export const CHART = fileURLToPath(new URL('../../deploy/helm/pullmap', import.meta.url));

/** The helm binary: env HELM, else the cached build of scripts/go-tool.sh helm. */
export async function helmBinary(): Promise<string> {
  const fromEnv = process.env.HELM;
  if (fromEnv) {
    if (!existsSync(fromEnv)) throw new Error(`HELM=${fromEnv} does not exist`);
    return fromEnv;
  }
  try {
    const { stdout } = await execFileAsync('bash', [scriptPath, 'helm', '--cached-only']);
    return stdout.trim();
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? String(err);
    throw new Error(`no helm binary: set HELM or run "bash scripts/go-tool.sh helm" once\n${stderr}`);
  }
}

export interface HelmResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface Helm {
  readonly binary: string;
  /** Runs helm; resolves with its exit code and output (never rejects on a non-zero exit). */
  run(args: readonly string[], options?: { kubeconfig?: string }): Promise<HelmResult>;
  /** Runs helm and rejects with its stderr unless it exits 0; resolves with stdout. */
  ok(args: readonly string[], options?: { kubeconfig?: string }): Promise<string>;
  /** Removes the Helm home directories. */
  stop(): Promise<void>;
}

export async function startHelm(): Promise<Helm> {
  const binary = await helmBinary();
  const home: TempDir = await tempDir('helm');
  const env = {
    ...process.env,
    HELM_CACHE_HOME: join(home.path, 'cache'),
    HELM_CONFIG_HOME: join(home.path, 'config'),
    HELM_DATA_HOME: join(home.path, 'data'),
    KUBECONFIG: join(home.path, 'no-kubeconfig'),
  };
  const run = (args: readonly string[], options: { kubeconfig?: string } = {}): Promise<HelmResult> =>
    new Promise((resolve) => {
      execFile(
        binary,
        [...(options.kubeconfig ? ['--kubeconfig', options.kubeconfig] : []), ...args],
        { env, maxBuffer: 64 * 1024 * 1024, timeout: 120_000 },
        (err, stdout, stderr) => {
          const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
          resolve({ code, stdout, stderr });
        },
      );
    });
  return {
    binary,
    run,
    async ok(args, options) {
      const result = await run(args, options);
      if (result.code !== 0)
        throw new Error(`helm ${args.join(' ')} failed (${result.code}):\n${result.stderr}`);
      return result.stdout;
    },
    stop: () => home.remove(),
  };
}
