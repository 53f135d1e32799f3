// Bundles the CLI as ESM: the entry holds what every command needs; code behind dynamic imports
// (the registry client and undici) goes to chunks loaded only when used, keeping cold start fast.
import { chmod } from 'node:fs/promises';
import { build } from 'esbuild';

const outfile = 'dist/pullmap.js';
await build({
  entryPoints: ['src/cli/main.ts'],
  outdir: 'dist',
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
