import { findingLines, type MapVerdict, servingNote } from '../core/mapping/index.ts';
import type { CliIO } from './io.ts';
import { loadMaps } from './maps.ts';

export function formatVerdict(v: MapVerdict): string[] {
  if (v.verdict === 'Accepted') return [`${'ok'.padEnd(10)}${v.name}`];
  const note = v.serving === 'previous' ? ` (${servingNote(v)})` : '';
  return [`${v.verdict.padEnd(10)}${v.name}${note}`, ...findingLines(v).map((l) => `${' '.repeat(10)}${l}`)];
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
