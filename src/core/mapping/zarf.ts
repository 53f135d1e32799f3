// The Zarf registry's naming scheme, so pullmap can sit in front of a registry Zarf filled:
// <target>/<path>:<tag>-zarf-<crc32 of "registry/path">, and <target>/<path>@<digest> for digests.

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** CRC-32 (IEEE 802.3, the one Go's crc32.ChecksumIEEE computes) of the UTF-8 bytes of `text`. */
export function crc32(text: string): number {
  const bytes = new TextEncoder().encode(text);
  let crc = 0xffffffff;
  for (const b of bytes) crc = CRC_TABLE[(crc ^ b) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

/** The tag Zarf gives an image pushed from `name` ("docker.io/library/nginx") with tag `tag`. */
export function zarfTag(name: string, tag: string): string {
  return `${tag}-zarf-${crc32(name)}`;
}
