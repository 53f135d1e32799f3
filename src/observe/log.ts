// Structured logs: one JSON object per line on stderr, with a level filter. Fields are plain data; an
// Error is reduced to its name, code and message so a log line never carries a stack by accident.
//
// Why not pino: no faster here, +10 MiB on import, and it writes an Error with its stack or without its
// message depending on the key (docs/decisions.md, "Logs").

import type { Writable } from 'node:stream';

export type Level = 'debug' | 'info' | 'warn' | 'error';
const RANK: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

type Fields = Readonly<Record<string, unknown>>;

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

/**
 * At most one line per key per interval, for warnings a busy cluster would otherwise repeat per pod:
 * `take(key)` says whether to log now and how many were held back since the last line. Bounded: past
 * `maxKeys`, the key logged longest ago is forgotten (its next line comes at once).
 */
export class LogLimiter {
  readonly #intervalMs: number;
  readonly #now: () => number;
  readonly #maxKeys: number;
  // Insertion order is the order keys were last logged: the oldest go first.
  readonly #keys = new Map<string, { loggedAt: number; suppressed: number }>();

  constructor(options: { intervalMs: number; now?: () => number; maxKeys?: number }) {
    this.#intervalMs = options.intervalMs;
    this.#now = options.now ?? Date.now;
    this.#maxKeys = Math.max(1, options.maxKeys ?? 1000);
  }

  /** `{ suppressed }` when a line is due (lines held back since the last one); undefined to hold this one back. */
  take(key: string): { suppressed: number } | undefined {
    const now = this.#now();
    const known = this.#keys.get(key);
    if (known !== undefined && now - known.loggedAt < this.#intervalMs) {
      known.suppressed++;
      return undefined;
    }
    const suppressed = known?.suppressed ?? 0;
    this.#keys.delete(key);
    this.#keys.set(key, { loggedAt: now, suppressed: 0 });
    if (this.#keys.size > this.#maxKeys) this.#keys.delete(this.#keys.keys().next().value as string);
    return { suppressed };
  }
}
