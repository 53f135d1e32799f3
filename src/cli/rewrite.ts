// `pullmap rewrite -f FILE`: manifests in, the same manifests with mapped images out (Helm post-renderer).
import { mergeProbeRequests } from '../core/facts.ts';
import { scanManifests, spliceImages } from '../core/manifest/rewrite.ts';
import { buildSnapshot, decideImage, type MapSnapshot } from '../core/mapping/index.ts';
import { decideWithProbes, type ExistenceSource } from '../decision/resolve.ts';
import type { CliIO } from './io.ts';
import { loadMaps, readInput } from './maps.ts';

export interface RewriteOptions {
  file: string;
  config: string | undefined;
  namespace: string;
  existence: ExistenceSource;
}

export async function rewrite(options: RewriteOptions, io: CliIO): Promise<number> {
  let snapshot: MapSnapshot = buildSnapshot([]);
  if (options.config !== undefined) {
    const maps = await loadMaps(options.config, io.stdin);
    if (maps.errors.length > 0) {
      for (const e of maps.errors) io.stderr.write(`${e}\n`);
      return 2;
    }
    snapshot = maps.snapshot;
  }
  const text = await readInput(options.file, io.stdin);
  const scan = scanManifests(text, options.file === '-' ? '<stdin>' : options.file);
  if (scan.errors.length > 0) {
    for (const e of scan.errors) io.stderr.write(`${e}\n`);
    return 2;
  }
  const decisions = await decideWithProbes((facts) => {
    const all = scan.images.map((img) => {
      const pullPolicy = img.pullPolicy;
      const namespace = img.namespace ?? options.namespace;
      const ctx = {
        namespace,
        namespaceLabels: { 'kubernetes.io/metadata.name': namespace },
        podLabels: img.podLabels,
        pullPolicy,
      };
      return decideImage(snapshot, img.image, ctx, facts);
    });
    return { all, pendingProbes: mergeProbeRequests(all.flatMap((d) => d.pendingProbes)) };
  }, options.existence);
  const replacements = new Map<number, string>();
  decisions.all.forEach((d, i) => {
    if (d.outcome === 'Mapped') replacements.set(i, d.image);
    if (d.outcome === 'Invalid')
      io.stderr.write(`warning: ${scan.images[i]!.where}: ${d.reasons[0]?.message}; left unchanged\n`);
  });
  io.stdout.write(spliceImages(text, scan, replacements));
  return 0;
}
