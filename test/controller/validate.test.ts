// The validating webhook's decision for map writes, without a cluster: the same analysis and words as
// the controller, allowed when pullmap has not loaded maps yet, warnings for maps a write would reject.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type MapsInForce, reviewMapAdmission } from '../../src/controller/validate.ts';
import { parseReview } from '../../src/core/api/admission.ts';
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

/** The review as the server hands it over: parsed, then decided against `inputs` and their verdicts. */
function ask(envelope: unknown, inputs: readonly MapInput[] | undefined) {
  const parsed = parseReview(envelope);
  assert.ok(parsed.ok, JSON.stringify(envelope));
  const maps: MapsInForce | undefined = inputs && { inputs, verdicts: analyzeMaps(inputs).verdicts };
  return reviewMapAdmission(parsed.request, maps);
}

const accepted = map('a', '2026-01-01T00:00:00Z', [{ from: 'nginx', to: 'a.example/nginx' }]);
const inputs: MapInput[] = [{ current: accepted }];

test('a conflicting candidate is denied with the words the controller writes into its condition', () => {
  const candidate = map('b', '2026-01-02T00:00:00Z', [
    { from: 'docker.io/library/nginx', to: 'b.example/nginx' },
  ]);
  const result = ask(review(candidate), inputs);
  assert.equal(result.allowed, false);
  assert.equal(result.uid, 'r1');
  const controller = analyzeMaps([...inputs, { current: candidate }]).verdicts[1]!;
  assert.equal(controller.verdict, 'Conflict');
  const message = result.status!.message;
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
  const result = ask(review(candidate), inputs);
  assert.equal(result.allowed, false);
  assert.match(
    result.status!.message,
    /^ImageMap\/team\/c is rejected \(Invalid\): spec\.mappings\[0\]\.to: lists 2 candidates, but only when: IfExists/,
  );
  // `to` of the wrong shape, which the CRD schema cannot refuse, is refused here.
  const wrong = ask(review(map('d', '2026-01-02T00:00:00Z', [{ from: 'ghcr.io/', to: 5 }])), inputs);
  assert.match(
    wrong.status!.message,
    /spec\.mappings\[0\]\.to: must be a string or a list of strings, not a number/,
  );
});

test('a mutableTags pattern RE2 cannot express is denied naming the field and the reason', () => {
  const candidate = {
    ...map('e', '2026-01-02T00:00:00Z', [{ from: 'ghcr.io/', to: 'x.example/ghcr.io/' }]),
    spec: { mappings: [{ from: 'ghcr.io/', to: 'x.example/ghcr.io/' }], mutableTags: ['(a|a)*', '(v)\\1'] },
  };
  const result = ask(review(candidate), inputs);
  assert.equal(result.allowed, false);
  assert.match(
    result.status!.message,
    /^ImageMap\/team\/e is rejected \(Invalid\): spec\.mutableTags\[1\]: uses the backreference \\1: patterns are matched by RE2/,
  );
});

test('an update of an older map that would push out a newer one is allowed with a warning naming it', () => {
  const newer = map('z', '2026-01-03T00:00:00Z', [{ from: 'quay.io/', to: 'z.example/quay.io/' }]);
  const updated = map('a', '2026-01-01T00:00:00Z', [{ from: 'quay.io/', to: 'a.example/quay.io/' }]);
  const result = ask(review(updated, 'UPDATE'), [...inputs, { current: newer }]);
  assert.equal(result.allowed, true);
  assert.equal(result.warnings?.length, 1);
  assert.match(
    result.warnings![0]!,
    /^pullmap: ImageMap\/team\/z would be rejected \(Conflict\): spec\.mappings\[0\]: maps "quay\.io\/"/,
  );
});

test('replacing its own older version is not a conflict; other kinds, deletes and unloaded sources are allowed', () => {
  const same = map('a', '2026-01-01T00:00:00Z', [{ from: 'nginx', to: 'b.example/nginx' }]);
  const updated = ask(review(same, 'UPDATE'), inputs);
  assert.ok(updated.allowed);
  const pod = ask(
    { ...review({}), request: { ...review({}).request, kind: { group: '', kind: 'Pod' } } },
    inputs,
  );
  assert.ok(pod.allowed);
  const del = ask(review(accepted, 'DELETE'), inputs);
  assert.ok(del.allowed);
  const early = ask(review(accepted), undefined);
  assert.ok(early.allowed);
  assert.match(early.warnings![0]!, /has not loaded the maps yet/);
});

test('a map review without an object is refused, not a crash', () => {
  // Envelopes that are not AdmissionReviews never get here: the server's parseReview answers 400.
  const noObject = ask(review(undefined), inputs);
  assert.equal(noObject.allowed, false);
  assert.equal(noObject.status?.code, 400);
});
