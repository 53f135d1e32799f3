// The download spool: local files a download is written to (blob-fetch.ts serves clients from them)
// before the store takes it (`CacheStore.commitBlob`). O_DIRECT is the spool's concern: a filesystem
// refusing it turns it off for later downloads.
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { type FileHandle, mkdir, open, rm, statfs, unlink } from 'node:fs/promises';
import { join } from 'node:path';

export interface TempFile {
  readonly path: string;
  /** Open for reading and writing through the page cache. */
  readonly handle: FileHandle;
  /**
   * The same file opened with O_DIRECT, when asked for and the filesystem allows it: reads and writes
   * through it must be aligned (aligned.ts) and skip the page cache.
   */
  readonly direct?: FileHandle | undefined;
}

/** The filesystem does not do O_DIRECT (at open, or at a read or write through such a handle). */
export function isDirectIORefusal(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'EINVAL' || code === 'EOPNOTSUPP';
}

/** Room left free beyond a blob when deciding whether it fits (metadata, manifests, other writers). */
export const ROOM_MARGIN = 4 * 2 ** 20;

export class Spool {
  readonly dir: string;
  #directIO: boolean;
  /** Bytes promised to downloads under way, in full until each ends (what they wrote is counted twice). */
  #reserved = 0;

  /** A spool in `dir`, which must exist (see `Spool.open`). */
  constructor(dir: string, directIO: boolean) {
    this.dir = dir;
    this.#directIO = directIO && constants.O_DIRECT !== undefined;
  }

  /** Empties (creating) `dir`: what a crash left there is of no use. */
  static async open(dir: string, directIO: boolean): Promise<Spool> {
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
    return new Spool(dir, directIO);
  }

  /** Whether downloads may still use O_DIRECT (configured, and not yet refused by the filesystem). */
  get directIO(): boolean {
    return this.#directIO;
  }

  /** The filesystem refused an O_DIRECT read or write: later downloads use the page cache. */
  directIORefused(): void {
    this.#directIO = false;
  }

  /**
   * A fresh file, open for reading and writing; with `direct`, also opened with O_DIRECT when the spool
   * may (a filesystem refusing the flag turns it off for good, and the file is still made).
   */
  async tempFile(options: { direct?: boolean } = {}): Promise<TempFile> {
    const path = join(this.dir, `${randomBytes(12).toString('hex')}.part`);
    const handle = await open(path, 'wx+', 0o644);
    if (!((options.direct ?? false) && this.#directIO)) return { path, handle };
    try {
      return { path, handle, direct: await open(path, constants.O_RDWR | constants.O_DIRECT) };
    } catch (err) {
      if (isDirectIORefusal(err)) {
        this.directIORefused();
        return { path, handle };
      }
      await handle.close().catch(() => {});
      await unlink(path).catch(() => {});
      throw err;
    }
  }

  /** Bytes the spool's filesystem has free for this process's writes, less what downloads reserved. */
  async freeBytes(): Promise<number> {
    const fs = await statfs(this.dir);
    return fs.bavail * fs.bsize - this.#reserved;
  }

  /**
   * Whether a blob of `bytes` fits, counting what downloads under way will still write; if it does, the
   * room is reserved until `release` (downloads at once cannot each see the same free space).
   */
  async reserve(bytes: number): Promise<{ release(): void } | undefined> {
    if ((await this.freeBytes()) < bytes + ROOM_MARGIN) return undefined;
    this.#reserved += bytes;
    let held = true;
    return {
      release: () => {
        if (!held) return;
        held = false;
        this.#reserved -= bytes;
      },
    };
  }

  /** Removes a spooled file (its handles are the caller's to close). */
  async discard(temp: TempFile): Promise<void> {
    await unlink(temp.path).catch(() => {});
  }
}
