// Writes deploy/crds/*.yaml from the schema source (src/core/api/v1alpha1.ts). Run after changing the
// schema; test/core/crd.test.ts fails while the committed files are stale.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { mapCrds } from '../src/core/api/crd.ts';

const dir = join(import.meta.dirname, '..', 'deploy', 'crds');
await mkdir(dir, { recursive: true });
for (const { file, yaml } of mapCrds()) {
  await writeFile(join(dir, file), yaml);
  console.log(`wrote deploy/crds/${file}`);
}
