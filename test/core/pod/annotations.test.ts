// The annotations planPod records (original images, the mapping that mapped each) are keyed by
// container name, and "constructor" is a valid container name: no key may be answered by
// Object.prototype, or that container would look already mapped and be left alone.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DEFAULT_DECISION_SETTINGS } from '../../../src/core/mapping/index.ts';
import {
  ANNOTATION_ORIGINAL_IMAGES,
  jsonAnnotation,
  planPod,
  recordedFor,
} from '../../../src/core/pod/plan.ts';
import { clusterSnapshot } from '../maps.ts';

const snapshot = clusterSnapshot({ mappings: [{ from: 'docker.io/', to: 'mirror.local/hub/' }] }, 'hub');
const ctx = { namespace: 'default', namespaceLabels: {} };
const pod = (annotations?: Record<string, string>, image = 'nginx:1.27') => ({
  kind: 'Pod',
  metadata: { name: 'p', ...(annotations ? { annotations } : {}) },
  spec: { containers: [{ name: 'constructor', image }] },
});

test('a container named "constructor" is mapped and recorded like any other', () => {
  const plan = planPod(snapshot, DEFAULT_DECISION_SETTINGS, pod(), ctx, () => undefined);
  assert.deepEqual(plan.patch[0], {
    op: 'replace',
    path: '/spec/containers/0/image',
    value: 'mirror.local/hub/library/nginx:1.27',
  });
  const annotations = plan.patch[1]?.value as Record<string, string> | undefined;
  assert.deepEqual(JSON.parse(annotations?.[ANNOTATION_ORIGINAL_IMAGES] ?? '{}'), {
    constructor: 'nginx:1.27',
  });
});

test('re-admitted with its record, it keeps the earlier answer and is not mapped twice', () => {
  const again = planPod(
    snapshot,
    DEFAULT_DECISION_SETTINGS,
    pod(
      { [ANNOTATION_ORIGINAL_IMAGES]: '{"constructor":"nginx:1.27"}' },
      'mirror.local/hub/library/nginx:1.27',
    ),
    ctx,
    () => undefined,
  );
  assert.deepEqual(
    again.patch.filter((op) => op.path.startsWith('/spec/')),
    [],
  );
});

test('jsonAnnotation and recordedFor: prototype names, mangled JSON and non-string values count as absent', () => {
  for (const annotations of [undefined, {}, { k: 'not json' }, { k: '[1]' }, { k: '{"a":1}' }, { k: 7 }]) {
    const read = jsonAnnotation(annotations, 'k');
    assert.equal(recordedFor(read, 'constructor'), undefined);
    assert.equal(recordedFor(read, 'a'), undefined);
  }
  assert.deepEqual({ ...jsonAnnotation({ k: '{"a":"x","b":2}' }, 'k') }, { a: 'x' });
});
