// Writes the CRDs from the schema source (src/core/api/v1alpha1.ts) to deploy/crds/ (kustomize) and to
// the Helm chart's templates/crds.yaml (the same objects, with the chart's labels and crds.enabled /
// crds.keep). Run after changing the schema; test/core/api/crd.test.ts fails while any of them is stale.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CRD_DIRS, CRD_TEMPLATE, mapCrds, mapCrdTemplate } from '../src/core/api/crd.ts';

const root = join(import.meta.dirname, '..');
for (const dir of CRD_DIRS) {
  await mkdir(join(root, dir), { recursive: true });
  for (const { file, yaml } of mapCrds()) {
    await writeFile(join(root, dir, file), yaml);
    console.log(`wrote ${dir}/${file}`);
  }
}
await writeFile(join(root, CRD_TEMPLATE), mapCrdTemplate());
console.log(`wrote ${CRD_TEMPLATE}`);
