// `pullmap rewrite`: change the image strings of Kubernetes manifests and nothing else. Edits are
// spliced into the original text at the scalars' source ranges, so comments, key order, quoting and
// every other byte stay as they were (a Helm post-renderer must not reformat charts).

import { type Document, isScalar, type Scalar } from 'yaml';
import { readDocuments } from '../config.ts';
import { isObject } from '../json.ts';
import type { Labels } from '../mapping/index.ts';
import { containerImages, findPodSpecs } from '../pod/locate.ts';

interface ManifestImage {
  readonly image: string;
  readonly namespace: string | undefined;
  readonly podLabels: Labels;
  readonly pullPolicy: string | undefined;
  /** "Deployment/web spec.template.spec.containers[0]", for messages. */
  readonly where: string;
  /** Offsets of the scalar in the text, and how it was quoted. */
  readonly start: number;
  readonly end: number;
  readonly style: Scalar.Type | undefined;
}

interface ManifestScan {
  readonly images: readonly ManifestImage[];
  readonly errors: readonly string[];
}

function labelsOf(v: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (isObject(v)) for (const [k, x] of Object.entries(v)) if (typeof x === 'string') out[k] = x;
  return out;
}

type ParsedDocument = Document.Parsed;

type Root = { readonly value: unknown; readonly path: readonly (string | number)[] };

/** The objects of a document: the items of a List, or the document itself. */
function rootsOf(value: unknown): Root[] {
  const isList =
    isObject(value) &&
    typeof value.kind === 'string' &&
    value.kind.endsWith('List') &&
    Array.isArray(value.items);
  if (!isList) return [{ value, path: [] }];
  return (value.items as unknown[]).map((item, n) => ({ value: item, path: ['items', n] }));
}

/** The container images of one object, located in the document's text. */
function objectImages(doc: ParsedDocument, root: Root, images: ManifestImage[]): void {
  if (!isObject(root.value)) return;
  const meta = isObject(root.value.metadata) ? root.value.metadata : {};
  const namespace = typeof meta.namespace === 'string' ? meta.namespace : undefined;
  const objectName = `${String(root.value.kind)}/${typeof meta.name === 'string' ? meta.name : '?'}`;
  for (const loc of findPodSpecs(root.value)) {
    for (const c of containerImages(loc.spec)) {
      const node = doc.getIn([...root.path, ...loc.path, ...c.path], true);
      if (!isScalar(node) || !node.range) continue;
      images.push({
        image: c.image,
        namespace,
        podLabels: labelsOf(loc.metadata.labels),
        pullPolicy: c.pullPolicy,
        where: `${objectName} ${[...loc.path, c.list].join('.')}[${c.index}]`,
        start: node.range[0],
        end: node.range[1],
        style: node.type,
      });
    }
  }
}

/** Finds every container image of every pod-bearing object in a YAML stream. */
export function scanManifests(text: string, source: string): ManifestScan {
  const images: ManifestImage[] = [];
  const errors: string[] = [];
  for (const { doc, read } of readDocuments(text, source)) {
    if ('errors' in read) errors.push(...read.errors);
    else for (const root of rootsOf(read.value)) objectImages(doc, root, images);
  }
  return { images, errors };
}

/** How a new image string is written in place of the old scalar, keeping its quoting style. */
function scalarSource(value: string, style: Scalar.Type | undefined): string {
  if (style === 'QUOTE_SINGLE') return `'${value}'`;
  // References never contain quotes or backslashes, so double quotes need no escaping.
  if (style === 'QUOTE_DOUBLE' || style === 'BLOCK_FOLDED' || style === 'BLOCK_LITERAL') return `"${value}"`;
  return /^[[\]{}&*!|>'"%@`#,?:-]/.test(value) ? `"${value}"` : value;
}

/** Applies new image strings (by index into scan.images) to the original text. */
export function spliceImages(
  text: string,
  scan: ManifestScan,
  replacements: ReadonlyMap<number, string>,
): string {
  const edits = [...replacements]
    .map(([i, value]) => ({ image: scan.images[i]!, value }))
    .sort((a, b) => b.image.start - a.image.start);
  let out = text;
  for (const { image, value } of edits)
    out = out.slice(0, image.start) + scalarSource(value, image.style) + out.slice(image.end);
  return out;
}
