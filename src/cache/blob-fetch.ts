// Missing blobs are fetched from upstream once, however many clients ask at the same time: the first
// request starts a download into a temp file and every request (the first included) reads that file as
// it grows. The last byte is held back until the digest is verified, so no client ever receives a whole
// body that was corrupted or truncated upstream: a failed download ends their connections early.
import { EventEmitter } from 'node:events';
import type { Readable } from 'node:stream';
import type { RegistryClient } from '../registry/client.ts';
import type { RegistryError } from '../registry/errors.ts';
import type { ByteSource } from './copy.ts';
import { type ContentStore, StoreWriteError, type TempFile } from './store.ts';

const WRITE_BATCH = 1024 * 1024;

/** One upstream download of one blob, readable by any number of clients while it runs. */
export class Download extends EventEmitter implements ByteSource {
  readonly digest: string;
  /** Content-Length announced upstream, when it was. */
  readonly size: number | undefined;
  #written = 0;
  #state: 'running' | 'done' | 'failed' = 'running';
  /** Every byte is written and hashes to the digest (storing it may still be under way). */
  #verified = false;
  #error: Error | undefined;
  #readers = 0;
  #closed = false;
  readonly #temp: TempFile;

  constructor(digest: string, size: number | undefined, temp: TempFile) {
    super();
    this.setMaxListeners(0);
    this.digest = digest;
    this.size = size;
    this.#temp = temp;
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

  read(buffer: Buffer, length: number, position: number): Promise<number> {
    return this.#temp.handle.read(buffer, 0, length, position).then((r) => r.bytesRead);
  }

  /** Bytes readers may have: all once verified, else all but the last one. */
  available(): number {
    return this.#verified ? this.#written : Math.max(0, this.#written - 1);
  }

  complete(): boolean {
    return this.#verified;
  }

  more(): Promise<void> {
    if (this.#state === 'failed' && !this.#verified)
      return Promise.reject(this.#error ?? new Error('upstream download failed'));
    return new Promise((resolve) => this.once('progress', resolve));
  }

  /** Appends chunks to the temp file; readers see them once written. */
  async write(chunks: readonly Buffer[]): Promise<void> {
    const total = chunks.reduce((sum, c) => sum + c.length, 0);
    const { bytesWritten } = await this.#temp.handle.writev(chunks, this.#written).catch((err: unknown) => {
      throw new StoreWriteError('download', err);
    });
    if (bytesWritten !== total)
      throw new StoreWriteError('download', new Error(`short write (${bytesWritten} of ${total} bytes)`));
    this.#written += bytesWritten;
    this.emit('progress');
  }

  get written(): number {
    return this.#written;
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
  }
}

/** A download under way, or why none could start: upstream's answer, or the store refusing the write. */
export type FetchResult =
  | { readonly ok: true; readonly value: Download }
  | { readonly ok: false; readonly error: RegistryError | StoreWriteError };

export interface FetchObserver {
  started?(digest: string): void;
  finished?(digest: string, bytes: number, error: Error | undefined): void;
}

/** Starts or joins the one download of each missing blob. */
export class BlobFetcher {
  readonly #store: ContentStore;
  readonly #client: RegistryClient;
  readonly #observer: FetchObserver;
  readonly #inFlight = new Map<string, Promise<FetchResult>>();

  constructor(store: ContentStore, client: RegistryClient, observer: FetchObserver = {}) {
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
          if (!r.ok) this.#inFlight.delete(digest);
        },
        () => this.#inFlight.delete(digest),
      );
    }
    return pending;
  }

  async #start(registry: string, repository: string, digest: string): Promise<FetchResult> {
    this.#observer.started?.(digest);
    const answer = await this.#client.getBlob(registry, repository, digest);
    if (!answer.ok) {
      this.#observer.finished?.(digest, 0, new Error(answer.error.message));
      return answer;
    }
    const blob = answer.value;
    let temp: TempFile;
    try {
      temp = await this.#store.tempFile();
    } catch (err) {
      blob.body.destroy();
      const error = new StoreWriteError('temp file', err);
      this.#observer.finished?.(digest, 0, error);
      return { ok: false, error };
    }
    const download = new Download(digest, blob.size, temp);
    void this.#pump(download, blob.body, temp);
    return { ok: true, value: download };
  }

  async #pump(download: Download, body: Readable, temp: TempFile): Promise<void> {
    let error: Error | undefined;
    try {
      // The client's stream fails at its end when the content does not hash to the digest.
      // Chunks are written in batches (fewer system calls, fewer wake-ups for readers), one batch in
      // flight while the next one arrives from upstream.
      let batch: Buffer[] = [];
      let batched = 0;
      let writing: Promise<void> = Promise.resolve();
      for await (const chunk of body) {
        batch.push(chunk as Buffer);
        batched += (chunk as Buffer).length;
        if (batched >= WRITE_BATCH) {
          await writing;
          writing = download.write(batch);
          writing.catch(() => {});
          batch = [];
          batched = 0;
        }
      }
      await writing;
      if (batch.length > 0) await download.write(batch);
      if (download.size !== undefined && download.written !== download.size)
        throw new Error(`upstream sent ${download.written} of ${download.size} bytes`);
      // Clients get the whole blob now; making it durable in the store (fsync, rename) follows.
      download.verified();
      await this.#store.commitBlob(temp, download.digest, download.written).catch((err: unknown) => {
        throw new StoreWriteError('commit', err);
      });
    } catch (err) {
      error = err instanceof Error ? err : new Error(String(err));
      body.destroy();
      await this.#store.discard(temp);
    }
    // Leave the map before readers can see the end, so a late request finds the stored file instead.
    this.#inFlight.delete(download.digest);
    download.finish(error);
    this.#observer.finished?.(download.digest, download.written, error);
  }
}
