// `pullmap rewrite`: change the image strings of Kubernetes manifests and nothing else. Edits are
// spliced into the original text at the scalars' source ranges, so comments, key order, quoting and
// every other byte stay as they were (a Helm post-renderer must not reformat charts).

import { type Document, isScalar, LineCounter, parseAllDocuments, type Scalar } from 'yaml';
import { duplicateKeys } from '../config.ts';
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

/** Where messages point: "SOURCE:LINE:COL: YAML document N". */
const at = (source: string, lines: LineCounter, offset: number, i: number): string => {
  const { line, col } = lines.linePos(offset);
  return `${source}:${line}:${col}: YAML document ${i + 1}`;
};

/** The document's value, or the located errors that make it unreadable (malformed, duplicate keys, alias bombs). */
function documentValue(
  doc: ParsedDocument,
  i: number,
  source: string,
  lines: LineCounter,
): { readonly value: unknown } | { readonly errors: string[] } {
  if (doc.errors.length > 0)
    return {
      errors: doc.errors.map(
        (e) => `${at(source, lines, e.pos[0], i)} is malformed: ${e.message.split('\n')[0]}`,
      ),
    };
  const duplicates = duplicateKeys(doc);
  if (duplicates.length > 0)
    return {
      errors: duplicates.map(
        (d) =>
          `${at(source, lines, d.offset, i)} is malformed: duplicate key ${JSON.stringify(d.key)} in one mapping; keep one of them`,
      ),
    };
  try {
    return { value: doc.toJS({ maxAliasCount: 100 }) };
  } catch (err) {
    // yaml throws (a ReferenceError) on alias bombs: a located error like the config loader's.
    return { errors: [`${at(source, lines, doc.range[0], i)} cannot be read: ${(err as Error).message}`] };
  }
}

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
  const lineCounter = new LineCounter();
  // uniqueKeys: false, checked by duplicateKeys in linear time (yaml's own check is quadratic).
  const docs = parseAllDocuments(text, { lineCounter, uniqueKeys: false });
  const images: ManifestImage[] = [];
  const errors: string[] = [];
  (Array.isArray(docs) ? docs : [docs]).forEach((doc, i) => {
    const read = documentValue(doc, i, source, lineCounter);
    if ('errors' in read) errors.push(...read.errors);
    else for (const root of rootsOf(read.value)) objectImages(doc, root, images);
  });
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
