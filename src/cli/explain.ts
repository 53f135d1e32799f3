// `pullmap explain`: what pullmap makes of image references, and with a config, where each one is
// pulled from and why. The decision is the webhook's own (decideImage).
import { stringify } from 'yaml';
import {
  type DecisionSettings,
  decideImage,
  type ImageDecision,
  loadMapsFromText,
} from '../core/mapping/index.ts';
import { podSkipReason } from '../core/pod/plan.ts';
import { formatFamiliar, formatNormalized, parseReference } from '../core/reference/index.ts';
import { printable } from '../core/text.ts';
import { decideWithProbes, type ExistenceSource } from '../sources/resolve.ts';
import { formatVerdict } from './check.ts';
import type { CliIO } from './io.ts';
import { type LoadedMaps, loadMaps, readInput } from './maps.ts';

export type Output = 'text' | 'json' | 'yaml';

interface ExplainOptions {
  images: string[];
  /** --config values; none: the embedded default maps. */
  config: readonly string[];
  namespace: string;
  podLabels: Record<string, string>;
  namespaceLabels: Record<string, string>;
  pullPolicy: string | undefined;
  output: Output;
  maxInputBytes: number;
  existence: ExistenceSource;
  /** The settings decisions are made with (the webhook's --cache-address and --exclude-namespaces). */
  settings: DecisionSettings;
}

/** Images from the arguments, else stdin one per line (blank lines and # comments skipped). */
async function inputLines(options: ExplainOptions, io: CliIO): Promise<string[]> {
  if (options.images.length > 0) return options.images;
  const text = await readInput('-', io.stdin, options.maxInputBytes);
  return text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
}

export function describe(input: string, decision: ImageDecision | undefined): Record<string, unknown> {
  const parsed = parseReference(input);
  if (!parsed.ok) return { input, valid: false, error: parsed.error.message, code: parsed.error.code };
  const ref = parsed.ref;
  const out: Record<string, unknown> = {
    input,
    valid: true,
    normalized: formatNormalized(ref),
    familiar: formatFamiliar(ref),
    registry: ref.registry,
    repository: ref.repository,
    tag: ref.tag ?? null,
    digest: ref.digest ?? null,
  };
  if (decision) {
    out.mapped = decision.image;
    out.outcome = decision.outcome;
    out.rule = decision.rule
      ? {
          map: decision.rule.mapName,
          entry: decision.rule.entry,
          from: decision.rule.from,
          to: decision.rule.to,
          ...(decision.rule.pullSecret !== undefined ? { pullSecret: decision.rule.pullSecret } : {}),
        }
      : null;
    out.reasons = decision.reasons.map((r) => ({
      code: r.code,
      message: r.message,
      ...(r.candidate ? { candidate: r.candidate } : {}),
      ...(r.probe ? { probe: r.probe } : {}),
    }));
  }
  return out;
}

/** The human-readable form; everything taken from the input is escaped for the terminal. */
export function text(d: Record<string, unknown>): string {
  const p = (v: unknown) => printable(String(v));
  if (!d.valid) return `${p(d.input)}\n  invalid: ${p(d.error)}\n`;
  const lines = [p(d.input), `  normalized  ${p(d.normalized)}`, `  familiar    ${p(d.familiar)}`];
  if (d.outcome !== undefined) {
    lines.push(`  result      ${p(d.mapped)} (${d.outcome})`);
    for (const r of d.reasons as { code: string; message: string }[])
      lines.push(`    - ${r.code}: ${p(r.message)}`);
  }
  return `${lines.join('\n')}\n`;
}

/** One described object in the chosen format: a JSON line, a YAML document, or text. */
export function format(
  d: Record<string, unknown>,
  output: Output,
  asText: (d: Record<string, unknown>) => string = text,
): string {
  if (output === 'json') return `${JSON.stringify(d)}\n`;
  if (output === 'yaml') return `---\n${stringify(d, { lineWidth: 0 })}`;
  return asText(d);
}

/** Loads a config for explaining: undefined (errors printed) when it is unusable; unused maps warned about. */
export async function configMaps(
  config: readonly string[],
  maxBytes: number,
  io: CliIO,
): Promise<LoadedMaps | undefined> {
  const maps = await loadMaps(config, { stdin: io.stdin, maxBytes });
  if (maps.errors.length > 0) {
    for (const e of maps.errors) io.stderr.write(`${printable(e)}\n`);
    return undefined;
  }
  for (const v of maps.analysis.verdicts) {
    if (v.verdict !== 'Accepted')
      io.stderr.write(`warning: map not used: ${formatVerdict(v).map(printable).join('\n')}\n`);
  }
  return maps;
}

export async function explain(options: ExplainOptions, io: CliIO): Promise<number> {
  let maps: LoadedMaps | undefined;
  if (options.config.length > 0) {
    maps = await configMaps(options.config, options.maxInputBytes, io);
    if (maps === undefined) return 2;
  } else {
    // What `pullmap serve` and `npm start` use without --config; said, so it is never mistaken for yours.
    io.stderr.write(
      'pullmap: explain: no --config given: deciding with the embedded default maps (examples/default.yaml, what `npm start` serves)\n',
    );
    // Imported here: the text import needs the bundle (or --experimental-import-text), and only this path reads it.
    const { DEFAULT_MAPS_TEXT } = await import('../serve/default-maps.ts');
    maps = loadMapsFromText(DEFAULT_MAPS_TEXT, 'the embedded default maps');
  }
  const snapshot = maps.snapshot;
  const namespaceLabels = { 'kubernetes.io/metadata.name': options.namespace, ...options.namespaceLabels };
  const ctx = {
    namespace: options.namespace,
    namespaceLabels,
    podLabels: options.podLabels,
    pullPolicy: options.pullPolicy,
  };
  // The webhook would not look at these images at all: say so, then show what the maps decide.
  const skipped = podSkipReason(options.settings, options.namespace, options.podLabels, {});
  if (skipped !== undefined)
    io.stderr.write(
      `pullmap: explain: ${skipped}, so the webhook leaves such a pod unchanged; below is what the maps would decide otherwise\n`,
    );
  for (const input of await inputLines(options, io)) {
    const decision: ImageDecision = await decideWithProbes(
      (facts) => decideImage(snapshot, options.settings, input, ctx, facts),
      options.existence,
    );
    io.stdout.write(format(describe(input, decision), options.output));
  }
  return 0;
}
