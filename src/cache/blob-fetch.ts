// Missing blobs are fetched from upstream once, however many clients ask at the same time: the first
// request starts a download and every request (the first included) reads it as it grows. The last byte
// is held back until the digest is verified, so no client ever receives a whole body that was corrupted
// or truncated upstream: a failed download ends their connections early.
//
// Upstream's bytes are gathered into a ring of up to RING units of UNIT bytes. A full unit is written to
// the temp file in the background (several writes may be in flight) and stays in memory until its write
// is done and the ring needs it again, so clients keeping up are served from memory: nobody waits for
// the disk unless the disk falls RING units behind upstream, or a client falls behind the ring (it then
// reads the file). Memory per download is fixed, however large the blob. Each full unit is also hashed;
// the download checks the digest itself.
//
// With storage.directIO (the default), units are written with O_DIRECT from page-aligned memory, so a
// blob streamed through once neither fills the page cache nor waits for its writeback (on a machine
// whose page cache is busy with other writers, such waits cut cold pulls by a third). Without it (or
// where the filesystem refuses O_DIRECT) the temp file is written through the page cache. Either way
// the writes run on libuv's pool and units are hashed on the main thread: no helper thread, which costs
// about 11 MiB each and bought nothing measurable (docs/decisions.md, "Cache memory: O_DIRECT without
// helper threads").

import { createHash, type Hash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { FileHandle } from 'node:fs/promises';
import type { Result } from '../core/errors.ts';
import { digestAlgorithm } from '../core/reference/index.ts';
import { type RegistryError, RegistryFailure } from '../registry/errors.ts';
import { Semaphore } from '../registry/semaphore.ts';
import { alignUp, giveAligned, takeAligned, UNIT } from './aligned.ts';
import type { ByteSource } from './copy.ts';
import { StoreWriteError } from './errors.ts';
import { isDirectIORefusal, type TempFile } from './store/spool.ts';
import type { CacheStore, DownloadClaim, StoredBlob } from './store/types.ts';
import type { BlobClient, BlobStream } from './transport/blobs.ts';

/**
 * Units per download, written with O_DIRECT or through the page cache: memory per download is RING
 * units of aligned memory, however large the blob. In `npm run bench`'s cold 200 MB pulls with direct
 * writes, 4 units and 8 met upstream equally (waits for a free unit 37-109 ms per blob against 30-58)
 * and 4 peaked 4 MiB lower (docs/decisions.md, "Cache memory: O_DIRECT without helper threads").
 */
export const RING = 4;
/**
 * Unit writes in flight per download on libuv's pool. More did not help on the test VM: concurrent
 * direct writes extending one ext4 file wait for each other on the inode's lock.
 */
const WRITERS = 2;

/** A unit of the ring: bytes [start, start + UNIT) of the blob (fewer for the last one). */
interface Slot {
  readonly buffer: Buffer;
  readonly start: number;
  /** Where its bytes end, once it is full (or the blob ended). */
  end: number;
  /** Its write to the file, started once it is full (or the blob ended). */
  write: Promise<void> | undefined;
  done: boolean;
}

/** One upstream download of one blob, readable by any number of clients while it runs. */
export class Download extends EventEmitter implements ByteSource {
  readonly digest: string;
  /** Content-Length announced upstream, when it was. */
  readonly size: number | undefined;
  #state: 'running' | 'done' | 'failed' = 'running';
  /** Every byte is received and hashes to the digest (storing it may still be under way). */
  #verified = false;
  #error: Error | undefined;
  #readers = 0;
  #closed = false;
  readonly #temp: TempFile;
  /** The O_DIRECT handle while direct I/O works; undefined once refused (or never offered). */
  #direct: FileHandle | undefined;
  readonly #onDirectRefused: () => void;
  /** Units in memory, in blob order; the last one is being filled. */
  #ring: Slot[] = [];
  /** Aligned units held for the ring (given back when the download is over). */
  #units: Buffer[];
  /** Bytes received so far. */
  #received = 0;
  /** Bytes on disk, counted from 0 (every write before them is done). */
  #written = 0;
  readonly #writers = new Semaphore(WRITERS);
  /** An append is waiting for a unit to be written. */
  #waiting = false;
  /** Milliseconds appends have waited for units to be written (upstream held back by the disk). */
  #diskWaitMs = 0;
  /** Units the ring may hold (RING at most): aligned ones, or as many ordinary ones. */
  readonly #capacity: number;
  /** The first write that failed; later appends and the end fail with it. */
  #writeError: Error | undefined;
  /** Hashes the units as they fill, on the main thread (SHA-256: about 120 ms of CPU per 200 MB). */
  readonly #algorithm: string;
  readonly #hash: Hash;
  #digest: Promise<string> | undefined;

  constructor(
    digest: string,
    size: number | undefined,
    temp: TempFile,
    onDirectRefused: () => void = () => {},
  ) {
    super();
    this.setMaxListeners(0);
    this.digest = digest;
    this.size = size;
    this.#temp = temp;
    this.#onDirectRefused = onDirectRefused;
    this.#units = [];
    const wanted = size === undefined ? RING : Math.max(1, Math.min(RING, Math.ceil(size / UNIT)));
    for (let i = 0; i < wanted; i++) {
      const unit = takeAligned();
      if (unit === undefined) break;
      this.#units.push(unit);
    }
    if (this.#units.length === wanted) {
      this.#direct = temp.direct;
    } else {
      // The aligned pool is used up: this download uses as many units of ordinary memory, and the page
      // cache, so memory stays bounded all the same.
      for (const unit of this.#units) giveAligned(unit);
      this.#units = [];
    }
    this.#capacity = wanted;
    this.#algorithm = digestAlgorithm(digest);
    this.#hash = createHash(this.#algorithm);
  }

  get state(): 'running' | 'done' | 'failed' {
    return this.#state;
  }

  get error(): Error | undefined {
    return this.#error;
  }

  /** Releases the last byte to readers: the content is whole and correct. */
  verified(): void {
    this.#verified = true;
    this.emit('progress');
  }

  /** Registers a reader; false once the download is over and its file handle closed. */
  acquire(): boolean {
    if (this.#closed) return false;
    this.#readers++;
    return true;
  }

  release(): void {
    this.#readers--;
    this.#maybeClose();
  }

  /** Reads from the ring when the bytes are still there (synchronously), else from the file. */
  read(buffer: Buffer, length: number, position: number): Promise<number> {
    const first = this.#ring[0];
    if (first !== undefined && position >= first.start) {
      const slot = this.#ring[Math.floor((position - first.start) / UNIT)] as Slot;
      const offset = position - slot.start;
      const n = Math.min(length, UNIT - offset, this.#received - position);
      return Promise.resolve(slot.buffer.copy(buffer, 0, offset, offset + n));
    }
    // Everything before the ring is on disk. A client this far behind reads through the page cache
    // (ordinary buffers, any offset): direct reads would need aligned buffers for every client.
    const span = Math.min(length, this.#written - position);
    if (span <= 0) return Promise.resolve(0);
    return this.#temp.handle.read(buffer, 0, span, position).then((r) => r.bytesRead);
  }

  /** Bytes readers may have: all once verified, else all but the last one. */
  available(): number {
    return this.#verified ? this.#received : Math.max(0, this.#received - 1);
  }

  complete(): boolean {
    return this.#verified;
  }

  more(): Promise<void> {
    if (this.#state === 'failed' && !this.#verified)
      return Promise.reject(this.#error ?? new Error('upstream download failed'));
    return new Promise((resolve) => this.once('progress', resolve));
  }

  /**
   * Takes upstream's next bytes. Answers a promise when the ring is full of units not yet on disk: the
   * rest of the chunk is taken once one is, and nothing more may be appended before it resolves.
   */
  append(chunk: Buffer): Promise<void> | undefined {
    if (this.#writeError) return Promise.reject(this.#writeError);
    if (this.#waiting) throw new Error('append() while an earlier append is still waiting for the disk');
    const stopped = this.#fill(chunk, 0);
    return stopped < 0 ? undefined : this.#fillAfterWrite(chunk, stopped);
  }

  /** Copies `chunk` from `at` into the ring: -1 when all of it went in, else where a full ring stopped it. */
  #fill(chunk: Buffer, at: number): number {
    const from = at;
    while (at < chunk.length) {
      let slot = this.#ring.at(-1);
      if (slot === undefined || slot.write !== undefined) {
        slot = this.#nextSlot();
        if (slot === undefined) break;
      }
      const n = chunk.copy(slot.buffer, this.#received - slot.start, at);
      this.#received += n;
      at += n;
      if (this.#received === slot.start + UNIT) this.#flush(slot);
    }
    if (at > from) this.emit('progress');
    return at < chunk.length ? at : -1;
  }

  async #fillAfterWrite(chunk: Buffer, at: number): Promise<void> {
    this.#waiting = true;
    const since = performance.now();
    try {
      while (at >= 0) {
        const oldest = this.#ring[0] as Slot;
        await oldest.write;
        at = this.#fill(chunk, at);
      }
    } finally {
      this.#waiting = false;
      this.#diskWaitMs += performance.now() - since;
    }
  }

  /** A unit for the next bytes: a new one while the ring is short, else the oldest once on disk. */
  #nextSlot(): Slot | undefined {
    let buffer: Buffer;
    if (this.#ring.length < this.#capacity) {
      buffer = this.#units[this.#ring.length] ?? Buffer.allocUnsafeSlow(UNIT);
    } else {
      const oldest = this.#ring[0] as Slot;
      if (!oldest.done) return undefined;
      this.#ring.shift();
      buffer = oldest.buffer;
    }
    const slot: Slot = {
      buffer,
      start: this.#received,
      end: this.#received,
      write: undefined,
      done: false,
    };
    this.#ring.push(slot);
    return slot;
  }

  /**
   * Hashes a full (or last) unit and queues its write: WRITERS at once on libuv's pool, started in
   * order and finishing in any order.
   */
  #flush(slot: Slot): void {
    slot.end = this.#received;
    this.#hash.update(slot.buffer.subarray(0, slot.end - slot.start));
    slot.write = this.#writeSlot(slot);
    slot.write.catch(() => {});
  }

  async #writeSlot(slot: Slot): Promise<void> {
    const release = await this.#writers.acquire();
    try {
      await this.#write(slot.buffer, slot.end - slot.start, slot.start);
    } catch (err) {
      this.#writeError ??= err as Error;
      throw err;
    } finally {
      release();
    }
    slot.done = true;
    // Units leave the ring oldest first and only once written, so what is on disk is everything before
    // the ring and then the ring's run of written units.
    for (const s of this.#ring) {
      if (!s.done) break;
      this.#written = Math.max(this.#written, s.end);
    }
  }

  /**
   * The digest of everything appended ("sha256:..."); writes may still be
   * under way (clients may have the blob before it is stored, never before it is verified).
   */
  digested(): Promise<string> {
    this.#flushLast();
    this.#digest ??= this.#writeError
      ? Promise.reject(this.#writeError)
      : Promise.resolve(`${this.#algorithm}:${this.#hash.digest('hex')}`);
    return this.#digest;
  }

  /** Writes what is left and waits for every write; the file then holds exactly the bytes appended. */
  async end(): Promise<void> {
    this.#flushLast();
    for (const slot of this.#ring) await slot.write;
    if (this.#writeError) throw this.#writeError;
    this.emit('progress');
  }

  /** Hashes a last, partly filled unit and starts its write. */
  #flushLast(): void {
    const last = this.#ring.at(-1);
    if (last !== undefined && last.write === undefined && this.#received > last.start) this.#flush(last);
  }

  /** Gives the units back once no write uses them; call when the download is over, however it went. */
  async dispose(): Promise<void> {
    for (const slot of this.#ring) await slot.write?.catch(() => {});
    this.#ring = [];
    for (const unit of this.#units) giveAligned(unit);
    this.#units = [];
  }

  async #write(unit: Buffer, length: number, position: number): Promise<void> {
    try {
      const direct = this.#direct;
      if (direct) {
        try {
          // A short last unit is written whole (direct I/O writes aligned lengths) and cut back after.
          const span = alignUp(length);
          await this.#exactly(direct, unit, span, position);
          if (span !== length) await direct.truncate(position + length);
          return;
        } catch (err) {
          if (!isDirectIORefusal(err)) throw err;
          this.#refuseDirect();
        }
      }
      await this.#exactly(this.#temp.handle, unit, length, position);
    } catch (err) {
      throw err instanceof StoreWriteError ? err : new StoreWriteError('download', err);
    }
  }

  async #exactly(handle: FileHandle, unit: Buffer, length: number, position: number): Promise<void> {
    const { bytesWritten: written } = await handle.write(unit, 0, length, position);
    if (written !== length)
      throw new StoreWriteError('download', new Error(`short write (${written} of ${length} bytes)`));
  }

  #refuseDirect(): void {
    // Not closed here: a read or write may still be using it; #maybeClose closes it with the file.
    if (this.#direct === undefined) return;
    this.#direct = undefined;
    this.#onDirectRefused();
  }

  get received(): number {
    return this.#received;
  }

  /** Seconds upstream was held back because every unit of the ring was still being written. */
  get diskWaitSeconds(): number {
    return this.#diskWaitMs / 1000;
  }

  finish(error: Error | undefined): void {
    this.#state = error ? 'failed' : 'done';
    this.#error = error;
    this.emit('progress');
    this.#maybeClose();
  }

  #maybeClose(): void {
    if (this.#state === 'running' || this.#readers > 0 || this.#closed) return;
    this.#closed = true;
    this.#temp.handle.close().catch(() => {});
    this.#temp.direct?.close().catch(() => {});
  }
}

/**
 * A download under way; or the blob, which another replica sharing the store stored meanwhile; or, the
 * store having no room for it, upstream's answer to stream through without keeping it (`through` hands
 * it to the first caller only: the others fetch their own); or why no download could start: upstream's
 * answer, or the store refusing the write.
 */
export type FetchResult = Result<
  Download | { readonly stored: StoredBlob } | { readonly through: () => BlobStream | undefined },
  RegistryError | StoreWriteError
>;

export interface FetchObserver {
  started?(digest: string): void;
  /** The store has no room for the blob (`error`: the write that said so); it is served, not kept. */
  noRoom?(digest: string, size: number | undefined, error: StoreWriteError | undefined): void;
  /** `diskWaitSeconds`: how long the download held upstream back waiting for its writes. */
  finished?(digest: string, bytes: number, error: Error | undefined, diskWaitSeconds: number): void;
}

/** Starts or joins the one download of each missing blob. */
export class BlobFetcher {
  readonly #store: CacheStore;
  readonly #client: BlobClient;
  readonly #observer: FetchObserver;
  readonly #inFlight = new Map<string, Promise<FetchResult>>();

  constructor(store: CacheStore, client: BlobClient, observer: FetchObserver = {}) {
    this.#store = store;
    this.#client = client;
    this.#observer = observer;
  }

  get inFlight(): number {
    return this.#inFlight.size;
  }

  /** Whether a download of `digest` is starting or under way. */
  downloading(digest: string): boolean {
    return this.#inFlight.has(digest);
  }

  /** Resolves once upstream answered (with the download under way) or failed to. */
  fetch(registry: string, repository: string, digest: string): Promise<FetchResult> {
    let pending = this.#inFlight.get(digest);
    if (pending === undefined) {
      pending = this.#start(registry, repository, digest);
      this.#inFlight.set(digest, pending);
      pending.then(
        (r) => {
          if (!r.ok || !(r.value instanceof Download)) this.#inFlight.delete(digest);
        },
        () => this.#inFlight.delete(digest),
      );
    }
    return pending;
  }

  async #start(registry: string, repository: string, digest: string): Promise<FetchResult> {
    // A store shared with other replicas: wait for one of them that is fetching this blob, rather
    // than fetching it too. Failing to ask (the store is down) does not stop the download: clients are
    // served from it whether or not it can be stored.
    const claim: DownloadClaim | undefined = this.#store.claim
      ? await this.#store.claim(digest).catch(() => undefined)
      : undefined;
    if (claim?.kind === 'stored') return { ok: true, value: { stored: claim.blob } };
    const release = (): void => {
      if (claim?.kind === 'fetch') void claim.release().catch(() => {});
    };
    this.#observer.started?.(digest);
    // The download checks the digest itself, hashing each unit as it fills.
    const answer = await this.#client.getBlob(registry, repository, digest, { checkDigest: false });
    if (!answer.ok) {
      release();
      this.#observer.finished?.(digest, 0, RegistryFailure.from(answer.error), 0);
      return answer;
    }
    const blob = answer.value;
    const spool = this.#store.spool;
    // No room for it (counting downloads under way): served, not kept.
    const room = await spool.reserve(blob.size ?? 0).catch(() => undefined);
    if (room === undefined) return this.#through(blob, release, undefined);
    let temp: TempFile;
    try {
      temp = await spool.tempFile({ direct: true });
    } catch (err) {
      room.release();
      const error = new StoreWriteError('temp file', err);
      if (error.noSpace) return this.#through(blob, release, error);
      release();
      blob.cancel();
      this.#observer.finished?.(digest, 0, error, 0);
      return { ok: false, error };
    }
    const download = new Download(digest, blob.size, temp, () => spool.directIORefused());
    void this.#pump(download, blob, temp, `${registry}/${repository}`).finally(() => {
      room.release();
      release();
    });
    return { ok: true, value: download };
  }

  /** The store cannot take the blob: the first caller streams `blob` through; later ones fetch their own. */
  #through(blob: BlobStream, release: () => void, error: StoreWriteError | undefined): FetchResult {
    release();
    this.#observer.noRoom?.(blob.digest, blob.size, error);
    let spare: BlobStream | undefined = blob;
    return {
      ok: true,
      value: {
        through: () => {
          const taken = spare;
          spare = undefined;
          return taken;
        },
      },
    };
  }

  async #pump(download: Download, blob: BlobStream, temp: TempFile, repository: string): Promise<void> {
    let error: Error | undefined;
    try {
      // The ring copies each chunk (or, when full, holds the transfer until it can) and hashes it.
      await blob.pipeTo((chunk) => download.append(chunk));
      const actual = await download.digested();
      if (actual !== download.digest)
        throw new RegistryFailure(
          'REG_DIGEST_MISMATCH',
          `blob ${repository}@${download.digest}: content hashes to ${actual}`,
        );
      if (download.size !== undefined && download.received !== download.size)
        throw new RegistryFailure(
          'REG_CONNECTION_FAILED',
          `blob ${repository}@${download.digest}: upstream sent ${download.received} of ${download.size} bytes`,
        );
      // Clients get the whole blob now, from memory or from what is on disk; storing it (the last
      // writes, fsync, rename) follows.
      download.verified();
      await download.end();
      await this.#store.commitBlob(temp, download.digest, download.received).catch((err: unknown) => {
        throw new StoreWriteError('commit', err);
      });
    } catch (err) {
      error = err instanceof Error ? err : new Error(String(err));
      blob.cancel();
      await this.#store.spool.discard(temp);
    }
    await download.dispose();
    // Leave the map before readers can see the end, so a late request finds the stored file instead.
    this.#inFlight.delete(download.digest);
    download.finish(error);
    this.#observer.finished?.(download.digest, download.received, error, download.diskWaitSeconds);
  }
}
