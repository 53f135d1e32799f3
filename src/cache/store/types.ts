// What the cache needs of a store, and the records both stores keep: the disk store (disk.ts) and a
// bucket shared by replicas (s3/store.ts). Downloads are spooled to a local file first (spool.ts) and
// committed to the store only once verified; spooling is not the store's concern.
import { createHash } from 'node:crypto';
import { DIGEST } from '../../core/reference/index.ts';
import type { ByteSource } from '../copy.ts';
import type { Spool, TempFile } from './spool.ts';

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

export interface Evicted {
  readonly blobs: number;
  readonly manifests: number;
  /** Tag records dropped because the manifest they name is gone. */
  readonly tags: number;
  readonly bytes: number;
}

/** The store's content: what a listing (`pullmap cache ls`) shows. */
export interface StoreListing {
  readonly usedBytes: number;
  readonly maxSize: number | undefined;
  readonly blobs: number;
  readonly manifests: number;
  readonly tags: readonly ListedTag[];
}

export interface ListedTag extends TagRecord {
  /** Bytes of the manifest and of the stored blobs it names (an index: its manifests' too). */
  readonly bytes: number;
  /** The latest last use of the manifest and those blobs, ms since the epoch. */
  readonly lastUse: number;
}

/** A store of verified content: blobs, manifests and tag records, addressed by digest. */
export interface CacheStore {
  readonly usedBytes: number;
  readonly maxSize: number | undefined;
  /** Where downloads are spooled before `commitBlob` (on the store's filesystem for the disk store). */
  readonly spool: Spool;
  onEvict: ((evicted: Evicted) => void) | undefined;
  /** Looks a blob up to serve it, and records that use (last use orders eviction); undefined: not stored. */
  useBlob(digest: string): Promise<StoredBlob | undefined>;
  /** Opens a blob `useBlob` found; undefined when it is gone meanwhile (evicted). */
  openBlob(digest: string, blob: StoredBlob): Promise<BlobReader | undefined>;
  /** With serve: redirect, a URL a client may fetch the stored blob from itself. */
  blobUrl?(digest: string): Promise<string>;
  /** Stores shared between replicas: keeps two of them from fetching one blob at once (when it can). */
  claim?(digest: string): Promise<DownloadClaim>;
  /** Makes a complete, verified spooled file the blob `digest` (the spool file is used up either way). */
  commitBlob(temp: TempFile, digest: string, size: number): Promise<void>;
  getManifest(digest: string): Promise<StoredManifest | undefined>;
  putManifest(manifest: StoredManifest): Promise<void>;
  getTag(name: string, tag: string): Promise<TagRecord | undefined>;
  putTag(record: TagRecord): Promise<void>;
  /** Every readable tag record (each one read: for listings and the tags/list fallback only). */
  allTags(): Promise<TagRecord[]>;
  /** Everything stored, for an operator (reads the whole index: not for the request path). */
  list(): Promise<StoreListing>;
  collect(): Promise<Evicted>;
  close?(): Promise<void>;
}

/** "sha256:abc" as ["sha256", "abc"]: the two levels of both stores' content-addressed layout. */
export function splitDigest(digest: string): [string, string] {
  const colon = digest.indexOf(':');
  return [digest.slice(0, colon), digest.slice(colon + 1)];
}

/** A tag record's file or object name: a hash of "<host>/<repo>:<tag>" (any tag is a safe name then). */
export function tagRecordName(name: string, tag: string): string {
  return `${createHash('sha256').update(`${name}:${tag}`).digest('hex')}.json`;
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

/** A stored tag record of any tag, or undefined when it is unreadable (a damaged record is dropped). */
export function readTagRecord(text: string): TagRecord | undefined {
  try {
    const rec = JSON.parse(text) as TagRecord;
    if (
      typeof rec.name !== 'string' ||
      typeof rec.tag !== 'string' ||
      typeof rec.digest !== 'string' ||
      !DIGEST.test(rec.digest) ||
      typeof rec.checkedAt !== 'number'
    )
      return undefined;
    return { name: rec.name, tag: rec.tag, digest: rec.digest, checkedAt: rec.checkedAt };
  } catch {
    return undefined;
  }
}

/**
 * A stored tag record, or undefined when it is unreadable or names another tag (a damaged or foreign
 * record is a cache miss, never an answer). Both stores keep tag records in this one JSON shape.
 */
export function parseTagRecord(text: string, name: string, tag: string): TagRecord | undefined {
  const rec = readTagRecord(text);
  return rec?.name === name && rec.tag === tag ? rec : undefined;
}
