// `pullmap rewrite -f FILE`: manifests in, the same manifests with mapped images out (Helm post-renderer).
import { mergeProbeRequests } from '../core/facts.ts';
import { scanManifests, spliceImages } from '../core/manifest/rewrite.ts';
import { type DecisionSettings, decideImage } from '../core/mapping/index.ts';
import { podSkipReason } from '../core/pod/plan.ts';
import { printable } from '../core/text.ts';
import { decideWithProbes, type ExistenceSource } from '../sources/resolve.ts';
import type { CliIO } from './io.ts';
import { loadMaps, readInput } from './maps.ts';

interface RewriteOptions {
  file: string;
  /** --config values (required: rewrite never runs without maps). */
  config: readonly string[];
  namespace: string;
  /** Labels of the objects' namespace, for namespaceSelector (the name label is always set). */
  namespaceLabels: Record<string, string>;
  maxInputBytes: number;
  existence: ExistenceSource;
  /** The settings decisions are made with (the webhook's --cache-address and --exclude-namespaces). */
  settings: DecisionSettings;
}

export async function rewrite(options: RewriteOptions, io: CliIO): Promise<number> {
  const maps = await loadMaps(options.config, { stdin: io.stdin, maxBytes: options.maxInputBytes });
  if (maps.errors.length > 0) {
    for (const e of maps.errors) io.stderr.write(`${printable(e)}\n`);
    return 2;
  }
  for (const v of maps.analysis.verdicts)
    if (v.verdict !== 'Accepted')
      io.stderr.write(
        `warning: map not used: ${printable(v.name)} is ${v.verdict} (pullmap check says why)\n`,
      );
  const snapshot = maps.snapshot;
  const text = await readInput(options.file, io.stdin, options.maxInputBytes);
  const scan = scanManifests(text, options.file === '-' ? '<stdin>' : options.file);
  if (scan.errors.length > 0) {
    for (const e of scan.errors) io.stderr.write(`${printable(e)}\n`);
    return 2;
  }
  // Images the webhook would never look at (an excluded namespace, a pod that opts out) stay as they are.
  const skipped = scan.images.map((img) =>
    podSkipReason(options.settings, img.namespace ?? options.namespace, img.podLabels, {}),
  );
  for (const why of new Set(skipped.filter((w) => w !== undefined)))
    io.stderr.write(
      `pullmap: rewrite: ${printable(why)}: its images are left as they are, as the webhook leaves such pods\n`,
    );
  const decisions = await decideWithProbes((facts) => {
    const all = scan.images.map((img, i) => {
      if (skipped[i] !== undefined) return undefined;
      const pullPolicy = img.pullPolicy;
      const namespace = img.namespace ?? options.namespace;
      const ctx = {
        namespace,
        namespaceLabels: { ...options.namespaceLabels, 'kubernetes.io/metadata.name': namespace },
        podLabels: img.podLabels,
        pullPolicy,
      };
      return decideImage(snapshot, options.settings, img.image, ctx, facts);
    });
    return { all, pendingProbes: mergeProbeRequests(all.flatMap((d) => d?.pendingProbes ?? [])) };
  }, options.existence);
  const replacements = new Map<number, string>();
  decisions.all.forEach((d, i) => {
    if (d === undefined) return;
    if (d.outcome === 'Mapped') replacements.set(i, d.image);
    if (d.outcome === 'Invalid')
      io.stderr.write(
        `warning: ${printable(`${scan.images[i]!.where}: ${d.reasons[0]?.message}`)}; left unchanged\n`,
      );
  });
  io.stdout.write(spliceImages(text, scan, replacements));
  return 0;
}
