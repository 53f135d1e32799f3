// Dependency direction: every import in src/, type-only ones included, read from the source text and
// checked against the layers README's Layout section describes. A wrong import fails here naming the
// file and the import.
//
//   cli                              the commands: composition, argv and env; nothing imports it
//   serve, controller, cache         the three long-running parts
//   sources, registry, kube          talking to registries and the Kubernetes API; the map and existence
//                                    sources a decision reads, and deciding again with their answers
//   observe, net                     metrics and logs; Node's HTTP modules as pullmap loads them: used by
//                                    every impure layer, importing nothing of pullmap
//   core                             pure: no I/O, no clock, no node: modules
//
// A folder imports its own files and folders of lower layers, never a sibling of its own layer. The
// cache (src/cache/) is a data plane of its own: only the CLI's cache command (cli/cache.ts) loads it. observe
// sits between core and the I/O layers because kube/, serve/, cache/ and cli/ all log and count, and
// it needs nothing of pullmap; it is not core because it writes streams and reads the process's clock
// and memory.
//
// Inside core, folders are layered the same way, lowest first:
//
//   (core's own files)   facts that everything reads: durations, JSON, hosts, tag patterns, memos
//   reference            the image reference grammar: needs nothing else of pullmap
//   schema               the declaration DSL the API is written in
//   api                  the CRD types and their schema, the AdmissionReview envelope
//   mapping              maps compiled into rules, their consistency, the decision for one image
//   pod                  where a pod's images are and the patch for a whole pod, from mapping's decisions
//   manifest, cache      leaves: rewriting YAML manifests; the cache's refresh policy
//
// A core folder with an index.ts is entered only through it from outside that folder, so what the
// folder keeps to itself can change without a caller noticing.

import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, test } from 'node:test';
import { build } from 'esbuild';

const ROOT = resolve(import.meta.dirname, '..');
const SRC = join(ROOT, 'src');

const LAYERS: ReadonlyArray<readonly string[]> = [
  ['core'],
  ['observe', 'net'],
  ['sources', 'registry', 'kube'],
  // Copying images: the controller's fill loop and `pullmap copy` both use it.
  ['mirror'],
  ['serve', 'controller', 'cache'],
  ['cli'],
];
/** core's folders, lowest first; '' is core's own files. */
const CORE_LAYERS: ReadonlyArray<readonly string[]> = [
  [''],
  ['reference'],
  ['schema'],
  ['api'],
  ['mapping'],
  ['pod'],
  ['manifest', 'cache'],
];
/** Packages core may use: pure libraries only. */
const CORE_PACKAGES = new Set(['yaml', 're2js']);

const rank = (folder: string): number | undefined => {
  const i = LAYERS.findIndex((layer) => layer.includes(folder));
  return i < 0 ? undefined : i;
};

/** The source without comments; string and template contents are kept (import specifiers are strings). */
export function stripComments(text: string): string {
  let out = '';
  let i = 0;
  while (i < text.length) {
    const c = text[i] as string;
    const next = text[i + 1];
    if (c === '/' && next === '/') {
      while (i < text.length && text[i] !== '\n') i++;
    } else if (c === '/' && next === '*') {
      const end = text.indexOf('*/', i + 2);
      i = end < 0 ? text.length : end + 2;
      out += ' ';
    } else if (c === "'" || c === '"' || c === '`') {
      let j = i + 1;
      while (j < text.length && text[j] !== c) j += text[j] === '\\' ? 2 : 1;
      out += text.slice(i, j + 1);
      i = j + 1;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

export interface Import {
  readonly specifier: string;
  readonly line: number;
}

const STATIC = /(?:^|[;}\n])\s*(?:import|export)\b(?:[^;'"`]*?\bfrom)?\s*(['"])([^'"]+)\1/g;
const DYNAMIC = /\bimport\(\s*(['"])([^'"]+)\1\s*\)/g;

/** Every import and re-export specifier of a module, static, type-only and dynamic. */
export function importsOf(text: string): Import[] {
  const code = stripComments(text);
  const lineAt = (index: number) => code.slice(0, index).split('\n').length;
  const out: Import[] = [];
  for (const pattern of [STATIC, DYNAMIC])
    for (const m of code.matchAll(pattern)) {
      const at = m.index + m[0].lastIndexOf(m[2] as string);
      out.push({ specifier: m[2] as string, line: lineAt(at) });
    }
  return out;
}

/** A module of src/: its path relative to src/ (like "serve/http.ts") and its imports. */
export interface Module {
  readonly path: string;
  readonly imports: readonly Import[];
}

const folderOf = (path: string): string => (path.includes('/') ? (path.split('/')[0] as string) : '');

const resolveIn = (from: string, specifier: string): string =>
  relative(SRC, resolve(SRC, dirname(from), specifier)).replaceAll('\\', '/');

/** What points the wrong way, one message per import: "file:line imports X: why". */
export function layerViolations(modules: readonly Module[]): string[] {
  const out: string[] = [];
  for (const m of modules) {
    const folder = folderOf(m.path);
    const from = rank(folder);
    for (const { specifier, line } of m.imports) {
      const where = `src/${m.path}:${line} imports '${specifier}'`;
      if (!specifier.startsWith('.')) {
        if (folder === 'core' && (specifier.startsWith('node:') || !CORE_PACKAGES.has(specifier)))
          out.push(
            `${where}: core is pure; it may use only ${[...CORE_PACKAGES].join(', ')} (move the I/O to a caller)`,
          );
        continue;
      }
      const target = resolveIn(m.path, specifier);
      if (target.startsWith('..')) continue; // outside src/ (the embedded examples/default.yaml)
      const to = folderOf(target);
      if (to === folder) continue;
      const toRank = rank(to);
      if (from === undefined || toRank === undefined) {
        out.push(`${where}: ${from === undefined ? folder || 'src/' : to} is in no layer; add it to LAYERS`);
      } else if (toRank === from) {
        out.push(`${where}: ${folder} and ${to} are one layer; move what both need to a layer below`);
      } else if (toRank > from) {
        out.push(`${where}: ${folder} is below ${to}; a lower layer never imports a higher one`);
      }
    }
  }
  return out;
}

/** Modules that may import src/cache/ from outside it: the CLI's `cache` command. */
const CACHE_DOORS = new Set(['cli/cache.ts']);

/** Imports of src/cache/ from outside it, other than through CACHE_DOORS. */
export function cacheBoundaryViolations(modules: readonly Module[]): string[] {
  const out: string[] = [];
  for (const m of modules) {
    if (folderOf(m.path) === 'cache' || CACHE_DOORS.has(m.path)) continue;
    for (const { specifier, line } of m.imports) {
      if (!specifier.startsWith('.') || folderOf(resolveIn(m.path, specifier)) !== 'cache') continue;
      out.push(
        `src/${m.path}:${line} imports '${specifier}': the cache is its own data plane; only ${[...CACHE_DOORS].join(', ')} loads it`,
      );
    }
  }
  return out;
}

/** "core/mapping/rule.ts" → "mapping"; a file directly in core/ → "". */
const coreFolderOf = (path: string): string => {
  const parts = path.split('/');
  return parts.length > 2 ? (parts[1] as string) : '';
};
const coreRank = (folder: string): number | undefined => {
  const i = CORE_LAYERS.findIndex((layer) => layer.includes(folder));
  return i < 0 ? undefined : i;
};

/**
 * Inside core: imports point to a lower folder of CORE_LAYERS (or within their folder), and a folder
 * with an index.ts is imported through it by every module outside that folder, in core or not.
 */
export function coreViolations(modules: readonly Module[]): string[] {
  const barrels = new Set(
    modules.filter((m) => /^core\/[^/]+\/index\.ts$/.test(m.path)).map((m) => coreFolderOf(m.path)),
  );
  const out: string[] = [];
  for (const m of modules) {
    for (const { specifier, line } of m.imports) {
      if (!specifier.startsWith('.')) continue;
      const target = resolveIn(m.path, specifier);
      if (!target.startsWith('core/')) continue;
      const where = `src/${m.path}:${line} imports '${specifier}'`;
      const to = coreFolderOf(target);
      const inside = m.path.startsWith('core/');
      const from = inside ? coreFolderOf(m.path) : undefined;
      if (from === to) continue;
      if (barrels.has(to) && target !== `core/${to}/index.ts`)
        out.push(`${where}: core/${to} is entered through core/${to}/index.ts (export it there if needed)`);
      if (from === undefined) continue;
      const [a, b] = [coreRank(from), coreRank(to)];
      const name = (f: string) => (f === '' ? "core's own files" : `core/${f}`);
      if (a === undefined || b === undefined)
        out.push(`${where}: ${name(a === undefined ? from : to)} is in no core layer; add it to CORE_LAYERS`);
      else if (a === b)
        out.push(`${where}: ${name(from)} and ${name(to)} are one layer; neither imports the other`);
      else if (b > a) out.push(`${where}: ${name(from)} is below ${name(to)}; move what both need down`);
    }
  }
  return out;
}

/** Import cycles among the modules whose path starts with `under`, each as "a -> b -> a". */
export function importCycles(modules: readonly Module[], under: string): string[] {
  const inside = new Map(modules.filter((m) => m.path.startsWith(under)).map((m) => [m.path, m]));
  const edges = (path: string): string[] =>
    (inside.get(path)?.imports ?? [])
      .filter((i) => i.specifier.startsWith('.'))
      .map((i) => resolveIn(path, i.specifier))
      .filter((p) => inside.has(p));
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const cycles: string[] = [];
  const visit = (path: string): void => {
    state.set(path, 'open');
    stack.push(path);
    for (const next of edges(path)) {
      const s = state.get(next);
      if (s === 'open') cycles.push([...stack.slice(stack.indexOf(next)), next].join(' -> '));
      else if (s === undefined) visit(next);
    }
    stack.pop();
    state.set(path, 'done');
  };
  for (const path of [...inside.keys()].sort()) if (!state.has(path)) visit(path);
  return cycles;
}

function sourceModules(): Module[] {
  return readdirSync(SRC, { recursive: true, encoding: 'utf8' })
    .filter((p) => p.endsWith('.ts'))
    .sort()
    .map((p) => ({
      path: p.replaceAll('\\', '/'),
      imports: importsOf(readFileSync(join(SRC, p), 'utf8')),
    }));
}

describe('the checker', () => {
  const mod = (path: string, ...specifiers: string[]): Module => ({
    path,
    imports: specifiers.map((specifier, i) => ({ specifier, line: i + 1 })),
  });

  test('reads static, type-only, re-export, side-effect and dynamic imports, not comments', () => {
    const text = [
      "import { a } from './a.ts';",
      "import type { B } from '../b/b.ts';",
      'import {',
      '  type C,',
      '  d,',
      "} from './c.ts';",
      "export { e } from './e.ts';",
      "export type * from './f.ts';",
      "import './side.ts';",
      "// import { no } from './commented.ts';",
      "/* import { no } from './block.ts'; */",
      'const x = \'import { no } from "./string.ts"\';',
      "const m = await import('../lazy/g.ts');",
    ].join('\n');
    assert.deepEqual(importsOf(text), [
      { specifier: './a.ts', line: 1 },
      { specifier: '../b/b.ts', line: 2 },
      { specifier: './c.ts', line: 6 },
      { specifier: './e.ts', line: 7 },
      { specifier: './f.ts', line: 8 },
      { specifier: './side.ts', line: 9 },
      { specifier: '../lazy/g.ts', line: 13 },
    ]);
  });

  test('names the file, the line and the import that points the wrong way', () => {
    const found = layerViolations([
      mod('serve/http.ts', '../core/net.ts', '../observe/log.ts', './admission.ts'),
      mod('serve/file-source.ts', '../cli/maps.ts'),
      mod('controller/validate.ts', '../registry/x.ts', '../serve/admission.ts'),
      mod('core/net.ts', 'node:net', 'yaml', 'undici'),
      mod('observe/log.ts', '../kube/client.ts'),
      mod('newthing/x.ts', '../core/net.ts'),
    ]);
    assert.deepEqual(found, [
      "src/serve/file-source.ts:1 imports '../cli/maps.ts': serve is below cli; a lower layer never imports a higher one",
      "src/controller/validate.ts:2 imports '../serve/admission.ts': controller and serve are one layer; move what both need to a layer below",
      "src/core/net.ts:1 imports 'node:net': core is pure; it may use only yaml, re2js (move the I/O to a caller)",
      "src/core/net.ts:3 imports 'undici': core is pure; it may use only yaml, re2js (move the I/O to a caller)",
      "src/observe/log.ts:1 imports '../kube/client.ts': observe is below kube; a lower layer never imports a higher one",
      "src/newthing/x.ts:1 imports '../core/net.ts': newthing is in no layer; add it to LAYERS",
    ]);
  });

  test('names imports of the cache from outside it, except the CLI cache command', () => {
    const found = cacheBoundaryViolations([
      mod('cli/cache.ts', '../cache/index.ts'),
      mod('cli/serve.ts', '../cache/route.ts'),
      mod('cache/server.ts', './transport/blobs.ts', '../registry/client.ts'),
      mod('serve/http.ts', '../core/cache/key.ts'),
    ]);
    assert.deepEqual(found, [
      "src/cli/serve.ts:1 imports '../cache/route.ts': the cache is its own data plane; only cli/cache.ts loads it",
    ]);
  });

  test("orders core's folders and keeps their barrels", () => {
    const found = coreViolations([
      mod('core/reference/index.ts', './parse.ts'),
      mod('core/reference/parse.ts', '../duration.ts'),
      mod('core/api/v1alpha1.ts', '../mapping/rule.ts', '../reference/index.ts', '../schema/dsl.ts'),
      mod('core/mapping/decide.ts', '../pod/plan.ts', '../reference/parse.ts', './rule.ts'),
      mod('core/duration.ts', './reference/index.ts'),
      mod('core/manifest/rewrite.ts', '../cache/policy.ts'),
      mod('core/odd/x.ts', '../duration.ts'),
      mod('serve/http.ts', '../core/reference/parse.ts', '../core/reference/index.ts', '../core/pod/plan.ts'),
    ]);
    assert.deepEqual(found, [
      "src/core/api/v1alpha1.ts:1 imports '../mapping/rule.ts': core/api is below core/mapping; move what both need down",
      "src/core/mapping/decide.ts:1 imports '../pod/plan.ts': core/mapping is below core/pod; move what both need down",
      "src/core/mapping/decide.ts:2 imports '../reference/parse.ts': core/reference is entered through core/reference/index.ts (export it there if needed)",
      "src/core/duration.ts:1 imports './reference/index.ts': core's own files is below core/reference; move what both need down",
      "src/core/manifest/rewrite.ts:1 imports '../cache/policy.ts': core/manifest and core/cache are one layer; neither imports the other",
      "src/core/odd/x.ts:1 imports '../duration.ts': core/odd is in no core layer; add it to CORE_LAYERS",
      "src/serve/http.ts:1 imports '../core/reference/parse.ts': core/reference is entered through core/reference/index.ts (export it there if needed)",
    ]);
  });

  test('finds cycles, direct and through other modules', () => {
    const modules = [
      mod('core/mapping/decide.ts', './snapshot.ts', '../memo.ts'),
      mod('core/mapping/snapshot.ts', './decide.ts'),
      mod('core/a.ts', './b.ts'),
      mod('core/b.ts', './mapping/c.ts'),
      mod('core/mapping/c.ts', '../a.ts'),
      mod('core/memo.ts'),
    ];
    assert.deepEqual(importCycles(modules, 'core/'), [
      'core/a.ts -> core/b.ts -> core/mapping/c.ts -> core/a.ts',
      'core/mapping/decide.ts -> core/mapping/snapshot.ts -> core/mapping/decide.ts',
    ]);
  });
});

describe('src/', () => {
  const modules = sourceModules();

  test('every import points to a lower layer (or within its own folder)', () => {
    assert.deepEqual(layerViolations(modules), []);
  });

  test('nothing outside the cache imports it but the CLI cache command', () => {
    assert.deepEqual(cacheBoundaryViolations(modules), []);
  });

  test("core's folders import only lower ones, and through their index.ts where they have one", () => {
    assert.deepEqual(coreViolations(modules), []);
  });

  test('core has no import cycle', () => {
    assert.deepEqual(importCycles(modules, 'core/'), []);
  });

  for (const folder of LAYERS.flat().filter((f) => f !== 'core'))
    test(`${folder} has no import cycle`, () => {
      assert.deepEqual(importCycles(modules, `${folder}/`), []);
    });

  test('the scanner sees every import esbuild resolves (so none escapes the checks above)', async () => {
    const result = await build({
      entryPoints: modules.filter((m) => !m.path.endsWith('.d.ts')).map((m) => join(SRC, m.path)),
      bundle: true,
      write: false,
      metafile: true,
      outdir: join(ROOT, 'dist', 'layers-check'),
      platform: 'node',
      format: 'esm',
      splitting: true,
      packages: 'external',
      loader: { '.yaml': 'text' },
      logLevel: 'silent',
    });
    const scanned = new Set(
      modules.flatMap((m) => m.imports.map((i) => `src/${m.path} -> ${resolveIn(m.path, i.specifier)}`)),
    );
    const missed: string[] = [];
    let seen = 0;
    for (const [input, info] of Object.entries(result.metafile.inputs)) {
      if (!input.startsWith('src/')) continue;
      for (const imp of info.imports) {
        if (imp.external || !imp.path.startsWith('src/')) continue;
        seen++;
        const key = `${input} -> ${relative(SRC, join(ROOT, imp.path)).replaceAll('\\', '/')}`;
        if (!scanned.has(key)) missed.push(key);
      }
    }
    assert.ok(seen > 100, `esbuild reported only ${seen} imports inside src/`);
    assert.deepEqual(missed, []);
  });
});
