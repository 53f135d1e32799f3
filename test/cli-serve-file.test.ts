// `pullmap serve --config FILE` honours a ClusterImageMap's namespaceSelector like `explain
// --namespace-labels` does: with --kubeconfig it watches the namespaces of a real kube-apiserver for
// their labels, so the webhook and explain agree on the same file (issue 22 §1).
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type Kube, startKube } from './harness/kube.ts';
import { type TempDir, tempDir } from './harness/process.ts';
import { type Pullmap, patchOf, podReview, startPullmap } from './harness/pullmap.ts';

const MAPS = `apiVersion: pullmap.dev/v1alpha1
kind: ClusterImageMap
metadata: {name: prod-only}
spec:
  namespaceSelector: {matchLabels: {env: prod}}
  mappings: [{from: "ghcr.io/", to: "mirror.local/ghcr/"}]
---
apiVersion: pullmap.dev/v1alpha1
kind: ClusterImageMap
metadata: {name: by-name}
spec:
  namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: named}}
  mappings: [{from: "quay.io/", to: "mirror.local/quay/"}]
`;

let kube: Kube;
let dir: TempDir;
let pm: Pullmap | undefined;

before(async () => {
  [kube, dir] = await Promise.all([startKube(), tempDir('serve-file')]);
});
after(async () => {
  await pm?.stop();
  await Promise.all([kube?.stop(), dir?.remove()]);
});

const mappedImage = async (namespace: string, image: string): Promise<unknown> => {
  const { json } = await pm!.review(podReview({ a: image }, { namespace }));
  return patchOf(json.response).find((p) => p.path === '/spec/containers/0/image')?.value;
};

describe('serve --config with --kubeconfig: namespace labels from the cluster', () => {
  test("a pod is mapped only in namespaces whose labels the map's namespaceSelector selects", async () => {
    const prod = await kube.createNamespace({ prefix: 'prod', labels: { env: 'prod' } });
    const dev = await kube.createNamespace({ prefix: 'dev', labels: { env: 'dev' } });
    const config = join(dir.path, 'maps.yaml');
    writeFileSync(config, MAPS);
    pm = await startPullmap({ args: ['--config', config, '--kubeconfig', kube.kubeconfigPath] });
    assert.equal(await mappedImage(prod, 'ghcr.io/acme/app:1'), 'mirror.local/ghcr/acme/app:1');
    assert.equal(await mappedImage(dev, 'ghcr.io/acme/app:1'), undefined);
    // A namespace labelled after start-up is seen through the watch.
    await kube.kubectl(['label', 'namespace', dev, 'env=prod', '--overwrite']);
    let mapped: unknown;
    for (let i = 0; i < 100 && mapped === undefined; i++) {
      mapped = await mappedImage(dev, 'ghcr.io/acme/app:1');
      if (mapped === undefined) await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(mapped, 'mirror.local/ghcr/acme/app:1');
    // The name label needs no cluster, and is answered the same way.
    assert.equal(await mappedImage('named', 'quay.io/a/b:1'), 'mirror.local/quay/a/b:1');
    assert.equal(await mappedImage(prod, 'quay.io/a/b:1'), undefined);
    assert.ok(pm.logs().some((l) => l.msg === 'watching namespace labels for namespaceSelector'));
  });
});
