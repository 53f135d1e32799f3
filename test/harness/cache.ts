// The pullmap cache for tests: in-process (startTestCache) or as the real `pullmap cache` process
// (spawnCache), plus the real pull clients tests drive through it: skopeo and containerd's ctr.
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { stringify } from 'yaml';
import { checkCacheConfig } from '../../src/cache/config.ts';
import { type CacheInstance, startCache } from '../../src/cache/index.ts';
import type { ProxyConfig } from '../../src/core/proxy.ts';
import { createLogger } from '../../src/observe/log.ts';
import {
  type Daemon,
  execFileAsync,
  freePort,
  requireCommand,
  startDaemon,
  type TempDir,
  tempDir,
} from './process.ts';

export interface TestCache {
  /** "127.0.0.1:PORT" */
  readonly host: string;
  readonly url: string;
  /** The store directory (kept by `stop`, removed by `close`). */
  readonly storeDir: string;
  readonly instance: CacheInstance;
  /** Log lines written so far. */
  logs(): string;
  /** Stops serving, keeps the store. */
  stop(): Promise<void>;
  close(): Promise<void>;
}

/** The config object as YAML would hold it; `storage.dir` and `listen` are filled in when missing. */
export type CacheConfigInput = Record<string, unknown> & { upstreams: unknown[] };

async function configFor(
  input: CacheConfigInput,
  dir: string,
  port: number,
): Promise<Record<string, unknown>> {
  const storage = { dir: join(dir, 'store'), ...((input['storage'] as object | undefined) ?? {}) };
  return { listen: `127.0.0.1:${port}`, ...input, storage };
}

export async function startTestCache(
  input: CacheConfigInput,
  options: { now?: () => number; proxy?: ProxyConfig } = {},
): Promise<TestCache> {
  const temp = await tempDir('cache');
  const raw = await configFor(input, temp.path, 0);
  const checked = checkCacheConfig(raw, 'test config');
  if (!checked.ok) throw new Error(checked.errors.join('\n'));
  let text = '';
  const out = new Writable({
    write(chunk: Buffer, _encoding, done) {
      if (text.length < 1 << 20) text += chunk.toString('utf8');
      done();
    },
  });
  // PULLMAP_TEST_LOG=1 shows the cache's log while debugging a test.
  const log = createLogger({ level: 'debug', out: process.env['PULLMAP_TEST_LOG'] ? process.stderr : out });
  const instance = await startCache(checked.config, log, { now: options.now, proxy: options.proxy });
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await instance.close();
  };
  return {
    host: instance.address,
    url: `http://${instance.address}`,
    storeDir: checked.config.storage.dir as string,
    instance,
    logs: () => text,
    stop,
    close: async () => {
      await stop();
      await temp.remove();
    },
  };
}

export interface CacheProcess {
  readonly host: string;
  readonly daemon: Daemon;
  readonly configPath: string;
  /** The store directory from its config. */
  readonly storeDir: string;
}

const ROOT = join(import.meta.dirname, '..', '..');
const MAIN = join(ROOT, 'src', 'cli', 'main.ts');
const BUNDLE = join(ROOT, 'dist', 'pullmap.js');

/**
 * The real `pullmap cache` command in its own process, on a fresh port; `dir` holds config and store.
 * `bundle` runs the built dist/pullmap.js (what ships) instead of the sources; a path runs that bundle
 * (bench/cache-ab.ts compares two builds).
 */
export async function spawnCache(
  input: CacheConfigInput,
  dir: string,
  options: { bundle?: boolean | string; nodeFlags?: readonly string[]; env?: NodeJS.ProcessEnv } = {},
): Promise<CacheProcess> {
  const port = await freePort();
  const config = await configFor(input, dir, port);
  const configPath = join(dir, `cache-${port}.yaml`);
  await writeFile(configPath, stringify(config));
  const host = `127.0.0.1:${port}`;
  const daemon = await startDaemon({
    name: 'pullmap cache',
    command: process.execPath,
    args: [
      ...(options.nodeFlags ?? []),
      typeof options.bundle === 'string' ? options.bundle : options.bundle ? BUNDLE : MAIN,
      'cache',
      '--config',
      configPath,
    ],
    ...(options.env ? { env: options.env } : {}),
    ready: async () => (await fetch(`http://${host}/healthz`)).ok,
  });
  return { host, daemon, configPath, storeDir: (config['storage'] as { dir: string }).dir };
}

/** `skopeo copy` of `ref` (plain HTTP) into an OCI layout; returns the layout directory. */
/**
 * Waits until a cache has no download under way: a client has a blob's last byte before its last
 * writes, fsync and rename (or upload) are done. `metrics` renders the cache's /metrics text.
 */
export async function untilNoDownloads(
  metrics: () => string | Promise<string>,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!/^pullmap_cache_downloads_in_flight 0$/m.test(await metrics())) {
    if (Date.now() > deadline) throw new Error(`downloads still under way after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export async function skopeoCopy(ref: string, into: string, extra: readonly string[] = []): Promise<string> {
  const skopeo = requireCommand('skopeo');
  const dest = join(into, `oci-${Math.random().toString(36).slice(2)}`);
  await execFileAsync(
    skopeo,
    ['copy', '--retry-times', '0', '--src-tls-verify=false', ...extra, `docker://${ref}`, `oci:${dest}:x`],
    {
      timeout: 60_000,
    },
  );
  return dest;
}

/** Unpacks the single-platform image of an OCI layout and returns its files (path → content). */
export async function unpackOci(layout: string): Promise<Record<string, string>> {
  const blob = (digest: string): string => join(layout, 'blobs', ...digest.split(':'));
  const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as {
    manifests: { digest: string }[];
  };
  const manifest = JSON.parse(await readFile(blob(index.manifests[0]?.digest ?? ''), 'utf8')) as {
    layers: { digest: string }[];
  };
  const root = join(layout, 'rootfs');
  await mkdir(root, { recursive: true });
  for (const layer of manifest.layers) await execFileAsync('tar', ['-xzf', blob(layer.digest), '-C', root]);
  return readTree(root);
}

export async function readTree(root: string, prefix = ''): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const entry of await readdir(join(root, prefix), { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isDirectory()) Object.assign(out, await readTree(root, rel));
    else if (entry.isFile()) out[rel] = await readFile(join(root, rel), 'utf8');
  }
  return out;
}

export interface Containerd {
  readonly address: string;
  readonly dir: string;
  /** Runs ctr against this containerd; rejects with its output on failure. */
  ctr(args: readonly string[]): Promise<string>;
  close(): Promise<void>;
}

export async function startContainerd(): Promise<Containerd> {
  const binary = requireCommand('containerd');
  const ctrBinary = requireCommand('ctr');
  const temp: TempDir = await tempDir('containerd');
  const dir = temp.path;
  const address = join(dir, 'containerd.sock');
  const configPath = join(dir, 'config.toml');
  await writeFile(
    configPath,
    `version = 2\nroot = "${dir}/root"\nstate = "${dir}/state"\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n[grpc]\n  address = "${address}"\n`,
  );
  const ctr = async (args: readonly string[]): Promise<string> => {
    try {
      const { stdout, stderr } = await execFileAsync(ctrBinary, ['--address', address, ...args], {
        timeout: 60_000,
      });
      return stdout + stderr;
    } catch (err) {
      const e = err as { stdout?: string; stderr?: string; message: string };
      throw new Error(`ctr ${args.join(' ')} failed: ${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}`);
    }
  };
  let daemon: Daemon;
  try {
    daemon = await startDaemon({
      name: 'containerd',
      command: binary,
      args: ['--config', configPath],
      ready: async () => {
        await execFileAsync(ctrBinary, ['--address', address, 'version'], { timeout: 5000 });
        return true;
      },
    });
  } catch (err) {
    await temp.remove();
    throw err;
  }
  return {
    address,
    dir,
    ctr,
    close: async () => {
      await daemon.stop();
      await temp.remove();
    },
  };
}

/** A hosts.toml directory making `cache` the mirror of `upstream` (a miss goes nowhere: closed port). */
export async function mirrorHostsDir(
  dir: string,
  upstream: string,
  cache: string,
  header?: string,
): Promise<string> {
  const hostsDir = join(dir, `hosts-${Math.random().toString(36).slice(2)}`);
  await mkdir(join(hostsDir, upstream), { recursive: true });
  await writeFile(
    join(hostsDir, upstream, 'hosts.toml'),
    `server = "http://127.0.0.1:1"\n\n[host."http://${cache}"]\n  capabilities = ["pull", "resolve"]\n${header ? `  [host."http://${cache}".header]\n    Authorization = "${header}"\n` : ''}`,
  );
  return hostsDir;
}

type Closable = { close(): Promise<void> } | { remove(): Promise<void> };

/** Stops what a test started, in the order given; ones a failed `before` never made are skipped. */
export async function closeAll(...things: readonly (Closable | undefined)[]): Promise<void> {
  for (const thing of things) {
    if (thing === undefined) continue;
    await ('close' in thing ? thing.close() : thing.remove());
  }
}
