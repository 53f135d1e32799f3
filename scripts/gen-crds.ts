// Writes the CRDs from the schema source (src/core/api/v1alpha1.ts) to deploy/crds/ (kustomize) and to
// the Helm chart's crds/ (deploy/helm/pullmap/crds/), the same bytes in both. Run after changing the
// schema; test/core/crd.test.ts fails while either copy is stale.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CRD_DIRS, mapCrds } from '../src/core/api/crd.ts';

const root = join(import.meta.dirname, '..');
for (const dir of CRD_DIRS) {
  await mkdir(join(root, dir), { recursive: true });
  for (const { file, yaml } of mapCrds()) {
    await writeFile(join(root, dir, file), yaml);
    console.log(`wrote ${dir}/${file}`);
  }
}
