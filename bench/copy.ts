// `pullmap copy` against `skopeo copy` (issue 24): one 200 MB image of three layers, copied from a
// loopback docker-registry to a fresh repository of another one, alternating the two tools in the same
// run; target: at least skopeo's speed (ratio skopeo time / pullmap time >= 1.0) and a peak RSS of the
// pullmap process under 150 MiB (GNU time's maximum resident set size).
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type Blob, buildImage, pushBlob, pushManifest, sha256 } from '../test/harness/images.ts';
import { execFileAsync, requireCommand, tempDir } from '../test/harness/process.ts';
import { startRegistry, type TestRegistry } from '../test/harness/registry.ts';
import { type BenchResult, imageNodeFlags, median } from './measure.ts';

const LAYERS_MB = [100, 60, 40];
const ROUNDS = 3;
const RSS_TARGET_MIB = 150;
const PULLMAP = new URL('../dist/pullmap.js', import.meta.url).pathname;
const LAYER = 'application/vnd.oci.image.layer.v1.tar+gzip';

/** Incompressible layers: what a copy moves is bytes, and nothing in a copy looks inside them. */
async function pushBigImage(origin: TestRegistry): Promise<string> {
  const base = buildImage();
  const layers: Blob[] = LAYERS_MB.map((mb) => {
    const bytes = randomBytes(mb * 1024 * 1024);
    return { mediaType: LAYER, digest: sha256(bytes), size: bytes.length, bytes };
  });
  const configBytes = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config: {},
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) },
    }),
  );
  const config: Blob = {
    ...base.config,
    bytes: configBytes,
    digest: sha256(configBytes),
    size: configBytes.length,
  };
  const descriptor = (b: Blob) => ({ mediaType: b.mediaType, digest: b.digest, size: b.size });
  const manifestBytes = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: base.manifest.mediaType,
      config: descriptor(config),
      layers: layers.map(descriptor),
    }),
  );
  for (const b of [...layers, config]) await pushBlob(origin, 'bench/big', b);
  return pushManifest(origin, 'bench/big', '1', {
    mediaType: base.manifest.mediaType,
    bytes: manifestBytes,
    digest: sha256(manifestBytes),
    size: manifestBytes.length,
  });
}

/** Runs a command under GNU time: wall seconds and the peak resident set in MiB. */
async function timed(
  time: string,
  command: string,
  args: readonly string[],
): Promise<{ seconds: number; rssMib: number; cpuSeconds: number }> {
  const started = performance.now();
  const { stderr } = await execFileAsync(time, ['-f', 'maxrss=%M cpu=%U+%S', command, ...args], {
    timeout: 600_000,
    maxBuffer: 16 * 1024 * 1024,
  });
  const seconds = (performance.now() - started) / 1000;
  const kb = Number(/maxrss=(\d+)/.exec(stderr)?.[1] ?? Number.NaN);
  const cpu = /cpu=([\d.]+)\+([\d.]+)/.exec(stderr);
  return { seconds, rssMib: kb / 1024, cpuSeconds: Number(cpu?.[1]) + Number(cpu?.[2]) };
}

export async function runCopyBench(): Promise<BenchResult[]> {
  const skopeo = requireCommand('skopeo');
  const time = requireCommand('time');
  // The node flags of the container image's ENTRYPOINT: how pullmap runs when shipped.
  const nodeFlags = await imageNodeFlags();
  const work = await tempDir('pullmap-bench-copy-');
  const origin = await startRegistry();
  const targets: TestRegistry[] = [];
  try {
    const digest = await pushBigImage(origin);
    const totalMb = LAYERS_MB.reduce((a, b) => a + b, 0);
    const config = join(work.path, 'maps.yaml');
    const rounds: { pullmap: number; skopeo: number; rss: number }[] = [];
    let first: TestRegistry | undefined;
    for (let round = 0; round < ROUNDS; round++) {
      // Fresh target registries each round: neither tool may find (and mount) blobs of an earlier round.
      const [forPullmap, forSkopeo] = await Promise.all([startRegistry(), startRegistry()]);
      targets.push(forPullmap, forSkopeo);
      first ??= forPullmap;
      await writeFile(
        config,
        `apiVersion: pullmap.dev/v1alpha1
kind: ClusterImageMap
metadata: {name: bench}
spec:
  mappings:
    - {from: ${origin.host}/bench/, to: ${forPullmap.host}/round${round}/}
`,
      );
      const runPullmap = () =>
        timed(time, process.execPath, [
          ...nodeFlags,
          PULLMAP,
          'copy',
          `${origin.host}/bench/big:1`,
          '--config',
          config,
          '--plain-http',
          origin.host,
          '--plain-http',
          forPullmap.host,
        ]);
      const runSkopeo = () =>
        timed(time, skopeo, [
          'copy',
          '--retry-times',
          '0',
          '--src-tls-verify=false',
          '--dest-tls-verify=false',
          `docker://${origin.host}/bench/big:1`,
          `docker://${forSkopeo.host}/round${round}/bench/big:1`,
        ]);
      // Alternate which tool goes first: the page cache then favours neither.
      const [p, s] =
        round % 2 === 0 ? [await runPullmap(), await runSkopeo()] : [undefined, await runSkopeo()];
      const pullmapRun = p ?? (await runPullmap());
      rounds.push({ pullmap: pullmapRun.seconds, skopeo: s.seconds, rss: pullmapRun.rssMib });
      console.log(
        `  round ${round + 1}: pullmap copy ${pullmapRun.seconds.toFixed(2)} s (CPU ${pullmapRun.cpuSeconds.toFixed(2)} s, peak RSS ${pullmapRun.rssMib.toFixed(0)} MiB), skopeo copy ${s.seconds.toFixed(2)} s (CPU ${s.cpuSeconds.toFixed(2)} s)`,
      );
    }
    // Both copies are exact: the manifest digest at each target is the source's.
    const inspect = async (ref: string) =>
      sha256(
        (
          await execFileAsync(skopeo, ['inspect', '--raw', '--tls-verify=false', `docker://${ref}`], {
            encoding: 'buffer',
          })
        ).stdout,
      );
    const copied = await inspect(`${first!.host}/round0/big:1`);
    if (copied !== digest) throw new Error(`pullmap's copy has digest ${copied}, the source ${digest}`);
    const pullmapS = median(rounds.map((r) => r.pullmap));
    const skopeoS = median(rounds.map((r) => r.skopeo));
    const ratio = skopeoS / pullmapS;
    const rss = Math.max(...rounds.map((r) => r.rss));
    console.log(
      `## copy (${totalMb} MB image, ${LAYERS_MB.length} layers, loopback docker-registry, median of ${ROUNDS} rounds)\n` +
        `pullmap copy ${pullmapS.toFixed(2)} s (${(totalMb / pullmapS).toFixed(0)} MB/s), skopeo copy ${skopeoS.toFixed(2)} s: ratio ${ratio.toFixed(2)}x; pullmap peak RSS ${rss.toFixed(0)} MiB\n`,
    );
    return [
      {
        name: `copy ${totalMb} MB image vs skopeo`,
        target: '>= 1.0x skopeo speed',
        measured: `${pullmapS.toFixed(2)} s vs ${skopeoS.toFixed(2)} s`,
        ratio: `${ratio.toFixed(2)}x`,
        pass: ratio >= 1.0,
      },
      {
        name: 'copy peak RSS',
        target: `< ${RSS_TARGET_MIB} MiB`,
        measured: `${rss.toFixed(0)} MiB`,
        ratio: `${(rss / RSS_TARGET_MIB).toFixed(2)} of target`,
        pass: rss < RSS_TARGET_MIB,
      },
    ];
  } finally {
    await Promise.all([origin.close(), ...targets.map((t) => t.close()), work.remove()]);
  }
}
