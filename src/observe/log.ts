// Structured logs: one JSON object per line on stderr, with a level filter. Fields are plain data; an
// Error is reduced to its name, code and message so a log line never carries a stack by accident.
//
// Why not pino: no faster here, +10 MiB on import, and it writes an Error with its stack or without its
// message depending on the key (docs/decisions.md, "Logs").

import type { Writable } from 'node:stream';

export type Level = 'debug' | 'info' | 'warn' | 'error';
const RANK: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };
export const LEVELS: readonly Level[] = ['debug', 'info', 'warn', 'error'];

export type Fields = Readonly<Record<string, unknown>>;

export interface Logger {
  debug(msg: string, fields?: Fields): void;
  info(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  error(msg: string, fields?: Fields): void;
  enabled(level: Level): boolean;
  /** A logger whose lines all carry `fields` (e.g. the component name). */
  with(fields: Fields): Logger;
}

function plain(value: unknown): unknown {
  if (value instanceof Error) {
    const code = (value as { code?: unknown }).code;
    return { name: value.name, ...(typeof code === 'string' ? { code } : {}), message: value.message };
  }
  return value;
}

export function createLogger(options: {
  level: Level;
  out: Writable;
  now?: () => Date;
  base?: Fields;
}): Logger {
  const min = RANK[options.level];
  const now = options.now ?? (() => new Date());
  const make = (base: Fields): Logger => {
    const write = (level: Level, msg: string, fields?: Fields) => {
      if (RANK[level] < min) return;
      const record: Record<string, unknown> = { time: now().toISOString(), level, msg, ...base };
      if (fields) for (const [k, v] of Object.entries(fields)) record[k] = plain(v);
      let line: string;
      try {
        line = JSON.stringify(record);
      } catch {
        line = JSON.stringify({ time: record['time'], level, msg, note: 'fields could not be serialised' });
      }
      options.out.write(`${line}\n`);
    };
    return {
      debug: (m, f) => write('debug', m, f),
      info: (m, f) => write('info', m, f),
      warn: (m, f) => write('warn', m, f),
      error: (m, f) => write('error', m, f),
      enabled: (level) => RANK[level] >= min,
      with: (fields) => make({ ...base, ...fields }),
    };
  };
  return make(options.base ?? {});
}

/** Discards everything; for tests and library use. */
export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  enabled: () => false,
  with: () => silentLogger,
};
