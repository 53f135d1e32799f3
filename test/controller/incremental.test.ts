// The controller's incremental analysis without Kubernetes: store changes in, parts and verdicts out.
// What is re-analysed per change, status-only updates, the accepted-generation fallback, relists that
// forget deleted maps, and re-checks that find nothing new.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AcceptedGenerations } from '../../src/controller/accepted.ts';
import {
  type GroupedMaps,
  groupMaps,
  IncrementalAnalysis,
  isStatusOnly,
} from '../../src/controller/incremental.ts';
import type { KubeObject } from '../../src/kube/list-watch.ts';

interface Spec {
  readonly name: string;
  readonly namespace?: string;
  readonly generation?: number;
  readonly to?: string;
  readonly from?: string;
  readonly status?: unknown;
  /** Seconds after a fixed time: the earlier accepted map wins a conflict. */
  readonly created?: number;
}

function map({
  name,
  namespace,
  generation = 1,
  to = 'mirror.example/nginx',
  from = 'nginx',
  status,
  created = 0,
}: Spec) {
  return {
    apiVersion: 'pullmap.dev/v1alpha1',
    kind: namespace === undefined ? 'ClusterImageMap' : 'ImageMap',
    metadata: {
      name,
      ...(namespace === undefined ? {} : { namespace }),
      uid: `uid-${namespace ?? ''}-${name}`,
      generation,
      creationTimestamp: new Date(Date.UTC(2026, 0, 1, 0, 0, created)).toISOString(),
    },
    spec: { mappings: [{ from, to }] },
    ...(status === undefined ? {} : { status }),
  } as KubeObject;
}

/** A tiny store: the objects by uid, and the change each write would bring. */
class Store {
  readonly objects = new Map<string, KubeObject>();
  put(object: KubeObject) {
    const previous = this.objects.get(object.metadata.uid!);
    this.objects.set(object.metadata.uid!, object);
    return { type: 'upsert' as const, current: object, previous };
  }
  remove(object: KubeObject) {
    const previous = this.objects.get(object.metadata.uid!);
    this.objects.delete(object.metadata.uid!);
    return { type: 'deleted' as const, current: undefined, previous };
  }
  grouped(): GroupedMaps {
    return groupMaps(this.objects.values());
  }
}

const names = (objects: readonly KubeObject[]) => objects.map((o) => o.metadata.name).sort();

function setup(keep = true) {
  const accepted = new AcceptedGenerations(keep);
  return { accepted, incremental: new IncrementalAnalysis(accepted), store: new Store() };
}

test('groupMaps: cluster maps first, namespaced maps by namespace', () => {
  const grouped = groupMaps([
    map({ name: 'a', namespace: 'x' }),
    map({ name: 'c' }),
    map({ name: 'b', namespace: 'x' }),
  ]);
  assert.deepEqual(names(grouped.cluster), ['c']);
  assert.deepEqual([...grouped.namespaces.keys()], ['x']);
  assert.deepEqual(names(grouped.namespaces.get('x')!), ['a', 'b']);
});

test('the first run analyses everything and rebuilds the snapshot; a namespaced change re-analyses only its namespace', () => {
  const { incremental, store } = setup();
  const a = map({ name: 'a', namespace: 'x' });
  const b = map({ name: 'b', namespace: 'y', from: 'redis', to: 'mirror.example/redis' });
  const c = map({ name: 'c', from: 'busybox', to: 'mirror.example/busybox' });
  for (const o of [a, b, c]) incremental.change(store.put(o));
  const first = incremental.run(store.grouped(), undefined);
  assert.equal(first.onlyIn, undefined, 'first run rebuilds');
  assert.deepEqual(names(first.changed), ['a', 'b', 'c']);
  assert.equal(first.analysis.verdicts.length, 3);
  assert.ok(first.analysis.verdicts.every((v) => v.verdict === 'Accepted'));

  const a2 = map({ name: 'a', namespace: 'x', generation: 2, to: 'other.example/nginx' });
  assert.equal(incremental.change(store.put(a2)), 'analyse');
  const second = incremental.run(store.grouped(), first.analysis);
  assert.deepEqual([...second.onlyIn!], ['x']);
  assert.deepEqual(names(second.changed), ['a'], 'only namespace x was re-analysed');
  assert.equal(second.unchanged, false);
  assert.equal(incremental.verdictOf(a2)?.generation, 2);
  assert.equal(incremental.verdictOf(b)?.verdict, 'Accepted', 'verdicts of other scopes are kept');
});

test("a cluster map change, a delete of a namespace's last map and a relist", () => {
  const { incremental, store } = setup();
  const a = map({ name: 'a', namespace: 'x' });
  const c = map({ name: 'c', from: 'busybox', to: 'mirror.example/busybox' });
  incremental.change(store.put(a));
  incremental.change(store.put(c));
  const first = incremental.run(store.grouped(), undefined);

  incremental.change(store.put(map({ name: 'c', generation: 2, from: 'busybox', to: 'm2.example/busybox' })));
  const cluster = incremental.run(store.grouped(), first.analysis);
  assert.equal(cluster.onlyIn, undefined, 'a cluster map change re-analyses everything');
  assert.deepEqual(names(cluster.changed), ['a', 'c']);

  incremental.change(store.remove(a));
  const removed = incremental.run(store.grouped(), cluster.analysis);
  assert.deepEqual([...removed.onlyIn!], ['x']);
  assert.deepEqual(names(removed.changed), []);
  assert.deepEqual(
    removed.analysis.verdicts.map((v) => v.name),
    ['ClusterImageMap/c'],
    'the namespace part is gone',
  );

  incremental.change({ type: 'replaced' });
  assert.equal(incremental.run(store.grouped(), removed.analysis).onlyIn, undefined, 'a relist rebuilds');
});

test('status-only updates need no analysis; a new generation or a newer recorded last-accepted does', () => {
  const { incremental, store, accepted } = setup();
  const a = map({ name: 'a', namespace: 'x', generation: 3 });
  incremental.change(store.put(a));
  incremental.run(store.grouped(), undefined);
  assert.equal(accepted.generation(a), 3);

  const statusWritten = map({
    name: 'a',
    namespace: 'x',
    generation: 3,
    status: { lastAccepted: { generation: 3, spec: a.spec } },
  });
  assert.equal(incremental.change(store.put(statusWritten)), 'status', 'its own status write coming back');
  assert.equal(incremental.change(store.put(map({ name: 'a', namespace: 'x', generation: 4 }))), 'analyse');

  // Another replica recorded a generation newer than the one held: analyse to serve it.
  const held = map({ name: 'h', namespace: 'y', generation: 5 });
  const newer = { ...held, status: { lastAccepted: { generation: 5, spec: held.spec } } };
  assert.equal(isStatusOnly(newer, held, undefined), false);
  assert.equal(isStatusOnly(newer, held, 5), true);
  assert.equal(isStatusOnly(newer, { ...held, metadata: { ...held.metadata, generation: 4 } }, 5), false);
});

test('a rejected new generation falls back to the last accepted one, unless onRejectedUpdate is Undeploy', () => {
  for (const keep of [true, false]) {
    const { incremental, store } = setup(keep);
    const c = map({ name: 'c', namespace: 'x', to: 'mirror.example/nginx' });
    const a1 = map({ name: 'a', namespace: 'x', from: 'redis', to: 'mirror.example/redis', created: 5 });
    incremental.change(store.put(c));
    incremental.change(store.put(a1));
    const first = incremental.run(store.grouped(), undefined);
    assert.equal(first.analysis.accepted.length, 2);
    // Generation 2 maps nginx elsewhere than the older map c does: a conflict.
    const a2 = map({ name: 'a', namespace: 'x', generation: 2, to: 'elsewhere.example/nginx', created: 5 });
    incremental.change(store.put(a2));
    const second = incremental.run(store.grouped(), first.analysis);
    const verdict = incremental.verdictOf(a2)!;
    assert.notEqual(verdict.verdict, 'Accepted');
    assert.equal(verdict.servingGeneration, keep ? 1 : undefined, `keep=${keep}`);
    assert.equal(second.analysis.accepted.length, keep ? 2 : 1, `keep=${keep}`);
  }
});

test('a relist forgets the accepted generations of maps deleted in the gap', () => {
  const { incremental, store, accepted } = setup();
  const a = map({ name: 'a', namespace: 'x' });
  const b = map({ name: 'b', namespace: 'x', from: 'redis', to: 'mirror.example/redis' });
  incremental.change(store.put(a));
  incremental.change(store.put(b));
  incremental.run(store.grouped(), undefined);
  assert.equal(accepted.size, 2);
  store.objects.delete(b.metadata.uid!); // gone while the watch was down: no delete event
  incremental.change({ type: 'replaced' });
  incremental.run(store.grouped(), undefined);
  assert.equal(accepted.size, 1);
  assert.equal(accepted.generation(b), undefined);
});

test('a re-check that finds what is in force reports unchanged; a change in between does not', () => {
  const { incremental, store } = setup();
  const a = map({ name: 'a', namespace: 'x' });
  incremental.change(store.put(a));
  const first = incremental.run(store.grouped(), undefined);
  assert.equal(first.unchanged, false, 'nothing is in force yet');

  incremental.recheck();
  const again = incremental.run(store.grouped(), first.analysis);
  assert.equal(again.unchanged, true);
  assert.equal(again.onlyIn, undefined);
  assert.deepEqual(names(again.changed), ['a'], 'status is still reconciled for every map');

  incremental.recheck();
  incremental.change(store.put(map({ name: 'a', namespace: 'x', generation: 2, to: 'x.example/nginx' })));
  assert.equal(incremental.run(store.grouped(), again.analysis).unchanged, false);

  // A relist that finds the same maps is still a change: the snapshot is swapped, not kept.
  const current = incremental.run(store.grouped(), again.analysis);
  incremental.change({ type: 'replaced' });
  incremental.recheck();
  assert.equal(incremental.run(store.grouped(), current.analysis).unchanged, false, 'a relist came first');

  incremental.change(store.put(map({ name: 'b', namespace: 'y' })));
  incremental.recheck();
  assert.equal(incremental.run(store.grouped(), again.analysis).unchanged, false, 'a change came first');
});
