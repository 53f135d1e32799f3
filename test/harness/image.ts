// The pullmap container image for tests: built by scripts/build-image.sh at most once per source state
// (a path keyed by the commit and the content of what goes into the image), then read from its OCI
// archive. Other tests (the real node) import the same archive into their containerd.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFileAsync, type TempDir, tempDir } from './process.ts';

const repo = fileURLToPath(new URL('../..', import.meta.url));
export const buildImageScript = join(repo, 'scripts/build-image.sh');
/** The repository deploy/'s manifests name; `ctr images import --base-name` it to run them unchanged. */
export const imageRepository = 'ghcr.io/pullmap/pullmap';

export interface ImageConfig {
  User?: string;
  Env?: string[];
  Entrypoint?: string[];
  Cmd?: string[];
  WorkingDir?: string;
  Labels?: Record<string, string>;
}

export interface PullmapImage {
  /** The OCI archive (oci-archive: for skopeo, `ctr images import` for containerd). */
  readonly archive: string;
  /** The tag inside the archive (org.opencontainers.image.ref.name): package.json's version. */
  readonly tag: string;
  /** The image manifest's digest: what a registry or containerd reports for the image. */
  readonly digest: string;
}

/**
 * Runs the build script; resolves with the archive path it printed (its only stdout line). With `lock`,
 * waits for that lock file first and does not build if `reuse` exists by then (another process built it).
 */
export async function runBuildImage(
  args: readonly string[],
  options: { env?: NodeJS.ProcessEnv; lock?: string; reuse?: string } = {},
): Promise<string> {
  if (process.getuid?.() !== 0) {
    throw new Error('scripts/build-image.sh needs root (mmdebstrap, file owners)');
  }
  const [file, ...argv] = options.lock
    ? [
        'flock',
        options.lock,
        'bash',
        '-c',
        'reuse=$1; shift; if [[ -e $reuse ]]; then echo "$reuse"; else exec bash "$0" "$@"; fi',
        buildImageScript,
        options.reuse ?? '',
        ...args,
      ]
    : ['bash', buildImageScript, ...args];
  try {
    const { stdout } = await execFileAsync(file!, argv, {
      cwd: repo,
      env: options.env ?? process.env,
      timeout: 15 * 60_000,
      maxBuffer: 16 * 1024 * 1024,
    });
    return stdout.trim();
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`scripts/build-image.sh ${args.join(' ')} failed: ${e.message}\n${e.stderr ?? ''}`);
  }
}

/** sha256 over the commit and every file that goes into the image (sources, examples, scripts, lockfile). */
async function sourceKey(): Promise<string> {
  const hash = createHash('sha256');
  const { stdout: head } = await execFileAsync('git', ['rev-parse', 'HEAD'], { cwd: repo });
  hash.update(head);
  const walk = async (rel: string): Promise<void> => {
    for (const entry of (await readdir(join(repo, rel), { withFileTypes: true })).sort((a, b) =>
      a.name < b.name ? -1 : 1,
    )) {
      const path = `${rel}/${entry.name}`;
      if (entry.isDirectory()) await walk(path);
      else if (entry.isFile()) hash.update(`${path}\0`).update(await readFile(join(repo, path)));
    }
  };
  await walk('src');
  await walk('scripts');
  await walk('examples'); // examples/default.yaml is bundled
  for (const file of ['package.json', 'package-lock.json', 'tsconfig.json']) {
    hash.update(`${file}\0`).update(await readFile(join(repo, file)));
  }
  return hash.digest('hex').slice(0, 16);
}

let building: Promise<PullmapImage> | undefined;

/**
 * The image of the current source tree: reused from .tmp/image/ when this source state was built before
 * (builds are reproducible, so the bytes would be the same), else built now (~10 s with the Debian
 * layer cached, ~30-60 s without).
 */
export function pullmapImage(): Promise<PullmapImage> {
  building ??= (async () => {
    const dir = join(repo, '.tmp/image');
    const name = `pullmap-test-${await sourceKey()}.oci.tar`;
    const archive = join(dir, name);
    if (!existsSync(archive)) {
      await mkdir(dir, { recursive: true });
      // Test files run in parallel processes: the first one builds, the others wait and reuse its archive.
      const printed = await runBuildImage(['--output', archive], {
        lock: join(dir, 'build.lock'),
        reuse: archive,
      });
      if (printed !== archive) throw new Error(`build-image.sh printed "${printed}", expected ${archive}`);
      // Archives of earlier source states are never used again (~55 MB each).
      for (const old of await readdir(dir)) {
        if (old.startsWith('pullmap-test-') && old !== name) await rm(join(dir, old), { force: true });
      }
    }
    return { archive, ...(await archiveIndex(archive)) };
  })();
  return building;
}

async function archiveIndex(archive: string): Promise<{ tag: string; digest: string }> {
  const { stdout } = await execFileAsync('tar', ['-xOf', archive, 'index.json']);
  const index = JSON.parse(stdout) as {
    manifests: { digest: string; annotations?: Record<string, string> }[];
  };
  const [entry] = index.manifests;
  const tag = entry?.annotations?.['org.opencontainers.image.ref.name'];
  if (!entry || !tag || index.manifests.length !== 1) throw new Error(`${archive}: not one tagged image`);
  return { tag, digest: entry.digest };
}

export interface UnpackedImage {
  readonly config: { created?: string; architecture?: string; os?: string; config: ImageConfig };
  /** Per layer, its entries as `tar -tv --numeric-owner` prints them: mode, uid/gid and path. */
  readonly layers: { mode: string; owner: string; path: string }[][];
  /** Per layer, its gzip blob in `dir`. */
  readonly blobs: string[];
  readonly dir: TempDir;
}

/** Unpacks the archive's blobs to read its config and the entries of every layer. */
export async function unpackImage(image: PullmapImage): Promise<UnpackedImage> {
  const dir = await tempDir('image');
  await execFileAsync('tar', ['-xf', image.archive, '-C', dir.path]);
  const blob = (digest: string): string => join(dir.path, 'blobs', ...digest.split(':'));
  const manifest = JSON.parse(await readFile(blob(image.digest), 'utf8')) as {
    config: { digest: string };
    layers: { digest: string }[];
  };
  const config = JSON.parse(await readFile(blob(manifest.config.digest), 'utf8'));
  const layers = [];
  for (const layer of manifest.layers) {
    const { stdout } = await execFileAsync('tar', ['-tvzf', blob(layer.digest), '--numeric-owner'], {
      maxBuffer: 64 * 1024 * 1024,
    });
    layers.push(
      stdout
        .split('\n')
        .filter(Boolean)
        .map((line) => {
          // -rw-r--r-- 0/0  6 1970-01-01 00:00 etc/debian_version[ -> target]
          const [mode = '', owner = '', , , , ...rest] = line.split(/\s+/);
          return { mode, owner, path: rest.join(' ').replace(/ -> .*$/, '') };
        }),
    );
  }
  return { config, layers, blobs: manifest.layers.map((layer) => blob(layer.digest)), dir };
}
