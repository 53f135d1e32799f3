// Bundles the CLI into one ESM file: one module to load keeps `pullmap` cold start fast.
import { chmod } from 'node:fs/promises';
import { build } from 'esbuild';

const outfile = 'dist/pullmap.js';
await build({
  entryPoints: ['src/cli/main.ts'],
  outfile,
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
