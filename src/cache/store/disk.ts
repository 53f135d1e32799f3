// The cache's content-addressed store on disk. Everything is written to the spool (tmp/) first and
// renamed into place only once complete and verified, so a crash leaves at most a temp file, which the
// next start removes. Layout under the store directory:
//   blobs/<alg>/<hex>       blob bytes
//   manifests/<alg>/<hex>   "<media type>\n" then the manifest bytes
//   tags/<sha256>.json      { name, tag, digest, checkedAt }, keyed by a hash of "<host>/<repo>:<tag>"
//   tmp/                    the download spool, and writes in progress
// Last use is the file's mtime, bumped (at most once a minute) when the object is served.
import {
  type FileHandle,
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  stat,
  unlink,
  utimes,
} from 'node:fs/promises';
import { join } from 'node:path';
import { DIGEST } from '../../core/reference/index.ts';
import { isOrphanTag, overCap, type StoredObject, toEvict, useIsStale } from './eviction.ts';
import { describeStore } from './listing.ts';
import { Spool, type TempFile } from './spool.ts';
import {
  type BlobReader,
  type CacheStore,
  type Evicted,
  parseTagRecord,
  readTagRecord,
  referencedDigests,
  type StoredBlob,
  type StoredManifest,
  type StoreListing,
  splitDigest,
  type TagRecord,
  tagRecordName,
} from './types.ts';

const TOUCH_AFTER_MS = 60_000;
/** Tag records read at once when all of them are read (listing, the tags/list fallback). */
const TAG_READS = 16;

export interface DiskStoreOptions {
  readonly dir: string;
  readonly maxSize?: number | undefined;
  readonly fsync?: boolean | undefined;
  /**
   * Let downloads write (and be read back) with O_DIRECT where the filesystem supports it; default on
   * (no waits for page-cache writeback, for the same memory: docs/decisions.md, "Cache memory: O_DIRECT
   * without helper threads").
   */
  readonly directIO?: boolean | undefined;
  readonly now?: (() => number) | undefined;
}

interface DiskObject extends StoredObject {
  readonly path: string;
}

function isMissing(err: unknown): boolean {
  return (err as NodeJS.ErrnoException).code === 'ENOENT';
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

export class DiskStore implements CacheStore {
  readonly dir: string;
  readonly maxSize: number | undefined;
  readonly spool: Spool;
  readonly #fsync: boolean;
  readonly #now: () => number;
  #used = 0;
  #collecting: Promise<Evicted> | undefined;
  /** The collection asked for while one runs: it starts once that one ends, and sees what changed. */
  #queued: Promise<Evicted> | undefined;
  /** Observer for evictions (metrics, logs). */
  onEvict: ((evicted: Evicted) => void) | undefined;

  private constructor(options: DiskStoreOptions, spool: Spool) {
    this.dir = options.dir;
    this.maxSize = options.maxSize;
    this.spool = spool;
    this.#fsync = options.fsync ?? true;
    this.#now = options.now ?? Date.now;
  }

  /** Opens (creating) the store, drops what a crash left in tmp/, and sums what is stored. */
  static async open(options: DiskStoreOptions): Promise<DiskStore> {
    // The spool is under the store so that a verified download is renamed into place, not copied.
    const spool = await Spool.open(join(options.dir, 'tmp'), options.directIO ?? true);
    const store = new DiskStore(options, spool);
    for (const sub of ['tags', 'blobs/sha256', 'blobs/sha512', 'manifests/sha256', 'manifests/sha512'])
      await mkdir(join(store.dir, sub), { recursive: true });
    for (const entry of await store.#objects()) store.#used += entry.size;
    return store;
  }

  /** Bytes held by blobs and manifests. */
  get usedBytes(): number {
    return this.#used;
  }

  blobPath(digest: string): string {
    const [alg, hex] = splitDigest(digest);
    return join(this.dir, 'blobs', alg, hex);
  }

  #manifestPath(digest: string): string {
    const [alg, hex] = splitDigest(digest);
    return join(this.dir, 'manifests', alg, hex);
  }

  #tagPath(name: string, tag: string): string {
    return join(this.dir, 'tags', tagRecordName(name, tag));
  }

  async useBlob(digest: string): Promise<{ path: string; size: number } | undefined> {
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

  openBlob(_digest: string, blob: StoredBlob): Promise<BlobReader | undefined> {
    return fileReader(blob.path as string, blob.size);
  }

  /** Makes a complete, verified spooled file visible as the blob `digest`. */
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

  async allTags(): Promise<TagRecord[]> {
    return (await this.#tagFiles()).flatMap((t) => (t.record ? [t.record] : []));
  }

  async list(): Promise<StoreListing> {
    const objects = await this.#objects();
    const references = new Map<string, readonly string[]>();
    for (const o of objects) {
      if (o.kind !== 'manifest') continue;
      const stored = await this.#readManifest(o.digest).catch(() => undefined);
      if (stored) references.set(o.digest, referencedDigests(stored.bytes));
    }
    return describeStore({ maxSize: this.maxSize, objects, tags: await this.allTags(), references });
  }

  /** Every tag record file with its text and record (undefined when unreadable). */
  async #tagFiles(): Promise<{ path: string; text: string; record: TagRecord | undefined }[]> {
    const dir = join(this.dir, 'tags');
    const names = await readdir(dir);
    const out: { path: string; text: string; record: TagRecord | undefined }[] = [];
    for (let i = 0; i < names.length; i += TAG_READS) {
      const batch = await Promise.all(
        names.slice(i, i + TAG_READS).map(async (n) => {
          const path = join(dir, n);
          const text = await readFile(path, 'utf8').catch((err: unknown) => {
            if (isMissing(err)) return undefined;
            throw err;
          });
          return text === undefined ? undefined : { path, text, record: readTagRecord(text) };
        }),
      );
      for (const t of batch) if (t) out.push(t);
    }
    return out;
  }

  async #writeAtomically(target: string, data: Buffer): Promise<void> {
    const temp = await this.spool.tempFile();
    try {
      await temp.handle.writeFile(data);
      if (this.#fsync) await temp.handle.datasync();
      await temp.handle.close();
      await rename(temp.path, target);
    } catch (err) {
      await temp.handle.close().catch(() => {});
      await this.spool.discard(temp);
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
    if (!useIsStale(mtimeMs, now, TOUCH_AFTER_MS)) return;
    const t = new Date(now);
    utimes(path, t, t).catch(() => {});
  }

  #afterWrite(): void {
    if (overCap(this.#used, this.maxSize)) void this.collect().catch(() => {});
  }

  /**
   * Frees space down to below the cap (eviction.ts), then drops tag records whose manifest is gone. One
   * collection runs at a time; asking during one queues (at most) one more.
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
    let objects = await this.#objects();
    if (overCap(this.#used, this.maxSize)) {
      const referenced = new Set<string>();
      for (const o of objects) {
        if (o.kind !== 'manifest') continue;
        const stored = await this.#readManifest(o.digest).catch(() => undefined);
        if (stored) for (const d of referencedDigests(stored.bytes)) referenced.add(d);
      }
      const gone = new Set<DiskObject>();
      for (const o of toEvict(objects, referenced, this.#used, this.maxSize)) {
        try {
          await unlink(o.path);
        } catch (err) {
          if (!isMissing(err)) throw err;
          continue;
        }
        gone.add(o);
        this.#used -= o.size;
        evicted.bytes += o.size;
        if (o.kind === 'blob') evicted.blobs++;
        else evicted.manifests++;
      }
      objects = objects.filter((o) => !gone.has(o));
    }
    const manifests = new Set(objects.filter((o) => o.kind === 'manifest').map((o) => o.digest));
    for (const t of await this.#tagFiles()) {
      if (!isOrphanTag(t.text, manifests)) continue;
      // A manifest stored since the listing keeps its record.
      if (
        t.record &&
        (await stat(this.#manifestPath(t.record.digest)).then(
          () => true,
          () => false,
        ))
      )
        continue;
      await unlink(t.path).then(
        () => evicted.tags++,
        (err: unknown) => {
          if (!isMissing(err)) throw err;
        },
      );
    }
    if (evicted.bytes > 0 || evicted.tags > 0) this.onEvict?.(evicted);
    return evicted;
  }

  async #objects(): Promise<DiskObject[]> {
    const out: DiskObject[] = [];
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
            out.push({ kind, digest, path, size: info.size, lastUse: info.mtimeMs });
          } catch {
            // removed meanwhile
          }
        }
      }
    }
    return out;
  }
}
