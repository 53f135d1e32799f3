// One watch line applied to the list-watch's store, without an API server: what changes, which
// resourceVersion the watch resumes from, and which lines are failures (410 Gone: list again).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isStatus } from '../../src/kube/errors.ts';
import { applyWatchEvent, type KubeObject } from '../../src/kube/list-watch.ts';

const obj = (name: string, rv: string, namespace = 'ns'): KubeObject => ({
  metadata: { name, namespace, resourceVersion: rv },
});

test('ADDED, MODIFIED and DELETED change the store and report the previous object', () => {
  const store = new Map<string, KubeObject>();
  const added = applyWatchEvent(store, { type: 'ADDED', object: obj('a', '1') }, '/x');
  assert.deepEqual(added, {
    kind: 'applied',
    resourceVersion: '1',
    change: { type: 'upsert', key: 'ns/a', previous: undefined },
  });
  assert.equal(store.get('ns/a')?.metadata.resourceVersion, '1');
  const modified = applyWatchEvent(store, { type: 'MODIFIED', object: obj('a', '2') }, '/x');
  assert.equal(
    modified.kind === 'applied' &&
      modified.change?.type === 'upsert' &&
      modified.change.previous?.metadata.resourceVersion,
    '1',
  );
  assert.equal(store.get('ns/a')?.metadata.resourceVersion, '2');
  const deleted = applyWatchEvent(store, { type: 'DELETED', object: obj('a', '3') }, '/x');
  assert.deepEqual(deleted, {
    kind: 'applied',
    resourceVersion: '3',
    change: { type: 'deleted', key: 'ns/a', previous: obj('a', '2') },
  });
  assert.equal(store.size, 0);
  applyWatchEvent(store, { type: 'ADDED', object: { metadata: { name: 'c', resourceVersion: '4' } } }, '/x');
  assert.ok(store.has('c'), 'a cluster-scoped object is keyed by name');
});

test('a bookmark moves the resourceVersion and changes nothing; unknown lines are ignored', () => {
  const store = new Map<string, KubeObject>([['ns/a', obj('a', '1')]]);
  assert.deepEqual(applyWatchEvent(store, { type: 'BOOKMARK', object: obj('', '9') }, '/x'), {
    kind: 'applied',
    resourceVersion: '9',
  });
  for (const line of [
    null,
    42,
    {},
    { type: 'ADDED' },
    { type: 'ADDED', object: {} },
    { type: 'WHAT', object: obj('b', '2') },
  ])
    assert.deepEqual(applyWatchEvent(store, line, '/x'), { kind: 'ignored' }, JSON.stringify(line));
  assert.deepEqual([...store.keys()], ['ns/a']);
});

test('an ERROR event is a failure with the Status code and reason; 410 means list again', () => {
  const store = new Map<string, KubeObject>();
  const gone = applyWatchEvent(
    store,
    {
      type: 'ERROR',
      object: { kind: 'Status', code: 410, reason: 'Expired', message: 'too old resource version' },
    },
    '/apis/pullmap.dev/v1alpha1/imagemaps',
  );
  assert.equal(gone.kind, 'failure');
  if (gone.kind !== 'failure') return;
  assert.equal(isStatus(gone.error, 410), true);
  assert.equal(gone.error.reason, 'Expired');
  assert.equal(gone.error.message, 'watch /apis/pullmap.dev/v1alpha1/imagemaps: too old resource version');
  const other = applyWatchEvent(store, { type: 'ERROR', object: { code: 500 } }, '/x');
  assert.equal(other.kind === 'failure' && isStatus(other.error, 410), false);
  assert.equal(applyWatchEvent(store, { type: 'ERROR' }, '/x').kind, 'failure', 'an ERROR without a Status');
});
