// What a copy needs from a manifest: the blobs an image manifest references, or the manifests an index
// lists with their platforms. The bytes themselves are never re-encoded: copies are byte for byte.
import { PLATFORM } from '../core/api/v1alpha1.ts';
import {
  DOCKER_MANIFEST_V1,
  DOCKER_MANIFEST_V1_SIGNED,
  isIndexMediaType,
  isManifestMediaType,
} from '../registry/index.ts';

export interface Descriptor {
  readonly mediaType: string | undefined;
  readonly digest: string;
  readonly size: number;
  readonly platform: Platform | undefined;
}

/** An OCI platform; `variant` matters for arm ("linux/arm/v7"). */
export interface Platform {
  readonly os: string;
  readonly architecture: string;
  readonly variant?: string | undefined;
}

type ParsedManifest =
  | { readonly kind: 'index'; readonly manifests: readonly Descriptor[] }
  | { readonly kind: 'image'; readonly blobs: readonly Descriptor[] }
  | { readonly kind: 'unsupported'; readonly reason: string };

const DIGEST = /^(?:sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/;

/** "linux/arm64/v8" → platform; undefined when it is not os/architecture[/variant] (the schema's rule). */
export function parsePlatform(text: string): Platform | undefined {
  if (!PLATFORM.test(text)) return undefined;
  const [os, architecture, variant] = text.split('/') as [string, string, string | undefined];
  return { os, architecture, ...(variant === undefined ? {} : { variant }) };
}

export function formatPlatform(p: Platform): string {
  return `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ''}`;
}

/** Whether `wanted` selects the manifest for `actual`; a wanted platform without variant takes any. */
export function platformMatches(wanted: Platform, actual: Platform | undefined): boolean {
  if (actual === undefined) return false;
  if (wanted.os !== actual.os || wanted.architecture !== actual.architecture) return false;
  return wanted.variant === undefined || wanted.variant === actual.variant;
}

function descriptor(value: unknown): Descriptor | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const d = value as Record<string, unknown>;
  if (typeof d.digest !== 'string' || !DIGEST.test(d.digest)) return undefined;
  if (typeof d.size !== 'number' || !Number.isSafeInteger(d.size) || d.size < 0) return undefined;
  let platform: Platform | undefined;
  const p = d.platform as Record<string, unknown> | undefined;
  if (typeof p === 'object' && p !== null && typeof p.os === 'string' && typeof p.architecture === 'string')
    platform = {
      os: p.os,
      architecture: p.architecture,
      ...(typeof p.variant === 'string' ? { variant: p.variant } : {}),
    };
  return {
    mediaType: typeof d.mediaType === 'string' ? d.mediaType : undefined,
    digest: d.digest,
    size: d.size,
    platform,
  };
}

/** Layers that are never pushed to registries (Windows base layers): the target does not need them. */
function nonDistributable(value: unknown, d: Descriptor): boolean {
  const urls = (value as { urls?: unknown }).urls;
  return (
    (Array.isArray(urls) && urls.length > 0) ||
    (d.mediaType?.includes('foreign') ?? false) ||
    (d.mediaType?.includes('nondistributable') ?? false)
  );
}

/** An index's manifests, every one a well-formed descriptor. */
function parseIndex(doc: Record<string, unknown>): ParsedManifest {
  if (!Array.isArray(doc.manifests)) return { kind: 'unsupported', reason: 'the index has no manifests' };
  const manifests: Descriptor[] = [];
  for (const m of doc.manifests) {
    const d = descriptor(m);
    if (d === undefined) return { kind: 'unsupported', reason: 'the index lists a malformed descriptor' };
    manifests.push(d);
  }
  return { kind: 'index', manifests };
}

/** An image manifest's blobs to copy: its config, then its distributable layers. */
function parseImage(doc: Record<string, unknown>): ParsedManifest {
  const config = descriptor(doc.config);
  if (config === undefined || !Array.isArray(doc.layers))
    return { kind: 'unsupported', reason: 'the image manifest has no config or layers' };
  const blobs: Descriptor[] = [config];
  for (const l of doc.layers) {
    const d = descriptor(l);
    if (d === undefined) return { kind: 'unsupported', reason: 'the image manifest lists a malformed layer' };
    if (!nonDistributable(l, d)) blobs.push(d);
  }
  return { kind: 'image', blobs };
}

export function parseManifest(bytes: Buffer, mediaType: string): ParsedManifest {
  if (
    !isManifestMediaType(mediaType) ||
    mediaType === DOCKER_MANIFEST_V1 ||
    mediaType === DOCKER_MANIFEST_V1_SIGNED
  )
    return { kind: 'unsupported', reason: `media type ${mediaType} cannot be copied (Docker schema 1?)` };
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(bytes.toString('utf8')) as Record<string, unknown>;
  } catch {
    return { kind: 'unsupported', reason: 'the manifest is not JSON' };
  }
  return isIndexMediaType(mediaType) ? parseIndex(doc) : parseImage(doc);
}
