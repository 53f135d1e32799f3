// Where each thing lives in the bucket, under the configured prefix (s3/store.ts describes the layout).
import { splitDigest, tagRecordName } from '../types.ts';

export class BucketKeys {
  readonly prefix: string;

  constructor(prefix: string) {
    this.prefix = prefix;
  }

  blob(digest: string): string {
    const [alg, hex] = splitDigest(digest);
    return `${this.prefix}blobs/${alg}/${hex}`;
  }

  manifest(digest: string): string {
    const [alg, hex] = splitDigest(digest);
    return `${this.prefix}manifests/${alg}/${hex}`;
  }

  tag(name: string, tag: string): string {
    return `${this.prefix}tags/${tagRecordName(name, tag)}`;
  }

  lease(digest: string): string {
    const [alg, hex] = splitDigest(digest);
    return `${this.prefix}downloading/${alg}/${hex}`;
  }

  /** The use marker of the object at `objectKey`. */
  used(objectKey: string): string {
    return `${this.prefix}used/${objectKey.slice(this.prefix.length)}`;
  }

  /** The object a use marker stands for. */
  usedObject(markerKey: string): string {
    return `${this.prefix}${markerKey.slice(`${this.prefix}used/`.length)}`;
  }

  /** The digest of a blobs/ or manifests/ key ("<prefix>blobs/sha256/<hex>" is "sha256:<hex>"). */
  digestOf(key: string): string {
    const rest = key.slice(this.prefix.length).split('/');
    return `${rest[1]}:${rest[2]}`;
  }
}
