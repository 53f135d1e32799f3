// Reading map objects from YAML text (a config file, or stdin): multi-document, `kind: List` too.
// Pure: the caller reads the file. Every problem names the document, its line and what to fix.

import { Composer, CST, type Document, isMap, isScalar, Lexer, LineCounter, Parser, visit } from 'yaml';

/**
 * Offsets of keys given twice in one mapping, found in one pass with a Set per mapping. yaml's own
 * uniqueKeys check compares every pair of keys: measured here, a 1.2 MB file of 100,000 keys took over
 * two minutes with it (40,000 keys: 48 s, against 1.5 s without it), so parsing runs with
 * uniqueKeys: false and this does the same check in linear time.
 */
function duplicateKeys(doc: Document.Parsed): { offset: number; key: string }[] {
  const found: { offset: number; key: string }[] = [];
  visit(doc, {
    Map(_, map) {
      if (!isMap(map)) return;
      const seen = new Set<string>();
      for (const pair of map.items) {
        if (!isScalar(pair.key)) continue;
        const value = pair.key.value;
        const id = `${typeof value}:${String(value)}`;
        if (seen.has(id)) found.push({ offset: pair.key.range?.[0] ?? 0, key: String(value) });
        else seen.add(id);
      }
    },
  });
  return found;
}

type DocumentRead = { readonly value: unknown } | { readonly errors: readonly string[] };

/**
 * A parsed document's value, or the located errors that make it unreadable: malformed YAML, a key given
 * twice in one mapping, an alias bomb. `where` names an offset ("FILE:LINE:COL"); `i` counts from 0.
 */
function documentValue(doc: Document.Parsed, i: number, where: (offset: number) => string): DocumentRead {
  if (doc.errors.length > 0)
    return {
      errors: doc.errors.map(
        (e) => `${where(e.pos[0])}: YAML document ${i + 1} is malformed: ${e.message.split('\n')[0]}`,
      ),
    };
  const duplicates = duplicateKeys(doc);
  if (duplicates.length > 0)
    return {
      errors: duplicates.map(
        (d) =>
          `${where(d.offset)}: YAML document ${i + 1} is malformed: duplicate key ${JSON.stringify(d.key)} in one mapping; keep one of them`,
      ),
    };
  try {
    return { value: doc.toJS({ maxAliasCount: 100 }) };
  } catch (err) {
    // yaml throws (a ReferenceError) on alias bombs: a located error instead.
    return {
      errors: [`${where(doc.range[0])}: YAML document ${i + 1} cannot be read: ${(err as Error).message}`],
    };
  }
}

interface ReadDocument {
  /** The parsed document, for source ranges; a caller that keeps it keeps its memory too. */
  readonly doc: Document.Parsed;
  readonly read: DocumentRead;
  /** 1-based line where the document's content starts, for messages. */
  readonly line: number;
}

/**
 * The documents of a YAML stream with their values or located errors: the one reader of documents,
 * for map configs (loadYamlObjects) and `pullmap rewrite`'s manifests. Each is built when asked for, so
 * a document's nodes, and the parser's tokens they keep, can be dropped before the next is built: memory
 * follows the largest document rather than the whole stream (yaml's parseAllDocuments builds them all).
 */
export function* readDocuments(text: string, source: string): Generator<ReadDocument> {
  const lineCounter = new LineCounter();
  const where = (offset: number): string => {
    const { line, col } = lineCounter.linePos(offset);
    return `${source}:${line}:${col}`;
  };
  // uniqueKeys: false, checked by duplicateKeys in linear time (yaml's own check is quadratic).
  const composer = new Composer({ prettyErrors: false, uniqueKeys: false });
  let i = 0;
  for (const doc of composer.compose(new Parser(lineCounter.addNewLine).parse(text))) {
    const line = lineCounter.linePos(doc.contents?.range[0] ?? doc.range[0]).line;
    yield { doc, read: documentValue(doc, i++, where), line };
  }
}

/** Lexer tokens that each become a node when parsed: scalars, aliases, collections, items, keys. */
const VALUE_TOKENS: ReadonlySet<string> = new Set([
  'scalar',
  'single-quoted-scalar',
  'double-quoted-scalar',
  'block-scalar-header',
  'alias',
  'flow-map-start',
  'flow-seq-start',
  'seq-item-ind',
  'explicit-key-ind',
]);

/**
 * How many values `text` holds, counted by yaml's lexer without building anything, and no further than
 * `limit + 1`: a caller can refuse text whose parse would cost too much memory (about 1 KB per value)
 * for the price of lexing at most `limit` values.
 */
export function countYamlValues(text: string, limit: number): number {
  let count = 0;
  for (const token of new Lexer().lex(text)) {
    if (VALUE_TOKENS.has(CST.tokenType(token) ?? '') && ++count > limit) break;
  }
  return count;
}

interface LoadedDocument {
  readonly value: unknown;
  /** 1-based line where the object starts, for messages. */
  readonly line: number;
}

interface LoadResult {
  readonly objects: readonly LoadedDocument[];
  readonly errors: readonly string[];
}

/** Objects of a YAML stream; comments, empty documents and `List` wrappers are handled here. */
export function loadYamlObjects(text: string, source: string): LoadResult {
  const objects: LoadedDocument[] = [];
  const errors: string[] = [];
  for (const { read, line } of readDocuments(text, source)) {
    if ('errors' in read) {
      errors.push(...read.errors);
      continue;
    }
    const value = read.value;
    if (value === null || value === undefined) continue;
    const kind = (value as { kind?: unknown }).kind;
    const items = (value as { items?: unknown }).items;
    if (typeof kind === 'string' && kind.endsWith('List') && Array.isArray(items))
      for (const item of items) objects.push({ value: item, line });
    else objects.push({ value, line });
  }
  return { objects, errors };
}
