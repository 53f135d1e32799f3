// Bundles the CLI as ESM: the entry holds what every command needs; code behind dynamic imports
// (the registry client and undici) goes to chunks loaded only when used, keeping cold start fast.
//   usage: node scripts/build.ts [OUTDIR]   (default dist; chunks of earlier builds are removed first,
//          so OUTDIR holds exactly what the entry can load)
import { chmod, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { build } from 'esbuild';

const outdir = process.argv[2] ?? 'dist';
const outfile = join(outdir, 'pullmap.js');
// Chunk names carry a content hash: without this, every build would leave the last one's chunks behind.
await rm(join(outdir, 'chunks'), { recursive: true, force: true });
await build({
  entryPoints: ['src/cli/main.ts'],
  outdir,
  entryNames: 'pullmap',
  chunkNames: 'chunks/[name]-[hash]',
  splitting: true,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node24',
  sourcemap: 'linked',
  legalComments: 'none',
  banner: {
    // Bundled CommonJS dependencies may call require(); give ESM output one.
    js: "#!/usr/bin/env node\nimport { createRequire as __pullmapCreateRequire } from 'node:module';\nconst require = __pullmapCreateRequire(import.meta.url);",
  },
  logLevel: 'warning',
});
await chmod(outfile, 0o755);
