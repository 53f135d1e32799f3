// `pullmap explain`: what pullmap makes of image references, and with a config, where each one is
// pulled from and why. The decision is the webhook's own (decideImage).
import { createInterface } from 'node:readline';
import { decideImage, type ImageDecision } from '../core/mapping/index.ts';
import { formatFamiliar, formatNormalized, parseReference } from '../core/reference/index.ts';
import { decideWithProbes, type ExistenceSource } from '../decision/resolve.ts';
import { formatVerdict } from './check.ts';
import type { CliIO } from './io.ts';
import { type LoadedMaps, loadMaps } from './maps.ts';

export interface ExplainOptions {
  images: string[];
  config: string | undefined;
  namespace: string;
  podLabels: Record<string, string>;
  namespaceLabels: Record<string, string>;
  pullPolicy: string | undefined;
  output: 'text' | 'json';
  existence: ExistenceSource;
}

async function* inputLines(options: ExplainOptions, io: CliIO): AsyncGenerator<string> {
  if (options.images.length > 0) {
    yield* options.images;
    return;
  }
  for await (const line of createInterface({ input: io.stdin, crlfDelay: Number.POSITIVE_INFINITY })) {
    const trimmed = line.trim();
    if (trimmed !== '' && !trimmed.startsWith('#')) yield trimmed;
  }
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

export function text(d: Record<string, unknown>): string {
  if (!d.valid) return `${d.input}\n  invalid: ${d.error}\n`;
  const lines = [`${d.input}`, `  normalized  ${d.normalized}`, `  familiar    ${d.familiar}`];
  if (d.outcome !== undefined) {
    lines.push(`  result      ${d.mapped} (${d.outcome})`);
    for (const r of d.reasons as { code: string; message: string }[])
      lines.push(`    - ${r.code}: ${r.message}`);
  }
  return `${lines.join('\n')}\n`;
}

/** Loads a config for explaining: undefined (errors printed) when it is unusable; unused maps warned about. */
export async function configMaps(config: string, io: CliIO): Promise<LoadedMaps | undefined> {
  const maps = await loadMaps(config, io.stdin);
  if (maps.errors.length > 0) {
    for (const e of maps.errors) io.stderr.write(`${e}\n`);
    return undefined;
  }
  for (const v of maps.analysis.verdicts) {
    if (v.verdict !== 'Accepted') io.stderr.write(`warning: map not used: ${formatVerdict(v).join('\n')}\n`);
  }
  return maps;
}

export async function explain(options: ExplainOptions, io: CliIO): Promise<number> {
  let maps: LoadedMaps | undefined;
  if (options.config !== undefined) {
    maps = await configMaps(options.config, io);
    if (maps === undefined) return 2;
  }
  const namespaceLabels = { 'kubernetes.io/metadata.name': options.namespace, ...options.namespaceLabels };
  for await (const input of inputLines(options, io)) {
    let decision: ImageDecision | undefined;
    const snapshot = maps?.snapshot;
    if (snapshot) {
      const ctx = {
        namespace: options.namespace,
        namespaceLabels,
        podLabels: options.podLabels,
        pullPolicy: options.pullPolicy,
      };
      decision = await decideWithProbes(
        (facts) => decideImage(snapshot, input, ctx, facts),
        options.existence,
      );
    }
    const d = describe(input, decision);
    io.stdout.write(options.output === 'json' ? `${JSON.stringify(d)}\n` : text(d));
  }
  return 0;
}
