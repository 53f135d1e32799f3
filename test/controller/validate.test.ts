// The validating webhook's decision for map writes, without a cluster: the same analysis and words as
// the controller, allowed when pullmap has not loaded maps yet, warnings for maps a write would reject.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { reviewMapAdmission } from '../../src/controller/validate.ts';
import { analyzeMaps, type MapInput, verdictMessage } from '../../src/core/mapping/index.ts';
import type { KubeObject } from '../../src/kube/list-watch.ts';

const map = (name: string, created: string, mappings: object[], namespace = 'team'): KubeObject => ({
  apiVersion: 'pullmap.dev/v1alpha1',
  kind: 'ImageMap',
  metadata: { name, namespace, creationTimestamp: created, generation: 1, uid: `uid-${name}` },
  spec: { mappings },
});

const review = (object: unknown, operation = 'CREATE', kind = 'ImageMap') => ({
  apiVersion: 'admission.k8s.io/v1',
  kind: 'AdmissionReview',
  request: {
    uid: 'r1',
    kind: { group: 'pullmap.dev', version: 'v1alpha1', kind },
    operation,
    namespace: 'team',
    object,
  },
});

const accepted = map('a', '2026-01-01T00:00:00Z', [{ from: 'nginx', to: 'a.example/nginx' }]);
const inputs: MapInput[] = [{ current: accepted }];

test('a conflicting candidate is denied with the words the controller writes into its condition', () => {
  const candidate = map('b', '2026-01-02T00:00:00Z', [
    { from: 'docker.io/library/nginx', to: 'b.example/nginx' },
  ]);
  const result = reviewMapAdmission(review(candidate), inputs);
  assert.ok(result.ok);
  assert.equal(result.answer.response.allowed, false);
  assert.equal(result.answer.response.uid, 'r1');
  const controller = analyzeMaps([...inputs, { current: candidate }]).verdicts[1]!;
  assert.equal(controller.verdict, 'Conflict');
  const message = result.answer.response.status!.message;
  assert.equal(
    message,
    `ImageMap/team/b is rejected (Conflict): ${controller.findings[0]!.path}: ${controller.findings[0]!.message}`,
  );
  assert.ok(verdictMessage(controller).startsWith(message.replace(/^.*?\(Conflict\): /, '')));
});

test('an invalid candidate is denied naming the field and the fix', () => {
  const candidate = map('c', '2026-01-02T00:00:00Z', [
    { from: 'ghcr.io/', to: ['x.example/ghcr.io/', 'y.example/ghcr.io/'] },
  ]);
  const result = reviewMapAdmission(review(candidate), inputs);
  assert.ok(result.ok);
  assert.equal(result.answer.response.allowed, false);
  assert.match(
    result.answer.response.status!.message,
    /^ImageMap\/team\/c is rejected \(Invalid\): spec\.mappings\[0\]\.to: lists 2 candidates, but only when: IfExists/,
  );
  // `to` of the wrong shape, which the CRD schema cannot refuse, is refused here.
  const wrong = reviewMapAdmission(
    review(map('d', '2026-01-02T00:00:00Z', [{ from: 'ghcr.io/', to: 5 }])),
    inputs,
  );
  assert.ok(wrong.ok);
  assert.match(
    wrong.answer.response.status!.message,
    /spec\.mappings\[0\]\.to: must be a string or a list of strings, not a number/,
  );
});

test('an update of an older map that would push out a newer one is allowed with a warning naming it', () => {
  const newer = map('z', '2026-01-03T00:00:00Z', [{ from: 'quay.io/', to: 'z.example/quay.io/' }]);
  const updated = map('a', '2026-01-01T00:00:00Z', [{ from: 'quay.io/', to: 'a.example/quay.io/' }]);
  const result = reviewMapAdmission(review(updated, 'UPDATE'), [...inputs, { current: newer }]);
  assert.ok(result.ok);
  assert.equal(result.answer.response.allowed, true);
  assert.equal(result.answer.response.warnings?.length, 1);
  assert.match(
    result.answer.response.warnings![0]!,
    /^ImageMap\/team\/z would be rejected \(Conflict\): spec\.mappings\[0\]: maps "quay\.io\/"/,
  );
});

test('replacing its own older version is not a conflict; other kinds, deletes and unloaded sources are allowed', () => {
  const same = map('a', '2026-01-01T00:00:00Z', [{ from: 'nginx', to: 'b.example/nginx' }]);
  const updated = reviewMapAdmission(review(same, 'UPDATE'), inputs);
  assert.ok(updated.ok && updated.answer.response.allowed);
  const pod = reviewMapAdmission(
    { ...review({}), request: { ...review({}).request, kind: { group: '', kind: 'Pod' } } },
    inputs,
  );
  assert.ok(pod.ok && pod.answer.response.allowed);
  const del = reviewMapAdmission(review(accepted, 'DELETE'), inputs);
  assert.ok(del.ok && del.answer.response.allowed);
  const early = reviewMapAdmission(review(accepted), undefined);
  assert.ok(early.ok && early.answer.response.allowed);
  assert.match(early.answer.response.warnings![0]!, /has not loaded the maps yet/);
});

test('what is not an AdmissionReview is a bad request, not a crash', () => {
  for (const bad of [
    null,
    'x',
    [],
    {},
    { kind: 'AdmissionReview' },
    { kind: 'AdmissionReview', request: { uid: 5 } },
  ]) {
    const result = reviewMapAdmission(bad, inputs);
    assert.equal(result.ok, false, JSON.stringify(bad));
  }
  const noObject = reviewMapAdmission(review(undefined), inputs);
  assert.ok(noObject.ok);
  assert.equal(noObject.answer.response.allowed, false);
});
