// Polls files for changes (mtime, size and inode, through symlinks: a Secret or ConfigMap volume swaps
// its files by symlink) and calls `onChange` when they differ from the version last tried. A failed
// load is retried only when the stamp changes again (completing a write or a rotation changes it): a
// file that keeps failing is not re-read and re-parsed on every tick.
import { stat } from 'node:fs/promises';

/** A fingerprint of the files' current versions. */
export async function filesStamp(paths: readonly string[]): Promise<string> {
  const stats = await Promise.all(paths.map((p) => stat(p)));
  return stats.map((s) => `${s.mtimeMs}:${s.size}:${s.ino}`).join('|');
}

export interface FileWatch {
  stop(): void;
}

/**
 * Starts polling. `stamp` is the fingerprint the caller loaded (from `filesStamp` before reading);
 * `onChange` loads the new version and throws when it cannot, which `onError` reports.
 */
export function watchFiles(paths: readonly string[], options: WatchOptions): FileWatch {
  return watchStamp(() => filesStamp(paths), options);
}

interface WatchOptions {
  readonly intervalMs: number;
  readonly stamp: string;
  readonly onChange: () => Promise<void>;
  readonly onError: (err: unknown) => void;
}

/** watchFiles over any fingerprint: `stampOf` may also list a directory, so files added or removed count. */
export function watchStamp(stampOf: () => Promise<string>, options: WatchOptions): FileWatch {
  let tried = options.stamp;
  let busy = false;
  const timer = setInterval(() => {
    if (busy) return;
    busy = true;
    // A file that cannot be stat'ed (missing, no permission) is one more version, tried once.
    stampOf()
      .catch((err: NodeJS.ErrnoException) => `unreadable:${err.code ?? String(err)}:${err.path ?? ''}`)
      .then(async (now) => {
        if (now === tried) return;
        tried = now;
        await options.onChange();
      })
      .catch(options.onError)
      .finally(() => {
        busy = false;
      });
  }, options.intervalMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
