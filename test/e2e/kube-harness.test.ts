// The real etcd + kube-apiserver harness works end to end: objects go in through client-node, kubectl
// sees them, they survive an apiserver restart, and stop() leaves no process behind.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { CoreV1Api } from '@kubernetes/client-node';
import { type Kube, startKube } from '../harness/kube.ts';

let kube: Kube;
// Every PID the harness ever had, so the final check also covers the pre-restart apiserver.
const seenPids = new Set<number>();

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw err;
  }
}

function rememberPids(): void {
  const { etcd, apiserver } = kube.pids();
  seenPids.add(etcd);
  seenPids.add(apiserver);
}

before(async () => {
  kube = await startKube();
  rememberPids();
  const { etcdMs, apiserverMs, totalMs } = kube.timings;
  console.log(
    `kube harness up in ${totalMs.toFixed(0)} ms (etcd ${etcdMs.toFixed(0)} ms, apiserver ${apiserverMs.toFixed(0)} ms)`,
  );
});

after(async () => {
  await kube?.stop();
});

test('a pod created through client-node is stored, listed by kubectl and survives an apiserver restart', async (t) => {
  const core = kube.kubeConfig().makeApiClient(CoreV1Api);
  const namespace = await kube.createNamespace({ prefix: 'harness', labels: { 'pullmap.dev/test': 'yes' } });
  const ns = await core.readNamespace({ name: namespace });
  assert.equal(ns.metadata?.labels?.['pullmap.dev/test'], 'yes');

  const created = await core.createNamespacedPod({
    namespace,
    body: {
      metadata: { name: 'web' },
      spec: { containers: [{ name: 'app', image: 'registry.invalid/acme/app:1.0' }] },
    },
  });
  assert.ok(created.metadata?.uid, 'the apiserver assigns a uid');

  const read = await core.readNamespacedPod({ name: 'web', namespace });
  assert.equal(read.metadata?.uid, created.metadata?.uid);
  assert.equal(read.spec?.containers[0]?.image, 'registry.invalid/acme/app:1.0');
  // No scheduler or kubelet: the pod never leaves Pending.
  assert.equal(read.status?.phase, 'Pending');

  const listed = JSON.parse(await kube.kubectl(['get', 'pods', '-n', namespace, '-o', 'json'])) as {
    items: { metadata: { name: string; uid: string } }[];
  };
  assert.deepEqual(
    listed.items.map((p) => [p.metadata.name, p.metadata.uid]),
    [['web', created.metadata?.uid]],
  );

  const before = kube.pids().apiserver;
  const t0 = performance.now();
  await kube.restart();
  t.diagnostic(`apiserver restart took ${(performance.now() - t0).toFixed(0)} ms`);
  rememberPids();
  assert.notEqual(kube.pids().apiserver, before, 'a new apiserver process serves');
  assert.equal(alive(before), false, 'the old apiserver is gone');

  // The same client keeps working: same port, same CA, same token.
  const again = await core.readNamespacedPod({ name: 'web', namespace });
  assert.equal(again.metadata?.uid, created.metadata?.uid);

  // An abrupt crash instead of a graceful shutdown loses nothing either (etcd holds the state).
  await kube.restart({ kill: true });
  rememberPids();
  const afterKill = await core.listNamespacedPod({ namespace });
  assert.deepEqual(
    afterKill.items.map((p) => p.metadata?.uid),
    [created.metadata?.uid],
  );
});

test('fresh namespaces are distinct and kubectl can apply into them', async () => {
  const [a, b] = await Promise.all([kube.createNamespace(), kube.createNamespace()]);
  assert.notEqual(a, b);
  const manifest = JSON.stringify({
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: 'cm', namespace: a },
    data: { answer: '42' },
  });
  await kube.kubectl(['apply', '-f', '-'], manifest);
  const core = kube.kubeConfig().makeApiClient(CoreV1Api);
  const cm = await core.readNamespacedConfigMap({ name: 'cm', namespace: a });
  assert.equal(cm.data?.answer, '42');
  await assert.rejects(core.readNamespacedConfigMap({ name: 'cm', namespace: b }), /404|not found/i);
});

test('stop() leaves no etcd or apiserver process behind', async () => {
  rememberPids();
  assert.ok(seenPids.size >= 2, `etcd and apiserver PIDs were recorded: ${[...seenPids]}`);
  for (const pid of seenPids) assert.ok(pid > 0);
  await kube.stop();
  const survivors = [...seenPids].filter(alive);
  // Kill leftovers before failing: a live child keeps this test process (and the whole run) from exiting.
  for (const pid of survivors) process.kill(pid, 'SIGKILL');
  assert.deepEqual(survivors, [], 'no harness process may survive stop()');
});
