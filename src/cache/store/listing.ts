// What the store holds, per tag, for an operator (`pullmap cache ls`), pure: both stores gather the
// objects, the tag records and which digests each manifest names; this adds up sizes and last uses.
import type { StoredObject } from './eviction.ts';
import type { ListedTag, StoreListing, TagRecord } from './types.ts';

export interface ListingInput {
  readonly maxSize: number | undefined;
  readonly objects: readonly StoredObject[];
  readonly tags: readonly TagRecord[];
  /** The digests each stored manifest names (referencedDigests). */
  readonly references: ReadonlyMap<string, readonly string[]>;
}

export function describeStore(input: ListingInput): StoreListing {
  const byDigest = new Map(input.objects.map((o) => [o.digest, o]));
  const tags: ListedTag[] = [];
  for (const t of input.tags) {
    // The manifest, what it names, and for an index what its manifests name: each object counted once.
    const seen = new Set<string>();
    const visit = (digest: string, depth: number): void => {
      if (seen.has(digest) || !byDigest.has(digest)) return;
      seen.add(digest);
      if (depth < 2) for (const d of input.references.get(digest) ?? []) visit(d, depth + 1);
    };
    visit(t.digest, 0);
    if (!seen.has(t.digest)) continue; // the manifest is gone: the record answers nothing
    let bytes = 0;
    let lastUse = 0;
    for (const d of seen) {
      const o = byDigest.get(d) as StoredObject;
      bytes += o.size;
      lastUse = Math.max(lastUse, o.lastUse);
    }
    tags.push({ ...t, bytes, lastUse });
  }
  tags.sort((a, b) => (a.name === b.name ? (a.tag < b.tag ? -1 : 1) : a.name < b.name ? -1 : 1));
  return {
    usedBytes: input.objects.reduce((sum, o) => sum + o.size, 0),
    maxSize: input.maxSize,
    blobs: input.objects.filter((o) => o.kind === 'blob').length,
    manifests: input.objects.filter((o) => o.kind === 'manifest').length,
    tags,
  };
}
