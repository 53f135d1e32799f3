// Small valid images built in-process (no internet): a reproducible gzip tar layer, a config whose
// diff_ids match it, a manifest, and a multi-arch index; pushed over the registry HTTP API.
import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { type Dispatcher, request } from 'undici';

export type ImageFormat = 'oci' | 'docker';

const MEDIA = {
  oci: {
    manifest: 'application/vnd.oci.image.manifest.v1+json',
    index: 'application/vnd.oci.image.index.v1+json',
    config: 'application/vnd.oci.image.config.v1+json',
    layer: 'application/vnd.oci.image.layer.v1.tar+gzip',
  },
  docker: {
    manifest: 'application/vnd.docker.distribution.manifest.v2+json',
    index: 'application/vnd.docker.distribution.manifest.list.v2+json',
    config: 'application/vnd.docker.container.image.v1+json',
    layer: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  },
} as const;

export interface Blob {
  readonly mediaType: string;
  readonly digest: string;
  readonly size: number;
  readonly bytes: Buffer;
}

export interface Platform {
  readonly os: string;
  readonly architecture: string;
}

export interface BuiltImage {
  readonly format: ImageFormat;
  readonly platform: Platform;
  readonly layer: Blob;
  readonly config: Blob;
  readonly manifest: Blob;
}

export interface BuiltIndex {
  readonly format: ImageFormat;
  readonly images: readonly BuiltImage[];
  readonly index: Blob;
}

/** A file in a layer: text or bytes (mode 0644), or bytes with a mode (e.g. 0o755 for a program). */
export type LayerFile = string | Buffer | { readonly content: string | Buffer; readonly mode: number };

/** What a runtime reads from the image config to start a container (OCI image config `config`). */
export interface RunConfig {
  readonly Entrypoint?: readonly string[];
  readonly Cmd?: readonly string[];
  readonly Env?: readonly string[];
}

export interface ImageSpec {
  /** Files in the single layer: path → content. Default: one file naming the platform. */
  readonly files?: Readonly<Record<string, LayerFile>>;
  readonly platform?: Platform;
  readonly format?: ImageFormat;
  /** How a container of this image starts; default none (images only pulled, never run). */
  readonly run?: RunConfig;
}

export function sha256(bytes: Buffer): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

function blob(mediaType: string, bytes: Buffer): Blob {
  return { mediaType, digest: sha256(bytes), size: bytes.length, bytes };
}

function descriptor(b: Blob): { mediaType: string; digest: string; size: number } {
  return { mediaType: b.mediaType, digest: b.digest, size: b.size };
}

function writeField(header: Buffer, offset: number, length: number, value: string): void {
  header.write(value.slice(0, length), offset, length, 'utf8');
}

function octal(value: number, width: number): string {
  return `${value.toString(8).padStart(width - 1, '0')}\0`;
}

/** A ustar archive with regular files, owner 0:0, mode 0644 unless given, mtime 0: the same bytes every time. */
export function tarArchive(files: Readonly<Record<string, LayerFile>>): Buffer {
  const parts: Buffer[] = [];
  for (const [name, file] of Object.entries(files).sort(([a], [b]) => (a < b ? -1 : 1))) {
    const data = typeof file === 'string' || Buffer.isBuffer(file) ? file : file.content;
    const mode = typeof file === 'string' || Buffer.isBuffer(file) ? 0o644 : file.mode;
    const content = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    const header = Buffer.alloc(512, 0);
    writeField(header, 0, 100, name);
    writeField(header, 100, 8, octal(mode, 8));
    writeField(header, 108, 8, octal(0, 8));
    writeField(header, 116, 8, octal(0, 8));
    writeField(header, 124, 12, octal(content.length, 12));
    writeField(header, 136, 12, octal(0, 12));
    writeField(header, 148, 8, '        '); // checksum is computed with spaces here
    writeField(header, 156, 1, '0');
    writeField(header, 257, 6, 'ustar\0');
    writeField(header, 263, 2, '00');
    writeField(header, 265, 32, 'root');
    writeField(header, 297, 32, 'root');
    let sum = 0;
    for (const byte of header) sum += byte;
    writeField(header, 148, 8, `${sum.toString(8).padStart(6, '0')}\0 `);
    parts.push(header, content, Buffer.alloc((512 - (content.length % 512)) % 512, 0));
  }
  parts.push(Buffer.alloc(1024, 0));
  return Buffer.concat(parts);
}

export function buildImage(spec: ImageSpec = {}): BuiltImage {
  const format = spec.format ?? 'oci';
  const media = MEDIA[format];
  const platform = spec.platform ?? { os: 'linux', architecture: 'amd64' };
  const tar = tarArchive(spec.files ?? { 'platform.txt': `${platform.os}/${platform.architecture}\n` });
  const layer = blob(media.layer, gzipSync(tar, { level: 9 }));
  const config = blob(
    media.config,
    Buffer.from(
      JSON.stringify({
        architecture: platform.architecture,
        os: platform.os,
        config: spec.run ?? {},
        rootfs: { type: 'layers', diff_ids: [sha256(tar)] },
      }),
    ),
  );
  const manifest = blob(
    media.manifest,
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: media.manifest,
        config: descriptor(config),
        layers: [descriptor(layer)],
      }),
    ),
  );
  return { format, platform, layer, config, manifest };
}

/** An index (OCI) or manifest list (Docker) over one image per platform. */
export function buildIndex(platforms: readonly Platform[], format: ImageFormat = 'oci'): BuiltIndex {
  const images = platforms.map((platform) => buildImage({ platform, format }));
  const media = MEDIA[format];
  const index = blob(
    media.index,
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: media.index,
        manifests: images.map((image) => ({ ...descriptor(image.manifest), platform: image.platform })),
      }),
    ),
  );
  return { format, images, index };
}

/** Where and how the harness pushes (a TestRegistry is one). */
export interface PushTarget {
  readonly url: string;
  readonly dispatcher: Dispatcher;
  authorization(repository: string): string | undefined;
}

async function call(
  target: PushTarget,
  repository: string,
  method: 'GET' | 'HEAD' | 'POST' | 'PUT' | 'DELETE',
  url: URL,
  headers: Record<string, string> = {},
  body?: Buffer,
): Promise<{ status: number; headers: Record<string, string | string[] | undefined> }> {
  const auth = target.authorization(repository);
  const res = await request(url, {
    method,
    dispatcher: target.dispatcher,
    headers: auth === undefined ? headers : { ...headers, authorization: auth },
    body: body ?? null,
  });
  const text = await res.body.text();
  if (res.statusCode >= 400 && !(method === 'HEAD' && res.statusCode === 404))
    throw new Error(`${method} ${url.pathname} answered ${res.statusCode}: ${text.slice(0, 500)}`);
  return { status: res.statusCode, headers: res.headers };
}

function first(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

export async function pushBlob(target: PushTarget, repository: string, b: Blob): Promise<void> {
  const exists = await call(
    target,
    repository,
    'HEAD',
    new URL(`/v2/${repository}/blobs/${b.digest}`, target.url),
  );
  if (exists.status === 200) return;
  const started = await call(
    target,
    repository,
    'POST',
    new URL(`/v2/${repository}/blobs/uploads/`, target.url),
  );
  const location = first(started.headers['location']);
  if (started.status !== 202 || location === undefined)
    throw new Error(`upload start answered ${started.status} without a Location`);
  // Location may be relative or absolute; the digest is added to whatever query it already has.
  const upload = new URL(location, target.url);
  upload.searchParams.set('digest', b.digest);
  const done = await call(
    target,
    repository,
    'PUT',
    upload,
    { 'content-type': 'application/octet-stream', 'content-length': String(b.size) },
    b.bytes,
  );
  if (done.status !== 201) throw new Error(`blob upload answered ${done.status}`);
}

export async function pushManifest(
  target: PushTarget,
  repository: string,
  reference: string,
  manifest: Blob,
): Promise<string> {
  const res = await call(
    target,
    repository,
    'PUT',
    new URL(`/v2/${repository}/manifests/${reference}`, target.url),
    { 'content-type': manifest.mediaType },
    manifest.bytes,
  );
  if (res.status !== 201) throw new Error(`manifest PUT answered ${res.status}`);
  const digest = first(res.headers['docker-content-digest']);
  if (digest !== manifest.digest) throw new Error(`registry stored ${digest}, expected ${manifest.digest}`);
  return digest;
}

/** Pushes layer, config and manifest; returns the manifest digest. */
export async function pushImage(
  target: PushTarget,
  repository: string,
  tag: string,
  image: BuiltImage,
): Promise<string> {
  await pushBlob(target, repository, image.layer);
  await pushBlob(target, repository, image.config);
  return pushManifest(target, repository, tag, image.manifest);
}

/** Pushes every platform's image by digest, then the index under `tag`; returns the index digest. */
export async function pushIndex(
  target: PushTarget,
  repository: string,
  tag: string,
  built: BuiltIndex,
): Promise<string> {
  for (const image of built.images) await pushImage(target, repository, image.manifest.digest, image);
  return pushManifest(target, repository, tag, built.index);
}

/** DELETE a manifest by digest (the registry needs delete enabled): its tags then answer 404. */
export async function deleteManifest(target: PushTarget, repository: string, digest: string): Promise<void> {
  const res = await call(
    target,
    repository,
    'DELETE',
    new URL(`/v2/${repository}/manifests/${digest}`, target.url),
  );
  if (res.status !== 202) throw new Error(`manifest DELETE answered ${res.status}`);
}

/**
 * An OCI image layout as a tar archive (what `ctr images import` and `skopeo copy oci-archive:` read),
 * holding one image under `name` (a full reference such as `localhost/pullmap-test/pause:1`).
 */
export function ociArchive(image: BuiltImage, name: string): Buffer {
  if (image.format !== 'oci') throw new Error('ociArchive: the image must be built with format "oci"');
  const tag = name.slice(name.lastIndexOf(':') + 1);
  const index = {
    schemaVersion: 2,
    mediaType: MEDIA.oci.index,
    manifests: [
      {
        ...descriptor(image.manifest),
        annotations: { 'io.containerd.image.name': name, 'org.opencontainers.image.ref.name': tag },
      },
    ],
  };
  const files: Record<string, LayerFile> = {
    'oci-layout': JSON.stringify({ imageLayoutVersion: '1.0.0' }),
    'index.json': JSON.stringify(index),
  };
  for (const b of [image.layer, image.config, image.manifest])
    files[`blobs/${b.digest.replace(':', '/')}`] = b.bytes;
  return tarArchive(files);
}
