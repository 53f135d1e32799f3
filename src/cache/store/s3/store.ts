// The cache's store in an S3-compatible bucket, shared by any number of cache replicas. Loaded only
// in S3 mode (index.ts imports it dynamically), so the AWS SDK costs the disk store nothing.
//
// Layout under the configured prefix (keys.ts), content-addressed like the disk store (disk.ts):
//   blobs/<alg>/<hex>            blob bytes
//   manifests/<alg>/<hex>        manifest bytes; Content-Type is the media type
//   tags/<sha256>.json           { name, tag, digest, checkedAt }, keyed by a hash of "<host>/<repo>:<tag>"
//   used/<kind>/<alg>/<hex>      empty; written when an object is served (by each replica at most once
//                                per TOUCH_AFTER_MS): its LastModified is the object's last use
//   downloading/<alg>/<hex>      { owner, expiresAt }: a replica is fetching this blob (lease.ts)
//
// Nothing is written under a blob's key before its digest is verified: a download is spooled to a local
// temp file (clients are served from it, blob-fetch.ts) and uploaded, as one PUT or a multipart upload,
// only after the digest checked out. A failed upload is aborted; a crash mid-upload leaves an incomplete
// multipart upload, which is invisible to readers and aborted at the next start of any replica.
//
// Last use: S3 cannot change an object's LastModified without copying it, and tagging every read would
// be a write per pull. A `used/` marker is an empty PUT at most once per object, replica and interval,
// and the garbage collector gets all LastModified values from the listings it makes anyway.
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import type { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { rootCertificates } from 'node:tls';
import {
  AbortMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  type GetObjectCommandOutput,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
  type UploadPartCommand,
} from '@aws-sdk/client-s3';
import { fromIni } from '@aws-sdk/credential-provider-ini';
import { type ProxyConfig, proxyFor } from '../../../core/proxy.ts';
import { digestAlgorithm } from '../../../core/reference/index.ts';
import { http } from '../../../net/node-http.ts';
import { hasProxy } from '../../../registry/proxy-agent.ts';
import { Semaphore } from '../../../registry/semaphore.ts';
import type { S3StorageConfig } from '../../config.ts';
import { StoreUnavailableError, StoreWriteError } from '../../errors.ts';
import { proxiedAgents } from '../../transport/proxy-agents.ts';
import { type WireResponse, wireGet } from '../../transport/wire.ts';
import { isOrphanTag, overCap, toEvict, useIsStale } from '../eviction.ts';
import { describeStore } from '../listing.ts';
import { Spool, type TempFile } from '../spool.ts';
import {
  type BlobReader,
  type CacheStore,
  type DownloadClaim,
  type Evicted,
  parseTagRecord,
  readTagRecord,
  referencedDigests,
  type StoredBlob,
  type StoredManifest,
  type StoreListing,
  splitDigest,
  type TagRecord,
} from '../types.ts';
import { inventory, type Listed, staleLeases } from './collection.ts';
import { BucketKeys } from './keys.ts';
import { leaseBody, nextStep, parseLease, renewalInterval, staleLeaseAge } from './lease.ts';
import { putFileRange } from './put.ts';
import { WireObjectReader } from './reader.ts';
import { uploadFile } from './upload.ts';

/** A replica records a use of one object at most this often. */
const TOUCH_AFTER_MS = 15 * 60_000;
/** Entries of the touch memo before it is cleared (bounded memory). */
const TOUCH_MEMO_MAX = 100_000;
/**
 * Multipart part size and parts in flight per upload. Parts stream from the spool file (upload.ts), so
 * neither costs memory. 200 MB to SeaweedFS on the test VM (lib-storage, buffered): 16 MiB x 2 and x 4
 * 67 MB/s, 8 MiB x 4 53 MB/s, 32 MiB x 2 57 MB/s (the service was the limit).
 */
const PART_SIZE = 16 * 2 ** 20;
const PARTS_IN_FLIGHT = 2;
/** Uploads at once. */
const UPLOADS = 2;
/** Lifetime of the presigned URL of one upload PUT (signed just before it is sent). */
const PUT_URL_EXPIRY_S = 3600;
/** Manifests and tag records larger than this are not read (registries cap manifests at 4 MiB). */
const MAX_SMALL_OBJECT = 8 * 2 ** 20;
/** How often a waiting replica looks whether the blob another one downloads is stored. */
const PEER_POLL_MS = 200;
/** Multipart uploads older than this, under the prefix, are crash leftovers: aborted at start. */
const STALE_UPLOAD_MS = 3_600_000;

export interface S3StoreOptions {
  readonly s3: S3StorageConfig;
  /** Local directory for temp files of downloads in flight; undefined: a fresh one in the OS temp dir. */
  readonly spoolDir: string | undefined;
  readonly maxSize: number | undefined;
  /**
   * storage.directIO: the spool is written with O_DIRECT. Its upload then reads the file from disk, not
   * from the page cache, but a cold pull no longer waits for writeback of what others wrote: 0.90-1.02x
   * docker-registry's proxy on S3 instead of 0.60-0.62x (docs/decisions.md, "Cache memory: O_DIRECT
   * without helper threads").
   */
  readonly directIO: boolean;
  /** PEM of extra CAs trusted for the endpoint. */
  readonly caPem?: string | undefined;
  readonly now?: (() => number) | undefined;
  /** HTTP proxies for the endpoint (Go's rules); undefined: direct. */
  readonly proxy?: ProxyConfig | undefined;
  /** Reports failures of background work (garbage collection, last-use markers). */
  readonly onBackgroundError?: ((what: string, err: unknown) => void) | undefined;
}

function status(err: unknown): number | undefined {
  return (err as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode;
}

const isNotFound = (err: unknown): boolean => status(err) === 404;
/** A conditional write lost: the key exists (412), or a concurrent conditional write won (409). */
const isConditionLost = (err: unknown): boolean => status(err) === 412 || status(err) === 409;

type Presign = typeof import('@aws-sdk/s3-request-presigner').getSignedUrl;

/** The presigner, loaded on first use (about 2 MiB of resident memory). */
async function loadPresigner(): Promise<Presign> {
  const m = await import('@aws-sdk/s3-request-presigner');
  // In the bundle (esbuild), a dynamic import of a CommonJS package gives its exports as `default`.
  return m.getSignedUrl ?? (m as unknown as { default: { getSignedUrl: Presign } }).default.getSignedUrl;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms).unref());

export class S3Store implements CacheStore {
  readonly maxSize: number | undefined;
  onEvict: ((evicted: Evicted) => void) | undefined;
  readonly blobUrl?: (digest: string) => Promise<string>;
  readonly #config: S3StorageConfig;
  readonly #client: S3Client;
  readonly #bucket: string;
  readonly #keys: BucketKeys;
  readonly #where: string;
  readonly spool: Spool;
  readonly #ownSpool: boolean;
  readonly #now: () => number;
  readonly #onBackgroundError: (what: string, err: unknown) => void;
  readonly #uploads = new Semaphore(UPLOADS);
  /** Ends blob reads on the transport's own connections when the store closes. */
  readonly #closing = new AbortController();
  /** Trusted for the endpoint on the blob transport: the system roots plus caPem. */
  readonly #ca: readonly string[] | undefined;
  readonly #proxy: ProxyConfig | undefined;
  #presign: Promise<Presign> | undefined;
  /** The SDK client's agents, also carrying the upload bodies (put.ts). */
  readonly #agents: { httpAgent: HttpAgent; httpsAgent: HttpsAgent };
  /** This replica's name in leases. */
  readonly #owner = randomBytes(8).toString('hex');
  readonly #touched = new Map<string, number>();
  #used = 0;
  #collecting: Promise<Evicted> | undefined;
  #timer: NodeJS.Timeout | undefined;

  private constructor(options: S3StoreOptions, spool: Spool, ownSpool: boolean) {
    const s3 = options.s3;
    this.#config = s3;
    this.maxSize = options.maxSize;
    this.#bucket = s3.bucket;
    this.#keys = new BucketKeys(s3.prefix);
    this.#where = `bucket ${s3.bucket}${s3.endpoint ? ` at ${s3.endpoint}` : ` in ${s3.region}`}`;
    this.spool = spool;
    this.#ownSpool = ownSpool;
    this.#now = options.now ?? Date.now;
    this.#onBackgroundError = options.onBackgroundError ?? (() => {});
    const agentOptions = { keepAlive: true, maxSockets: s3.maxConcurrent };
    const caOptions = options.caPem === undefined ? {} : { ca: options.caPem };
    this.#ca = options.caPem === undefined ? undefined : [...rootCertificates, options.caPem];
    this.#proxy = options.proxy;
    // Through HTTPS_PROXY / HTTP_PROXY unless NO_PROXY (or the loopback) says direct, host by host.
    const agents: { httpAgent: HttpAgent; httpsAgent: HttpsAgent } = hasProxy(options.proxy)
      ? proxiedAgents(options.proxy, { ...agentOptions, ...caOptions, connectTimeoutMs: s3.connectTimeoutMs })
      : {
          httpAgent: new http.Agent(agentOptions),
          httpsAgent: new HttpsAgent({ ...agentOptions, ...caOptions }),
        };
    const config: S3ClientConfig = {
      region: s3.region,
      forcePathStyle: s3.forcePathStyle,
      ...(s3.endpoint === undefined ? {} : { endpoint: s3.endpoint }),
      ...(s3.credentialsFile === undefined
        ? {}
        : {
            credentials: fromIni({
              filepath: s3.credentialsFile,
              configFilepath: s3.credentialsFile,
              ...(s3.profile === undefined ? {} : { profile: s3.profile }),
            }),
          }),
      requestHandler: {
        connectionTimeout: s3.connectTimeoutMs,
        // Until the answer starts (a hung service is an error, not a warning), and then idle gaps.
        requestTimeout: s3.timeoutMs,
        throwOnRequestTimeout: true,
        socketTimeout: s3.timeoutMs,
        ...agents,
      },
      // Checksums only where S3 requires them: S3-compatible services differ in which trailing-checksum
      // encodings they accept; blobs are verified against their digest before upload.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      maxAttempts: 3,
    };
    this.#client = new S3Client(config);
    this.#agents = agents;
    if (s3.serve === 'redirect')
      this.blobUrl = async (digest) => {
        this.#presign ??= loadPresigner();
        const getSignedUrl = await this.#presign;
        return getSignedUrl(
          this.#client,
          new GetObjectCommand({ Bucket: this.#bucket, Key: this.#keys.blob(digest) }),
          {
            expiresIn: Math.floor(s3.redirectExpiryMs / 1000),
          },
        );
      };
  }

  /** Checks that the bucket answers, prepares the spool, aborts uploads a crash left, sums what is stored. */
  static async open(options: S3StoreOptions): Promise<S3Store> {
    const ownSpool = options.spoolDir === undefined;
    const spool =
      options.spoolDir === undefined
        ? new Spool(await mkdtemp(join(tmpdir(), 'pullmap-cache-spool-')), options.directIO)
        : await Spool.open(join(options.spoolDir, 'tmp'), options.directIO);
    const store = new S3Store(options, spool, ownSpool);
    try {
      await store.#call('list the bucket', () =>
        store.#client.send(
          new ListObjectsV2Command({ Bucket: store.#bucket, Prefix: store.#keys.prefix, MaxKeys: 1 }),
        ),
      );
    } catch (err) {
      await store.close();
      throw err;
    }
    void store
      .#abortStaleUploads()
      .catch((err: unknown) => store.#onBackgroundError('abort stale uploads', err));
    if (options.maxSize !== undefined && options.s3.gcIntervalMs > 0) {
      store.#timer = setInterval(() => {
        void store.collect().catch((err: unknown) => store.#onBackgroundError('garbage collection', err));
      }, options.s3.gcIntervalMs);
      store.#timer.unref();
    }
    return store;
  }

  async close(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#closing.abort(new Error('the store was closed'));
    this.#client.destroy();
    if (this.#ownSpool) await rm(this.spool.dir, { recursive: true, force: true }).catch(() => {});
  }

  /** Bytes held by blobs and manifests: summed at each collection, plus what this replica wrote since. */
  get usedBytes(): number {
    return this.#used;
  }

  /** Runs one S3 call; a failure of the service becomes StoreUnavailableError naming the bucket. */
  async #call<T>(what: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (err) {
      throw this.#unavailable(what, err);
    }
  }

  #unavailable(what: string, err: unknown): StoreUnavailableError {
    if (err instanceof StoreUnavailableError) return err;
    const e = err as { name?: string; message?: string; code?: string } | undefined;
    const http = status(err);
    const detail = [e?.name, http === undefined ? undefined : `HTTP ${http}`, e?.code]
      .filter(Boolean)
      .join(', ');
    return new StoreUnavailableError(
      `cache store unavailable (storage.s3, ${this.#where}): cannot ${what}: ${e?.message ?? String(err)}${detail ? ` (${detail})` : ''}`,
      { cause: err },
    );
  }

  /** Reads a small object whole; undefined when it does not exist. */
  async #getSmall(
    key: string,
    what: string,
  ): Promise<{ bytes: Buffer; contentType: string | undefined } | undefined> {
    return this.#call(what, async () => {
      let res: GetObjectCommandOutput;
      try {
        res = await this.#client.send(new GetObjectCommand({ Bucket: this.#bucket, Key: key }));
      } catch (err) {
        if (isNotFound(err)) return undefined;
        throw err;
      }
      if (res.ContentLength !== undefined && res.ContentLength > MAX_SMALL_OBJECT) {
        (res.Body as unknown as Readable | undefined)?.destroy();
        return undefined;
      }
      const bytes = Buffer.from((await res.Body?.transformToByteArray()) ?? new Uint8Array());
      return { bytes, contentType: res.ContentType };
    });
  }

  async #head(key: string, what: string): Promise<{ size: number } | undefined> {
    return this.#call(what, async () => {
      try {
        const res = await this.#client.send(new HeadObjectCommand({ Bucket: this.#bucket, Key: key }));
        return { size: res.ContentLength ?? 0 };
      } catch (err) {
        if (isNotFound(err)) return undefined;
        throw err;
      }
    });
  }

  /** Records a use of the object at `key` (background; at most once per TOUCH_AFTER_MS per replica). */
  #touch(key: string): void {
    const now = this.#now();
    if (!useIsStale(this.#touched.get(key), now, TOUCH_AFTER_MS)) return;
    if (this.#touched.size >= TOUCH_MEMO_MAX) this.#touched.clear();
    this.#touched.set(key, now);
    this.#client
      .send(
        new PutObjectCommand({ Bucket: this.#bucket, Key: this.#keys.used(key), Body: '', ContentLength: 0 }),
      )
      .catch((err: unknown) => {
        this.#touched.delete(key);
        this.#onBackgroundError('record a use', this.#unavailable('record a use', err));
      });
  }

  async useBlob(digest: string): Promise<StoredBlob | undefined> {
    const key = this.#keys.blob(digest);
    const found = await this.#head(key, `look up blob ${digest}`);
    if (found) this.#touch(key);
    return found;
  }

  async openBlob(digest: string, blob: StoredBlob): Promise<BlobReader | undefined> {
    const key = this.#keys.blob(digest);
    return new WireObjectReader(
      (position) => this.#getRange(key, position, blob.size),
      blob.size,
      (err) => this.#unavailable(`read blob ${digest}`, err),
    );
  }

  /** A GET of `key` from `position` to its end, on the blob transport with a presigned URL. */
  async #getRange(key: string, position: number, size: number): Promise<WireResponse> {
    this.#presign ??= loadPresigner();
    const presign = await this.#presign;
    const url = new URL(
      await presign(this.#client, new GetObjectCommand({ Bucket: this.#bucket, Key: key }), {
        expiresIn: 300,
      }),
    );
    const res = await wireGet({
      url,
      headers: { range: `bytes=${position}-${size - 1}` },
      signal: this.#closing.signal,
      connectTimeoutMs: this.#config.connectTimeoutMs,
      timeoutMs: this.#config.timeoutMs,
      ca: this.#ca,
      proxy: this.#proxy && proxyFor(this.#proxy, url),
    });
    if (res.statusCode === 206 || (res.statusCode === 200 && position === 0)) return res;
    res.cancel();
    throw Object.assign(new Error(`GET of a range answered ${res.statusCode}`), {
      name: 'UnexpectedStatus',
      $metadata: { httpStatusCode: res.statusCode },
    });
  }

  /** PUTs bytes [start, end) of a spool file as the body of `command`, to its presigned URL (put.ts). */
  async #putRange(
    command: PutObjectCommand | UploadPartCommand,
    path: string,
    start: number,
    end: number,
  ): Promise<string | undefined> {
    this.#presign ??= loadPresigner();
    const presign = await this.#presign;
    const options = { expiresIn: PUT_URL_EXPIRY_S };
    // One call per command type: the presigner's signature takes one command type at a time.
    const signed =
      command instanceof PutObjectCommand
        ? presign(this.#client, command, options)
        : presign(this.#client, command, options);
    const url = new URL(await signed);
    const contentType = command instanceof PutObjectCommand ? command.input.ContentType : undefined;
    return putFileRange({
      url,
      headers: contentType === undefined ? {} : { 'content-type': contentType },
      agent: url.protocol === 'https:' ? this.#agents.httpsAgent : this.#agents.httpAgent,
      path,
      start,
      end,
      timeoutMs: this.#config.timeoutMs,
    });
  }

  /** Uploads a complete, verified temp file as the blob `digest` (unless a peer stored it already). */
  async commitBlob(temp: TempFile, digest: string, size: number): Promise<void> {
    const key = this.#keys.blob(digest);
    try {
      const there = await this.#head(key, `look up blob ${digest}`);
      if (there?.size === size) return;
      const release = await this.#uploads.acquire();
      try {
        await this.#call(`upload blob ${digest}`, () =>
          uploadFile(
            this.#client,
            {
              bucket: this.#bucket,
              key,
              size,
              contentType: 'application/octet-stream',
              partSize: PART_SIZE,
              partsInFlight: PARTS_IN_FLIGHT,
            },
            (command, start, end) => this.#putRange(command, temp.path, start, end),
          ),
        );
      } finally {
        release();
      }
      this.#used += size;
      this.#afterWrite();
    } catch (err) {
      throw err instanceof StoreWriteError ? err : new StoreWriteError('upload', err);
    } finally {
      await this.spool.discard(temp);
    }
  }

  async getManifest(digest: string): Promise<StoredManifest | undefined> {
    const key = this.#keys.manifest(digest);
    const got = await this.#getSmall(key, `read manifest ${digest}`);
    if (!got || got.contentType === undefined) return undefined;
    // Checked on the way out too: a manifest is small, and a wrong one must never be served.
    if (createHash(digestAlgorithm(digest)).update(got.bytes).digest('hex') !== splitDigest(digest)[1])
      return undefined;
    this.#touch(key);
    return { digest, mediaType: got.contentType, bytes: got.bytes };
  }

  async putManifest(manifest: StoredManifest): Promise<void> {
    await this.#call(`store manifest ${manifest.digest}`, () =>
      this.#client.send(
        new PutObjectCommand({
          Bucket: this.#bucket,
          Key: this.#keys.manifest(manifest.digest),
          Body: manifest.bytes,
          ContentType: manifest.mediaType,
        }),
      ),
    );
    this.#used += manifest.bytes.length;
    this.#afterWrite();
  }

  async getTag(name: string, tag: string): Promise<TagRecord | undefined> {
    const got = await this.#getSmall(this.#keys.tag(name, tag), `read tag ${name}:${tag}`);
    return got ? parseTagRecord(got.bytes.toString('utf8'), name, tag) : undefined;
  }

  async putTag(record: TagRecord): Promise<void> {
    await this.#call(`store tag ${record.name}:${record.tag}`, () =>
      this.#client.send(
        new PutObjectCommand({
          Bucket: this.#bucket,
          Key: this.#keys.tag(record.name, record.tag),
          Body: JSON.stringify(record),
          ContentType: 'application/json',
        }),
      ),
    );
  }

  /**
   * Before fetching `digest`: whether another replica stored it, or is fetching it (then this one waits,
   * up to peerWait, while that replica's lease is alive). The lease is created with a conditional write
   * (If-None-Match: *) and read back, so a service that ignores the condition costs at most an extra
   * fetch, never a wrong answer.
   */
  async claim(digest: string): Promise<DownloadClaim> {
    const key = this.#keys.lease(digest);
    const deadline = this.#now() + this.#config.peerWaitMs;
    for (;;) {
      const claimed = await this.#leaseOrStored(key, digest);
      if (claimed) return claimed;
      const step = nextStep(await this.#readLease(key), this.#owner, this.#now(), deadline);
      if (step === 'hold') return this.#holding(key);
      if (step === 'fetch') return { kind: 'fetch', release: async () => {} };
      if (step === 'take-over')
        await this.#call('drop an expired lease', () =>
          this.#client.send(new DeleteObjectCommand({ Bucket: this.#bucket, Key: key })),
        );
      else if (step === 'wait') await sleep(PEER_POLL_MS);
    }
  }

  /**
   * The blob when it is stored, else the lease when this replica got it; undefined: another holds it.
   * The lease is written beside the lookup, not after it: a cold pull waits for two round trips to the
   * service before asking upstream (the write, then its read-back), not three.
   */
  async #leaseOrStored(key: string, digest: string): Promise<DownloadClaim | undefined> {
    const [lease, lookup] = await Promise.allSettled([this.#takeLease(key), this.useBlob(digest)]);
    const taken = lease.status === 'fulfilled' && lease.value;
    // A failed half leaves no lease behind that nobody renews.
    if (lease.status === 'rejected' || lookup.status === 'rejected') {
      if (taken) await this.#dropLease(key);
      throw lease.status === 'rejected' ? lease.reason : (lookup as PromiseRejectedResult).reason;
    }
    const stored = lookup.value;
    if (stored) {
      if (taken) await this.#dropLease(key);
      return { kind: 'stored', blob: stored };
    }
    return taken ? this.#holding(key) : undefined;
  }

  async #takeLease(key: string): Promise<boolean> {
    try {
      await this.#client.send(
        new PutObjectCommand({
          Bucket: this.#bucket,
          Key: key,
          Body: leaseBody(this.#owner, this.#now(), this.#config.downloadLeaseMs),
          ContentType: 'application/json',
          IfNoneMatch: '*',
        }),
      );
    } catch (err) {
      if (isConditionLost(err)) return false;
      throw this.#unavailable('write a download lease', err);
    }
    // Read back: the lease is ours only if it says so (the condition may have been ignored).
    return (await this.#readLease(key))?.owner === this.#owner;
  }

  async #readLease(key: string): Promise<ReturnType<typeof parseLease> | undefined> {
    const got = await this.#getSmall(key, 'read a download lease');
    return got && parseLease(got.bytes.toString('utf8'));
  }

  /** Deletes a lease of this replica; failing to is harmless (it expires). */
  async #dropLease(key: string): Promise<void> {
    await this.#client.send(new DeleteObjectCommand({ Bucket: this.#bucket, Key: key })).catch(() => {});
  }

  /** A held lease: renewed until released (deleted). */
  #holding(key: string): DownloadClaim {
    // The renewal under way, awaited before the delete: one that landed after it would leave a lease
    // for a download that is over, and other replicas would wait on it.
    let renewing: Promise<unknown> = Promise.resolve();
    const renew = setInterval(() => {
      const body = leaseBody(this.#owner, this.#now(), this.#config.downloadLeaseMs);
      renewing = this.#client
        .send(new PutObjectCommand({ Bucket: this.#bucket, Key: key, Body: body }))
        .catch((err: unknown) => this.#onBackgroundError('renew a download lease', err));
    }, renewalInterval(this.#config.downloadLeaseMs));
    renew.unref();
    let released = false;
    return {
      kind: 'fetch',
      release: async () => {
        if (released) return;
        released = true;
        clearInterval(renew);
        await renewing;
        await this.#dropLease(key);
      },
    };
  }

  #afterWrite(): void {
    if (overCap(this.#used, this.maxSize))
      void this.collect().catch((err: unknown) => this.#onBackgroundError('garbage collection', err));
  }

  async #list(sub: string): Promise<Listed[]> {
    const out: Listed[] = [];
    let token: string | undefined;
    do {
      const page = await this.#call(`list ${sub}`, () =>
        this.#client.send(
          new ListObjectsV2Command({
            Bucket: this.#bucket,
            Prefix: `${this.#keys.prefix}${sub}`,
            ...(token === undefined ? {} : { ContinuationToken: token }),
          }),
        ),
      );
      for (const o of page.Contents ?? [])
        if (o.Key !== undefined)
          out.push({ key: o.Key, size: o.Size ?? 0, modified: o.LastModified?.getTime() ?? 0 });
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
    return out;
  }

  async #delete(key: string): Promise<void> {
    await this.#call('delete an object', () =>
      this.#client.send(new DeleteObjectCommand({ Bucket: this.#bucket, Key: key })),
    );
  }

  /**
   * Sums the bucket (what every replica stored) and, above maxSize, frees down to 90 % of it by last
   * use: blobs no stored manifest references first, then everything oldest first; then drops tag records
   * whose manifest is gone. Replicas collecting at once delete the same objects: harmless.
   */
  collect(): Promise<Evicted> {
    this.#collecting ??= this.#collect().finally(() => {
      this.#collecting = undefined;
    });
    return this.#collecting;
  }

  async #collect(): Promise<Evicted> {
    const evicted = { blobs: 0, manifests: 0, tags: 0, bytes: 0 };
    const found = inventory(
      this.#keys,
      await this.#list('blobs/'),
      await this.#list('manifests/'),
      await this.#list('used/'),
    );
    let total = found.usedBytes;
    const live = new Set(found.objects.filter((o) => o.kind === 'manifest').map((o) => o.digest));
    if (overCap(total, this.maxSize)) {
      const referenced = new Set<string>();
      for (const o of found.objects) {
        if (o.kind !== 'manifest') continue;
        const got = await this.#getSmall(o.key, 'read a manifest');
        if (got) for (const d of referencedDigests(got.bytes)) referenced.add(d);
      }
      for (const o of toEvict(found.objects, referenced, total, this.maxSize)) {
        await this.#delete(o.key);
        await this.#delete(this.#keys.used(o.key)).catch(() => {});
        total -= o.size;
        evicted.bytes += o.size;
        if (o.kind === 'blob') evicted.blobs++;
        else {
          evicted.manifests++;
          live.delete(o.digest);
        }
      }
    }
    this.#used = total;
    // Markers of objects gone (evicted by another replica), and leases of replicas that died long ago
    // with nobody asking for that blob since: small, but they would pile up.
    for (const key of found.strayMarkers) await this.#delete(key);
    const maxAge = staleLeaseAge(this.#config.downloadLeaseMs, STALE_UPLOAD_MS);
    for (const key of staleLeases(await this.#list('downloading/'), this.#now(), maxAge))
      await this.#delete(key);
    for (const t of await this.#list('tags/')) {
      const got = await this.#getSmall(t.key, 'read a tag record');
      if (!got || !isOrphanTag(got.bytes.toString('utf8'), live)) continue;
      await this.#delete(t.key);
      evicted.tags++;
    }
    if (evicted.bytes > 0 || evicted.tags > 0) this.onEvict?.(evicted);
    return evicted;
  }

  /** Every readable tag record (each one a GET: for the tags/list fallback and listings only). */
  async allTags(): Promise<TagRecord[]> {
    const out: TagRecord[] = [];
    for (const t of await this.#list('tags/')) {
      const got = await this.#getSmall(t.key, 'read a tag record');
      const record = got && readTagRecord(got.bytes.toString('utf8'));
      if (record) out.push(record);
    }
    return out;
  }

  async list(): Promise<StoreListing> {
    const found = inventory(
      this.#keys,
      await this.#list('blobs/'),
      await this.#list('manifests/'),
      await this.#list('used/'),
    );
    const references = new Map<string, readonly string[]>();
    for (const o of found.objects) {
      if (o.kind !== 'manifest') continue;
      const got = await this.#getSmall(o.key, 'read a manifest');
      if (got) references.set(o.digest, referencedDigests(got.bytes));
    }
    return describeStore({
      maxSize: this.maxSize,
      objects: found.objects,
      tags: await this.allTags(),
      references,
    });
  }

  async #abortStaleUploads(): Promise<void> {
    const page = await this.#call('list multipart uploads', () =>
      this.#client.send(
        new ListMultipartUploadsCommand({ Bucket: this.#bucket, Prefix: `${this.#keys.prefix}blobs/` }),
      ),
    );
    for (const u of page.Uploads ?? []) {
      if (u.Key === undefined || u.UploadId === undefined) continue;
      if (u.Initiated !== undefined && this.#now() - u.Initiated.getTime() < STALE_UPLOAD_MS) continue;
      await this.#client
        .send(new AbortMultipartUploadCommand({ Bucket: this.#bucket, Key: u.Key, UploadId: u.UploadId }))
        .catch(() => {});
    }
  }
}
