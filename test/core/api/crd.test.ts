// The CRDs in deploy/crds/ and the Helm chart's templates/crds.yaml are exactly what the schema source generates,
// and they have the shape the API server demands of a structural schema (checked for real in
// test/e2e/controller.test.ts and test/deploy/helm.test.ts).
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse } from 'yaml';
import { CRD_DIRS, CRD_TEMPLATE, mapCrds, mapCrdTemplate } from '../../../src/core/api/crd.ts';
import { mapSpecSchema } from '../../../src/core/api/v1alpha1.ts';

const root = join(import.meta.dirname, '..', '..', '..');
const dir = join(root, 'deploy', 'crds');

test('deploy/crds/ and the chart\'s templates/crds.yaml match the schema source (run "node scripts/gen-crds.ts" after a schema change)', () => {
  assert.deepEqual(CRD_DIRS, ['deploy/crds']);
  for (const crdDir of CRD_DIRS) {
    for (const { file, yaml } of mapCrds()) {
      assert.equal(readFileSync(join(root, crdDir, file), 'utf8'), yaml, `${crdDir}/${file} is stale`);
    }
  }
  assert.equal(readFileSync(join(root, CRD_TEMPLATE), 'utf8'), mapCrdTemplate(), `${CRD_TEMPLATE} is stale`);
  // No crds/ beside it: Helm would install those first and the template would then collide with them.
  assert.equal(existsSync(join(root, 'deploy', 'helm', 'pullmap', 'crds')), false);
});

test('the spec schema in the installed CRD files is the one the config loader and the webhook check with', () => {
  // Read back from the files, so what YAML serialisation keeps or drops is what is compared.
  const expected = JSON.parse(JSON.stringify(mapSpecSchema.openApi));
  for (const { file } of mapCrds()) {
    const crd = parse(readFileSync(join(dir, file), 'utf8')) as {
      spec: { versions: { schema: { openAPIV3Schema: { properties: Record<string, unknown> } } }[] };
    };
    assert.deepEqual(crd.spec.versions[0]!.schema.openAPIV3Schema.properties.spec, expected, file);
  }
});

test('every schema node has a type, except the string-or-list field that preserves its value', () => {
  const untyped: string[] = [];
  const walk = (node: Record<string, unknown>, path: string): void => {
    if (node.type === undefined && node['x-kubernetes-preserve-unknown-fields'] !== true) untyped.push(path);
    for (const [name, child] of Object.entries((node.properties ?? {}) as Record<string, unknown>))
      walk(child as Record<string, unknown>, `${path}.${name}`);
    if (node.items) walk(node.items as Record<string, unknown>, `${path}[]`);
  };
  for (const { crd } of mapCrds()) {
    const root = (crd as { spec: { versions: { schema: { openAPIV3Schema: Record<string, unknown> } }[] } })
      .spec.versions[0]!.schema.openAPIV3Schema;
    walk(root, '');
  }
  assert.deepEqual(untyped, []);
});
