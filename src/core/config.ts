// Reading map objects from YAML text (a config file, or stdin): multi-document, `kind: List` too.
// Pure: the caller reads the file. Every problem names the document, its line and what to fix.

import { LineCounter, parseAllDocuments } from 'yaml';

export interface LoadedDocument {
  readonly value: unknown;
  /** 1-based line where the object starts, for messages. */
  readonly line: number;
}

export interface LoadResult {
  readonly objects: readonly LoadedDocument[];
  readonly errors: readonly string[];
}

/** Objects of a YAML stream; comments, empty documents and `List` wrappers are handled here. */
export function loadYamlObjects(text: string, source: string): LoadResult {
  const lineCounter = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const objects: LoadedDocument[] = [];
  const errors: string[] = [];
  const where = (offset: number): string => {
    const { line, col } = lineCounter.linePos(offset);
    return `${source}:${line}:${col}`;
  };
  const list = Array.isArray(docs) ? docs : [docs];
  list.forEach((doc, i) => {
    if (doc.errors.length > 0) {
      for (const e of doc.errors)
        errors.push(`${where(e.pos[0])}: YAML document ${i + 1} is malformed: ${e.message.split('\n')[0]}`);
      return;
    }
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: 100 });
    } catch (err) {
      errors.push(`${where(doc.range[0])}: YAML document ${i + 1} cannot be read: ${(err as Error).message}`);
      return;
    }
    if (value === null || value === undefined) return;
    const line = lineCounter.linePos(doc.contents?.range[0] ?? doc.range[0]).line;
    const kind = (value as { kind?: unknown }).kind;
    if (
      typeof kind === 'string' &&
      kind.endsWith('List') &&
      Array.isArray((value as { items?: unknown }).items)
    ) {
      for (const item of (value as { items: unknown[] }).items) objects.push({ value: item, line });
      return;
    }
    objects.push({ value, line });
  });
  return { objects, errors };
}
