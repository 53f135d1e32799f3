// The cache's content-addressed store on disk. Everything is written to tmp/ first and renamed into
// place only once complete and verified, so a crash leaves at most a temp file, which the next start
// removes. Layout under the store directory:
//   blobs/<alg>/<hex>       blob bytes
//   manifests/<alg>/<hex>   "<media type>\n" then the manifest bytes
//   tags/<sha256>.json      { name, tag, digest, checkedAt }, keyed by a hash of "<host>/<repo>:<tag>"
//   tmp/                    downloads and writes in progress
// Last use is the file's mtime, bumped (at most once a minute) when the object is served.
import { createHash, randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import {
  type FileHandle,
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  rm,
  stat,
  unlink,
  utimes,
} from 'node:fs/promises';
import { join } from 'node:path';
import { DIGEST } from '../core/reference/index.ts';
import type { ByteSource } from './copy.ts';

const TOUCH_AFTER_MS = 60_000;
/** Collection frees down to this share of the cap, so it does not run again at the next write. */
const LOW_WATER = 0.9;

export interface StoredManifest {
  readonly digest: string;
  readonly mediaType: string;
  readonly bytes: Buffer;
}

export interface TagRecord {
  /** "<upstream host>/<repository>" */
  readonly name: string;
  readonly tag: string;
  readonly digest: string;
  /** When upstream last confirmed (or gave) this digest for the tag, ms since the epoch. */
  readonly checkedAt: number;
}

export interface StoredBlob {
  /** The file holding it, for a store on local disk. */
  readonly path?: string | undefined;
  readonly size: number;
}

/** The bytes of a stored blob, read in order from where the first read asks (copy.ts). */
export interface BlobReader extends ByteSource {
  close(): Promise<void>;
}

/**
 * What a replica sharing the store with others should do about a missing blob: fetch it (others are
 * told to wait until `release`), or serve it, because another replica stored it meanwhile.
 */
export type DownloadClaim =
  | { readonly kind: 'fetch'; release(): Promise<void> }
  | { readonly kind: 'stored'; readonly blob: StoredBlob };

/**
 * What the cache needs of a store: the disk store below, or a bucket (s3-store.ts). Downloads are spooled
 * to a local temp file either way (blob-fetch.ts reads clients from it) and committed once verified.
 */
export interface CacheStore {
  readonly usedBytes: number;
  readonly maxSize: number | undefined;
  onEvict: ((evicted: Evicted) => void) | undefined;
  statBlob(digest: string): Promise<StoredBlob | undefined>;
  /** Opens a blob `statBlob` found; undefined when it is gone meanwhile (evicted). */
  openBlob(digest: string, blob: StoredBlob): Promise<BlobReader | undefined>;
  /** With serve: redirect, a URL a client may fetch the stored blob from itself. */
  blobUrl?(digest: string): Promise<string>;
  /** Stores shared between replicas: keeps two of them from fetching one blob at once (when it can). */
  claim?(digest: string): Promise<DownloadClaim>;
  readonly directIO: boolean;
  directIORefused(): void;
  tempFile(options?: { direct?: boolean }): Promise<TempFile>;
  commitBlob(temp: TempFile, digest: string, size: number): Promise<void>;
  discard(temp: TempFile): Promise<void>;
  getManifest(digest: string): Promise<StoredManifest | undefined>;
  putManifest(manifest: StoredManifest): Promise<void>;
  getTag(name: string, tag: string): Promise<TagRecord | undefined>;
  putTag(record: TagRecord): Promise<void>;
  collect(): Promise<Evicted>;
  close?(): Promise<void>;
}

/**
 * A fresh file in `dir`, open for reading and writing; with `direct`, also opened with O_DIRECT (a
 * filesystem refusing the flag calls `refused`, and the file is still made).
 */
export async function openTempFile(dir: string, direct: boolean, refused: () => void): Promise<TempFile> {
  const path = join(dir, `${randomBytes(12).toString('hex')}.part`);
  const handle = await open(path, 'wx+', 0o644);
  if (!direct) return { path, handle };
  try {
    return { path, handle, direct: await open(path, constants.O_RDWR | constants.O_DIRECT) };
  } catch (err) {
    if (isDirectIORefusal(err)) {
      refused();
      return { path, handle };
    }
    await handle.close().catch(() => {});
    await unlink(path).catch(() => {});
    throw err;
  }
}

/** A stored blob file as a reader: any offset, any order. */
export async function fileReader(path: string, size: number): Promise<BlobReader | undefined> {
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch (err) {
    if (isMissing(err)) return undefined;
    throw err;
  }
  return {
    available: () => size,
    complete: () => true,
    read: (buffer, length, position) => handle.read(buffer, 0, length, position).then((r) => r.bytesRead),
    more: () => Promise.reject(new Error('a stored blob does not grow')),
    close: () => handle.close().catch(() => {}),
  };
}

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

export interface Evicted {
  readonly blobs: number;
  readonly manifests: number;
  /** Tag records dropped because the manifest they name is gone. */
  readonly tags: number;
  readonly bytes: number;
}

/** The store could not be written (disk full, permissions, I/O): the cache's own failure, not upstream's. */
export class StoreWriteError extends Error {
  override readonly name = 'StoreWriteError';
  readonly code = 'STORE_WRITE_FAILED';
  /** The system error code (ENOSPC, EACCES, EIO, ...), when there was one. */
  readonly causeCode: string | undefined;

  constructor(what: string, err: unknown) {
    const causeCode = (err as NodeJS.ErrnoException | undefined)?.code;
    super(`cannot write to the cache store (${what}): ${err instanceof Error ? err.message : String(err)}`);
    this.causeCode = typeof causeCode === 'string' ? causeCode : undefined;
  }
}

/**
 * The store could not be read or written because the service behind it failed (S3 unreachable, timing
 * out, refusing the credentials): the cache's own failure; clients get a 503 naming it.
 */
export class StoreUnavailableError extends Error {
  override readonly name = 'StoreUnavailableError';
  readonly code = 'STORE_UNAVAILABLE';
}

export interface StoreOptions {
  readonly dir: string;
  readonly maxSize?: number | undefined;
  readonly fsync?: boolean | undefined;
  /** Let downloads write (and be read back) with O_DIRECT where the filesystem supports it. */
  readonly directIO?: boolean | undefined;
  readonly now?: (() => number) | undefined;
}

function split(digest: string): [string, string] {
  const colon = digest.indexOf(':');
  return [digest.slice(0, colon), digest.slice(colon + 1)];
}

/** The filesystem does not do O_DIRECT (at open, or at a read or write through such a handle). */
export function isDirectIORefusal(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'EINVAL' || code === 'EOPNOTSUPP';
}

function isMissing(err: unknown): boolean {
  return (err as NodeJS.ErrnoException).code === 'ENOENT';
}

/** Digests a manifest names: config, layers, and (for an index) its manifests. */
export function referencedDigests(bytes: Buffer): string[] {
  let doc: unknown;
  try {
    doc = JSON.parse(bytes.toString('utf8'));
  } catch {
    return [];
  }
  const out: string[] = [];
  const take = (d: unknown): void => {
    const digest = (d as { digest?: unknown } | null)?.digest;
    if (typeof digest === 'string' && DIGEST.test(digest)) out.push(digest);
  };
  if (typeof doc !== 'object' || doc === null) return out;
  const m = doc as { config?: unknown; layers?: unknown; manifests?: unknown };
  take(m.config);
  for (const list of [m.layers, m.manifests]) if (Array.isArray(list)) for (const d of list) take(d);
  return out;
}

/**
 * A stored tag record, or undefined when it is unreadable or names another tag (a damaged or foreign
 * record is a cache miss, never an answer). Both stores keep tag records in this one JSON shape.
 */
export function parseTagRecord(text: string, name: string, tag: string): TagRecord | undefined {
  try {
    const rec = JSON.parse(text) as TagRecord;
    if (rec.name !== name || rec.tag !== tag || !DIGEST.test(rec.digest) || typeof rec.checkedAt !== 'number')
      return undefined;
    return rec;
  } catch {
    return undefined;
  }
}

export class ContentStore implements CacheStore {
  readonly dir: string;
  readonly maxSize: number | undefined;
  readonly #fsync: boolean;
  #directIO: boolean;
  readonly #now: () => number;
  #used = 0;
  #collecting: Promise<Evicted> | undefined;
  /** The collection asked for while one runs: it starts once that one ends, and sees what changed. */
  #queued: Promise<Evicted> | undefined;

  private constructor(options: StoreOptions) {
    this.dir = options.dir;
    this.maxSize = options.maxSize;
    this.#fsync = options.fsync ?? true;
    this.#directIO = (options.directIO ?? true) && constants.O_DIRECT !== undefined;
    this.#now = options.now ?? Date.now;
  }

  /** Opens (creating) the store, drops what a crash left in tmp/, and sums what is stored. */
  static async open(options: StoreOptions): Promise<ContentStore> {
    const store = new ContentStore(options);
    await rm(join(store.dir, 'tmp'), { recursive: true, force: true });
    for (const sub of ['tmp', 'tags', 'blobs/sha256', 'blobs/sha512', 'manifests/sha256', 'manifests/sha512'])
      await mkdir(join(store.dir, sub), { recursive: true });
    for (const entry of await store.#objects()) store.#used += entry.size;
    return store;
  }

  /** Bytes held by blobs and manifests. */
  get usedBytes(): number {
    return this.#used;
  }

  blobPath(digest: string): string {
    const [alg, hex] = split(digest);
    return join(this.dir, 'blobs', alg, hex);
  }

  #manifestPath(digest: string): string {
    const [alg, hex] = split(digest);
    return join(this.dir, 'manifests', alg, hex);
  }

  #tagPath(name: string, tag: string): string {
    return join(this.dir, 'tags', `${createHash('sha256').update(`${name}:${tag}`).digest('hex')}.json`);
  }

  async statBlob(digest: string): Promise<{ path: string; size: number } | undefined> {
    const path = this.blobPath(digest);
    try {
      const info = await stat(path);
      this.#touch(path, info.mtimeMs);
      return { path, size: info.size };
    } catch (err) {
      if (isMissing(err)) return undefined;
      throw err;
    }
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
   * A fresh file under tmp/, open for reading and writing; with `direct`, also opened with O_DIRECT when
   * the store may (a filesystem refusing the flag turns it off for good, and the file is still made).
   */
  tempFile(options: { direct?: boolean } = {}): Promise<TempFile> {
    return openTempFile(join(this.dir, 'tmp'), (options.direct ?? false) && this.#directIO, () =>
      this.directIORefused(),
    );
  }

  openBlob(_digest: string, blob: StoredBlob): Promise<BlobReader | undefined> {
    return fileReader(blob.path as string, blob.size);
  }

  /** Makes a complete, verified temp file visible as the blob `digest`. */
  async commitBlob(temp: TempFile, digest: string, size: number): Promise<void> {
    if (this.#fsync) await temp.handle.datasync();
    const target = this.blobPath(digest);
    const existed = await stat(target).then(
      () => true,
      () => false,
    );
    await rename(temp.path, target);
    await this.#stamp(target);
    if (!existed) this.#used += size;
    this.#afterWrite();
  }

  async discard(temp: TempFile): Promise<void> {
    await unlink(temp.path).catch(() => {});
  }

  /** The stored manifest, counted as a use (its last use is bumped). */
  async getManifest(digest: string): Promise<StoredManifest | undefined> {
    const manifest = await this.#readManifest(digest);
    if (manifest) {
      const path = this.#manifestPath(digest);
      stat(path).then(
        (info) => this.#touch(path, info.mtimeMs),
        () => {},
      );
    }
    return manifest;
  }

  /** The stored manifest without counting a use (garbage collection looks, it does not use). */
  async #readManifest(digest: string): Promise<StoredManifest | undefined> {
    let data: Buffer;
    try {
      data = await readFile(this.#manifestPath(digest));
    } catch (err) {
      if (isMissing(err)) return undefined;
      throw err;
    }
    const nl = data.indexOf(0x0a);
    if (nl <= 0) return undefined;
    return { digest, mediaType: data.subarray(0, nl).toString('utf8'), bytes: data.subarray(nl + 1) };
  }

  /** Stores a manifest whose bytes were verified against `digest` by the caller. */
  async putManifest(manifest: StoredManifest): Promise<void> {
    const target = this.#manifestPath(manifest.digest);
    const data = Buffer.concat([Buffer.from(`${manifest.mediaType}\n`), manifest.bytes]);
    const existed = await stat(target).then(
      (info) => info.size,
      () => undefined,
    );
    await this.#writeAtomically(target, data);
    await this.#stamp(target);
    this.#used += data.length - (existed ?? 0);
    this.#afterWrite();
  }

  async getTag(name: string, tag: string): Promise<TagRecord | undefined> {
    let text: string;
    try {
      text = await readFile(this.#tagPath(name, tag), 'utf8');
    } catch (err) {
      if (isMissing(err)) return undefined;
      throw err;
    }
    return parseTagRecord(text, name, tag);
  }

  async putTag(record: TagRecord): Promise<void> {
    await this.#writeAtomically(this.#tagPath(record.name, record.tag), Buffer.from(JSON.stringify(record)));
  }

  async #writeAtomically(target: string, data: Buffer): Promise<void> {
    const temp = await this.tempFile();
    try {
      await temp.handle.writeFile(data);
      if (this.#fsync) await temp.handle.datasync();
      await temp.handle.close();
      await rename(temp.path, target);
    } catch (err) {
      await temp.handle.close().catch(() => {});
      await this.discard(temp);
      throw err;
    }
  }

  /** New objects are "used" now by the store's clock, the one last-use comparisons are made with. */
  async #stamp(path: string): Promise<void> {
    const t = new Date(this.#now());
    await utimes(path, t, t).catch(() => {});
  }

  #touch(path: string, mtimeMs: number): void {
    const now = this.#now();
    if (now - mtimeMs < TOUCH_AFTER_MS) return;
    const t = new Date(now);
    utimes(path, t, t).catch(() => {});
  }

  #afterWrite(): void {
    if (this.maxSize !== undefined && this.#used > this.maxSize) void this.collect().catch(() => {});
  }

  /** Observer for evictions (metrics, logs). */
  onEvict: ((evicted: Evicted) => void) | undefined;

  /**
   * Frees space down to below the cap by last use; blobs no cached manifest references go first, then
   * everything (manifests, referenced blobs) oldest first. Then drops tag records whose manifest is gone.
   * One collection runs at a time; asking during one queues (at most) one more.
   */
  collect(): Promise<Evicted> {
    const running = this.#collecting;
    if (running !== undefined) {
      this.#queued ??= running.then(
        () => this.#start(),
        () => this.#start(),
      );
      return this.#queued;
    }
    return this.#start();
  }

  #start(): Promise<Evicted> {
    this.#queued = undefined;
    const run = this.#collect().finally(() => {
      if (this.#collecting === run) this.#collecting = undefined;
    });
    this.#collecting = run;
    return run;
  }

  async #collect(): Promise<Evicted> {
    const evicted = { blobs: 0, manifests: 0, tags: 0, bytes: 0 };
    if (this.maxSize !== undefined && this.#used > this.maxSize) await this.#evict(this.maxSize, evicted);
    evicted.tags = await this.#dropOrphanTags();
    if (evicted.bytes > 0 || evicted.tags > 0) this.onEvict?.(evicted);
    return evicted;
  }

  async #evict(maxSize: number, evicted: { blobs: number; manifests: number; bytes: number }): Promise<void> {
    const objects = await this.#objects();
    const referenced = new Set<string>();
    for (const o of objects) {
      if (o.kind !== 'manifest') continue;
      const stored = await this.#readManifest(o.digest).catch(() => undefined);
      if (stored) for (const d of referencedDigests(stored.bytes)) referenced.add(d);
    }
    // Only blobs can be garbage: a manifest no tag names was pulled by digest and is kept by last use.
    const first = (o: { kind: string; digest: string }): number =>
      o.kind === 'blob' && !referenced.has(o.digest) ? 0 : 1;
    objects.sort((a, b) => first(a) - first(b) || a.mtimeMs - b.mtimeMs);
    const goal = maxSize * LOW_WATER;
    for (const o of objects) {
      if (this.#used <= goal) break;
      try {
        await unlink(o.path);
      } catch (err) {
        if (!isMissing(err)) throw err;
        continue;
      }
      this.#used -= o.size;
      evicted.bytes += o.size;
      if (o.kind === 'blob') evicted.blobs++;
      else evicted.manifests++;
    }
  }

  /**
   * Removes tag records that cannot answer: unreadable, or naming a manifest no longer stored. (A record
   * rewritten for a new digest at this very moment may go too; the tag is then fetched again.)
   */
  async #dropOrphanTags(): Promise<number> {
    const dir = join(this.dir, 'tags');
    let dropped = 0;
    for (const name of await readdir(dir)) {
      const path = join(dir, name);
      let digest: unknown;
      try {
        digest = (JSON.parse(await readFile(path, 'utf8')) as { digest?: unknown }).digest;
      } catch (err) {
        if (isMissing(err)) continue;
      }
      if (typeof digest === 'string' && DIGEST.test(digest)) {
        const stored = await stat(this.#manifestPath(digest)).then(
          () => true,
          (err: unknown) => !isMissing(err),
        );
        if (stored) continue;
      }
      await unlink(path).then(
        () => dropped++,
        (err: unknown) => {
          if (!isMissing(err)) throw err;
        },
      );
    }
    return dropped;
  }

  async #objects(): Promise<
    { kind: 'blob' | 'manifest'; digest: string; path: string; size: number; mtimeMs: number }[]
  > {
    const out: { kind: 'blob' | 'manifest'; digest: string; path: string; size: number; mtimeMs: number }[] =
      [];
    for (const [kind, sub] of [
      ['blob', 'blobs'],
      ['manifest', 'manifests'],
    ] as const) {
      for (const alg of ['sha256', 'sha512']) {
        const dir = join(this.dir, sub, alg);
        let names: string[];
        try {
          names = await readdir(dir);
        } catch (err) {
          if (isMissing(err)) continue;
          throw err;
        }
        for (const name of names) {
          const digest = `${alg}:${name}`;
          if (!DIGEST.test(digest)) continue;
          const path = join(dir, name);
          try {
            const info = await stat(path);
            out.push({ kind, digest, path, size: info.size, mtimeMs: info.mtimeMs });
          } catch {
            // removed meanwhile
          }
        }
      }
    }
    return out;
  }
}
