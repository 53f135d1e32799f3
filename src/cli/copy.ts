// `pullmap copy IMAGE... --config maps.yaml`: copies each image into the target its mapping names, for
// preparing a mirror before the link goes away. The target comes from core's fillTarget, the same rule
// and naming the webhook maps with, so a copied image is the one the webhook later finds.

import { scanManifests } from '../core/manifest/rewrite.ts';
import { type DecisionSettings, type FillPlan, fillTarget, type MapSnapshot } from '../core/mapping/index.ts';
import type { ProxySettings } from '../core/proxy.ts';
import { formatReference } from '../core/reference/index.ts';
import type { CopyEvent, CopyResult } from '../mirror/copy.ts';
import { type Platform, parsePlatform } from '../mirror/manifest.ts';
import { UsageError } from './errors.ts';
import { registryClientOptions } from './existence.ts';
import { configMaps } from './explain.ts';
import type { CliIO } from './io.ts';
import { readInput } from './maps.ts';

interface CopyOptions {
  images: readonly string[];
  config: readonly string[];
  /** Manifests (a file, or "-" for stdin) whose images are copied. */
  file: string | undefined;
  namespace: string;
  platforms: readonly string[];
  plainHttp: readonly string[];
  caFiles: readonly string[];
  dockerConfig: string | undefined;
  /** HTTPS_PROXY / HTTP_PROXY / NO_PROXY from the environment. */
  proxy: ProxySettings;
  /** How long a blob upload may make no progress (--upload-stall-timeout). */
  uploadStallTimeoutMs: number | undefined;
  /** Images copied at once. */
  jobs: number;
  /** Limit over the config and manifest inputs. */
  maxInputBytes: number;
  /** The settings decisions are made with (the webhook's --cache-address and --exclude-namespaces). */
  settings: DecisionSettings;
}

interface Job {
  readonly input: string;
  readonly plan: FillPlan;
  readonly platforms: readonly Platform[];
}

const PROGRESS_EVERY_MS = 2000;
const MiB = 1024 * 1024;
const mib = (bytes: number): string => `${(bytes / MiB).toFixed(1)} MiB`;

interface CopyInput {
  image: string;
  namespace: string;
  podLabels: Record<string, string>;
  pullPolicy?: string;
}

function parsePlatforms(texts: readonly string[]): Platform[] {
  return texts.map((text) => {
    const p = parsePlatform(text);
    if (!p)
      throw new UsageError(
        `--platform ${JSON.stringify(text)} is not os/architecture[/variant], like linux/amd64`,
      );
    return p;
  });
}

/** Every image with the namespace and labels its pod would have; undefined when the manifests do not parse. */
async function copyInputs(options: CopyOptions, io: CliIO): Promise<CopyInput[] | undefined> {
  const inputs: CopyInput[] = options.images.map((image) => ({
    image,
    namespace: options.namespace,
    podLabels: {},
  }));
  if (options.file === undefined) return inputs;
  const text = await readInput(options.file, io.stdin, options.maxInputBytes);
  const scan = scanManifests(text, options.file === '-' ? '<stdin>' : options.file);
  if (scan.errors.length > 0) {
    for (const e of scan.errors) io.stderr.write(`${e}\n`);
    return undefined;
  }
  for (const img of scan.images)
    inputs.push({
      image: img.image,
      namespace: img.namespace ?? options.namespace,
      podLabels: img.podLabels,
      ...(img.pullPolicy === undefined ? {} : { pullPolicy: img.pullPolicy }),
    });
  return inputs;
}

interface JobPlan {
  /** One job per distinct source and target. */
  jobs: Map<string, Job>;
  invalid: number;
  skipped: number;
}

/** The copy each input's mapping names (core's fillTarget), reporting the inputs that have none. */
function planJobs(
  snapshot: MapSnapshot,
  settings: DecisionSettings,
  inputs: readonly CopyInput[],
  platforms: readonly Platform[],
  io: CliIO,
): JobPlan {
  const out: JobPlan = { jobs: new Map(), invalid: 0, skipped: 0 };
  for (const input of inputs) {
    const decision = fillTarget(snapshot, settings, input.image, {
      namespace: input.namespace,
      namespaceLabels: { 'kubernetes.io/metadata.name': input.namespace },
      podLabels: input.podLabels,
      pullPolicy: input.pullPolicy,
    });
    if (!decision.ok) {
      if (decision.reason.code === 'InvalidReference') {
        out.invalid++;
        io.stderr.write(`pullmap: ${decision.reason.message}\n`);
      } else {
        out.skipped++;
        io.stderr.write(`skip ${input.image}: ${decision.reason.message}\n`);
      }
      continue;
    }
    const plan = decision.plan;
    const key = `${formatReference(plan.source)} ${formatReference(plan.target)}`;
    if (out.jobs.has(key)) continue;
    const mapped = (plan.fill?.platforms ?? []).map((p) => parsePlatform(p)).filter((p) => p !== undefined);
    out.jobs.set(key, { input: input.image, plan, platforms: platforms.length > 0 ? platforms : mapped });
  }
  return out;
}

export async function copy(options: CopyOptions, io: CliIO): Promise<number> {
  const platforms = parsePlatforms(options.platforms);
  if (options.images.length === 0 && options.file === undefined)
    throw new UsageError('copy needs IMAGE arguments or -f FILE (manifests; - for stdin)');
  const maps = await configMaps(options.config, options.maxInputBytes, io);
  if (maps === undefined) return 2;
  const inputs = await copyInputs(options, io);
  if (inputs === undefined) return 2;
  const { jobs, invalid, skipped } = planJobs(maps.snapshot, options.settings, inputs, platforms, io);
  if (invalid > 0) return 2;

  const { RegistryClient } = await import('../registry/index.ts');
  const { Copier } = await import('../mirror/copy.ts');
  const settings = await registryClientOptions(options, 30_000);
  // Two clients: reads and writes to one host never wait for each other's request slots.
  const source = new RegistryClient(settings);
  const target = new RegistryClient(settings);
  const copier = new Copier({ source, target });

  const counts = { copied: 0, present: 0, partial: 0, failed: 0 };
  let totalBytes = 0;
  const started = Date.now();
  const queue = [...jobs.values()];
  const worker = async (): Promise<void> => {
    for (let job = queue.shift(); job !== undefined; job = queue.shift()) {
      const result = await copyOne(copier, job, io);
      if (result.ok) {
        counts[result.value.state]++;
        totalBytes += result.value.bytesUploaded;
      } else counts.failed++;
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.max(1, Math.min(options.jobs, queue.length)) }, worker));
  } finally {
    await Promise.all([source.close(), target.close()]);
  }
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  io.stderr.write(
    `summary: ${counts.copied} copied, ${counts.present} already present, ${counts.partial} partial (platform filter), ${counts.failed} failed, ${skipped} skipped; ${mib(totalBytes)} uploaded in ${seconds} s\n`,
  );
  return counts.failed > 0 ? 1 : 0;
}

async function copyOne(copier: import('../mirror/copy.ts').Copier, job: Job, io: CliIO): Promise<CopyResult> {
  const from = formatReference(job.plan.source);
  const to = formatReference(job.plan.target);
  io.stderr.write(`copy ${from} -> ${to}\n`);
  let bytes = 0;
  let lastReport = Date.now();
  const onEvent = (e: CopyEvent): void => {
    if (e.kind === 'bytes') {
      bytes += e.bytes;
      const now = Date.now();
      if (now - lastReport >= PROGRESS_EVERY_MS) {
        lastReport = now;
        io.stderr.write(`  ${from}: ${mib(bytes)} sent\n`);
      }
    } else if (e.kind === 'blob') {
      io.stderr.write(`  ${from}: blob ${e.digest.slice(0, 19)} ${e.state} (${mib(e.size)})\n`);
    } else if (e.kind === 'retry') {
      io.stderr.write(
        `  ${from}: attempt ${e.attempt} of ${e.attempts} failed, again in ${(e.waitMs / 1000).toFixed(1)} s: ${e.code}: ${e.message}\n`,
      );
    }
  };
  const t0 = Date.now();
  const result = await copier.copy({
    source: job.plan.source,
    target: job.plan.target,
    platforms: job.platforms,
    onEvent,
  });
  const seconds = ((Date.now() - t0) / 1000).toFixed(1);
  if (!result.ok) {
    io.stderr.write(`FAILED ${from} -> ${to}: ${result.error.code}: ${result.error.message}\n`);
    return result;
  }
  const v = result.value;
  const what =
    v.state === 'partial'
      ? `partial: ${v.platforms.join(', ')} by digest; index and tag not pushed (other platforms left out)`
      : v.state;
  io.stderr.write(
    `done ${from} -> ${to}: ${what} ${v.digest} (${v.blobsUploaded} blobs uploaded, ${v.blobsMounted} mounted, ${v.blobsPresent} present; ${mib(v.bytesUploaded)} in ${seconds} s)\n`,
  );
  return result;
}
