// `pullmap check --config PATH...`: every error and conflict of a set of map objects, in the words the
// controller writes into their status; with --cache-upstreams, maps the cache could not serve.
import {
  cacheUpstreamFindings,
  findingLines,
  type MapVerdict,
  servingNote,
  type UpstreamFinding,
} from '../core/mapping/index.ts';
import { printable } from '../core/text.ts';
import type { CliIO } from './io.ts';
import { loadMaps } from './maps.ts';

export function formatVerdict(v: MapVerdict): string[] {
  if (v.verdict === 'Accepted') return [`${'ok'.padEnd(10)}${v.name}`];
  const note = v.serving === 'previous' ? ` (${servingNote(v)})` : '';
  return [`${v.verdict.padEnd(10)}${v.name}${note}`, ...findingLines(v).map((l) => `${' '.repeat(10)}${l}`)];
}

const count = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;

interface CheckOptions {
  readonly config: readonly string[];
  readonly output: 'text' | 'json';
  /** The cache's upstream hosts; undefined: not checked. */
  readonly cacheUpstreams: readonly string[] | undefined;
  readonly maxInputBytes: number;
}

function verdictJson(v: MapVerdict): Record<string, unknown> {
  return {
    map: v.name,
    kind: v.ref.kind,
    ...(v.ref.namespace !== undefined ? { namespace: v.ref.namespace } : {}),
    name: v.ref.name,
    verdict: v.verdict,
    findings: v.findings.map((f) => ({
      path: f.path,
      message: f.message,
      ...(f.other !== undefined ? { other: f.other } : {}),
    })),
  };
}

/**
 * Exit 0: every map accepted (warnings allowed); 1: a map is Invalid or in Conflict; 2: the input
 * cannot be used (unreadable, malformed YAML, not map objects), as for every other command.
 */
export async function check(options: CheckOptions, io: CliIO): Promise<number> {
  const loaded = await loadMaps(options.config, { stdin: io.stdin, maxBytes: options.maxInputBytes });
  const verdicts = loaded.analysis.verdicts;
  const bad = verdicts.filter((v) => v.verdict !== 'Accepted').length;
  const warnings: UpstreamFinding[] =
    options.cacheUpstreams === undefined
      ? []
      : cacheUpstreamFindings(loaded.analysis.accepted, options.cacheUpstreams);
  const code = loaded.errors.length > 0 ? 2 : bad > 0 ? 1 : 0;
  if (options.output === 'json') {
    const result = {
      errors: loaded.errors,
      maps: verdicts.map(verdictJson),
      warnings: warnings.map((w) => ({ map: w.map, path: w.path, registry: w.registry, message: w.message })),
      summary: {
        maps: verdicts.length,
        rejected: bad,
        errors: loaded.errors.length,
        warnings: warnings.length,
      },
    };
    io.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    return code;
  }
  for (const e of loaded.errors) io.stderr.write(`${printable(e)}\n`);
  for (const v of verdicts) io.stdout.write(`${formatVerdict(v).map(printable).join('\n')}\n`);
  for (const w of warnings)
    io.stdout.write(`${'warning'.padEnd(10)}${w.map} ${w.path}: ${printable(w.message)}\n`);
  io.stdout.write(
    `${verdicts.length} maps, ${bad} rejected${warnings.length > 0 ? `, ${count(warnings.length, 'warning')}` : ''}${loaded.errors.length > 0 ? `; the input is unusable: ${count(loaded.errors.length, 'error')} above` : ''}\n`,
  );
  return code;
}
