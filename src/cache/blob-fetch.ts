// Missing blobs are fetched from upstream once, however many clients ask at the same time: the first
// request starts a download into a temp file and every request (the first included) reads that file as
// it grows. The last byte is held back until the digest is verified, so no client ever receives a whole
// body that was corrupted or truncated upstream: a failed download ends their connections early.
import { EventEmitter } from 'node:events';
import { Readable } from 'node:stream';
import type { RegistryClient } from '../registry/client.ts';
import type { RegistryError, RegistryResult } from '../registry/errors.ts';
import type { ContentStore, TempFile } from './store.ts';

const CHUNK = 256 * 1024;

/** One upstream download of one blob, readable by any number of clients while it runs. */
export class Download extends EventEmitter {
  readonly digest: string;
  /** Content-Length announced upstream, when it was. */
  readonly size: number | undefined;
  #written = 0;
  #state: 'running' | 'done' | 'failed' = 'running';
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

  /** Bytes readers may have: all once verified, else all but the last one. */
  visible(): number {
    return this.#state === 'done' ? this.#written : Math.max(0, this.#written - 1);
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

  /**
   * A stream of bytes [start, end] (end inclusive; undefined: to the end of the blob), or undefined
   * when the download is over and its file closed (the blob is then in the store, or failed).
   */
  reader(start: number, end: number | undefined): Readable | undefined {
    return this.acquire() ? new TailReader(this, start, end) : undefined;
  }

  async write(chunk: Buffer): Promise<void> {
    await this.#temp.handle.write(chunk, 0, chunk.length, this.#written);
    this.#written += chunk.length;
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

/** Reads a download's temp file as it grows; holds one reader registration until destroyed. */
class TailReader extends Readable {
  readonly #download: Download;
  #pos: number;
  readonly #end: number | undefined;
  #reading = false;

  constructor(download: Download, start: number, end: number | undefined) {
    super({ highWaterMark: CHUNK });
    this.#download = download;
    this.#pos = start;
    this.#end = end;
  }

  override _read(): void {
    if (this.#reading) return;
    this.#reading = true;
    this.#pump().then(
      () => {
        this.#reading = false;
      },
      (err: Error) => this.destroy(err),
    );
  }

  async #pump(): Promise<void> {
    const d = this.#download;
    for (;;) {
      const limit = this.#end === undefined ? d.visible() : Math.min(d.visible(), this.#end + 1);
      if (this.#pos < limit) {
        const buffer = Buffer.allocUnsafe(Math.min(CHUNK, limit - this.#pos));
        const n = await d.read(buffer, buffer.length, this.#pos);
        if (n === 0) throw new Error('temp file shorter than written');
        this.#pos += n;
        this.push(n === buffer.length ? buffer : buffer.subarray(0, n));
        return;
      }
      if (d.state === 'failed') throw d.error ?? new Error('upstream download failed');
      if (d.state === 'done' || (this.#end !== undefined && this.#pos > this.#end)) {
        this.push(null);
        return;
      }
      await new Promise<void>((resolve) => d.once('progress', resolve));
      if (this.destroyed) return;
    }
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#download.release();
    callback(error);
  }
}

export interface FetchObserver {
  started?(digest: string): void;
  finished?(digest: string, bytes: number, error: Error | undefined): void;
}

/** Starts or joins the one download of each missing blob. */
export class BlobFetcher {
  readonly #store: ContentStore;
  readonly #client: RegistryClient;
  readonly #observer: FetchObserver;
  readonly #inFlight = new Map<string, Promise<RegistryResult<Download>>>();

  constructor(store: ContentStore, client: RegistryClient, observer: FetchObserver = {}) {
    this.#store = store;
    this.#client = client;
    this.#observer = observer;
  }

  get inFlight(): number {
    return this.#inFlight.size;
  }

  /** Resolves once upstream answered (with the download under way) or failed to. */
  fetch(registry: string, repository: string, digest: string): Promise<RegistryResult<Download>> {
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

  async #start(registry: string, repository: string, digest: string): Promise<RegistryResult<Download>> {
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
      const error: RegistryError = {
        code: 'REG_BAD_INPUT',
        outcome: 'Invalid',
        message: `cannot write to the cache store: ${(err as Error).message}`,
      };
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
      for await (const chunk of body) await download.write(chunk as Buffer);
      if (download.size !== undefined && download.written !== download.size)
        throw new Error(`upstream sent ${download.written} of ${download.size} bytes`);
      await this.#store.commitBlob(temp, download.digest, download.written);
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
