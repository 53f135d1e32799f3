import type { MapVerdict } from '../core/mapping/index.ts';
import { loadMaps } from './maps.ts';
import type { CliIO } from './run.ts';

export function formatVerdict(v: MapVerdict): string[] {
  if (v.verdict === 'Accepted') return [`${'ok'.padEnd(10)}${v.name}`];
  const lines = [
    `${v.verdict.padEnd(10)}${v.name}${v.serving === 'previous' ? ` (generation ${v.servingGeneration} keeps serving)` : ''}`,
  ];
  for (const f of v.findings) lines.push(`${' '.repeat(10)}${f.path}: ${f.message}`);
  return lines;
}

/** `pullmap check --config FILE`: every error and conflict, exit 1 when there is any. */
export async function check(options: { config: string }, io: CliIO): Promise<number> {
  const loaded = await loadMaps(options.config, io.stdin);
  for (const e of loaded.errors) io.stderr.write(`${e}\n`);
  for (const v of loaded.analysis.verdicts) io.stdout.write(`${formatVerdict(v).join('\n')}\n`);
  const bad = loaded.analysis.verdicts.filter((v) => v.verdict !== 'Accepted').length;
  io.stdout.write(`${loaded.analysis.verdicts.length} maps, ${bad} rejected\n`);
  return loaded.errors.length > 0 || bad > 0 ? 1 : 0;
}
