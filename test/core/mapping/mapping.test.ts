import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ExistenceAnswer, ExistenceFacts, ProbeOutcome } from '../../../src/core/facts.ts';
import {
  analyzeMaps,
  buildSnapshot,
  configFileNames,
  DEFAULT_DECISION_SETTINGS,
  decideImage,
  type MapSnapshot,
  parseCacheUpstreams,
} from '../../../src/core/mapping/index.ts';
import { crc32 } from '../../../src/core/mapping/zarf.ts';

type Spec = Record<string, unknown>;
const cluster = (name: string, spec: Spec, extra: Spec = {}) => ({
  apiVersion: 'pullmap.dev/v1alpha1',
  kind: 'ClusterImageMap',
  metadata: { name, ...extra },
  spec,
});
const namespaced = (namespace: string, name: string, spec: Spec, extra: Spec = {}) => ({
  apiVersion: 'pullmap.dev/v1alpha1',
  kind: 'ImageMap',
  metadata: { name, namespace, ...extra },
  spec,
});

function snapshotOf(...objects: unknown[]): MapSnapshot {
  const analysis = analyzeMaps(objects.map((current) => ({ current })));
  for (const v of analysis.verdicts)
    assert.equal(
      v.verdict,
      'Accepted',
      `${v.name}: ${v.findings.map((f) => `${f.path}: ${f.message}`).join('; ')}`,
    );
  return buildSnapshot(analysis.accepted);
}

const noFacts: ExistenceFacts = () => undefined;
const answer = (outcome: ProbeOutcome): ExistenceAnswer => ({ outcome, cached: false, ageMs: 0 });
const factsFrom =
  (known: Record<string, ProbeOutcome>): ExistenceFacts =>
  (c) =>
    known[c] ? answer(known[c]) : undefined;
const ctx = (namespace = 'default', podLabels: Record<string, string> = {}, pullPolicy?: string) => ({
  namespace,
  namespaceLabels: { 'kubernetes.io/metadata.name': namespace },
  podLabels,
  pullPolicy,
});
const decide = (s: MapSnapshot, image: string, c = ctx(), facts = noFacts) =>
  decideImage(s, DEFAULT_DECISION_SETTINGS, image, c, facts);

describe('matching and precedence', () => {
  const s = snapshotOf(
    cluster('edge', {
      mappings: [
        { from: 'docker.io/', to: 'project-a.azurecr.io/docker-mirror/' },
        { from: 'quay.io/acme/', to: 'mirror.local/acme/' },
        { from: 'quay.io/acme/foo', to: 'mirror.local/special/foo' },
        { from: 'gcr.io/google-samples/kubernetes-bootcamp:v1', to: 'registry.local/bootcamp:v1' },
        { from: 'nginx:1.25', to: 'registry.local/nginx-old' },
      ],
    }),
  );
  const cases: [string, string][] = [
    ['docker.io/nats:2.10.26-alpine', 'project-a.azurecr.io/docker-mirror/library/nats:2.10.26-alpine'],
    ['nginx:1.27', 'project-a.azurecr.io/docker-mirror/library/nginx:1.27'],
    ['nginx:1.25', 'registry.local/nginx-old:1.25'],
    ['bitnami/nats', 'project-a.azurecr.io/docker-mirror/bitnami/nats'],
    ['quay.io/acme/bar:1', 'mirror.local/acme/bar:1'],
    ['quay.io/acme/foo:2', 'mirror.local/special/foo:2'],
    ['quay.io/acme/foo-bar:2', 'mirror.local/acme/foo-bar:2'],
    ['quay.io/acme/foo/sub:2', 'mirror.local/acme/foo/sub:2'],
    ['quay.io/acmex/foo:2', 'quay.io/acmex/foo:2'],
    ['gcr.io/google-samples/kubernetes-bootcamp:v1', 'registry.local/bootcamp:v1'],
    ['gcr.io/google-samples/kubernetes-bootcamp:v2', 'gcr.io/google-samples/kubernetes-bootcamp:v2'],
    [
      `nginx:1.27@sha256:${'a'.repeat(64)}`,
      `project-a.azurecr.io/docker-mirror/library/nginx:1.27@sha256:${'a'.repeat(64)}`,
    ],
  ];
  for (const [input, expected] of cases) {
    test(`${input} → ${expected}`, () => {
      const d = decide(s, input);
      assert.equal(d.image, expected);
      assert.equal(d.outcome, expected === input ? 'Unchanged' : 'Mapped');
    });
  }
  test('an unmatched image says so', () => {
    const d = decide(s, 'ghcr.io/x/y:1');
    assert.equal(d.outcome, 'Unchanged');
    assert.equal(d.reasons[0]?.code, 'NoMatch');
  });
  test('an invalid image is reported, not thrown', () => {
    const d = decide(s, 'Bad Image');
    assert.equal(d.outcome, 'Invalid');
    assert.equal(d.image, 'Bad Image');
    assert.match(d.reasons[0]!.message, /not a valid image reference/);
  });
  test('the decision names the map and entry', () => {
    const d = decide(s, 'quay.io/acme/foo:2');
    assert.equal(d.rule?.mapName, 'ClusterImageMap/edge');
    assert.equal(d.rule?.entry, 2);
  });
});

describe('scope and selectors', () => {
  const s = snapshotOf(
    cluster('all', { mappings: [{ from: 'docker.io/', to: 'cluster.mirror/hub/' }] }),
    cluster('team-b', {
      namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'team-b' } },
      podSelector: { matchExpressions: [{ key: 'tier', operator: 'In', values: ['front'] }] },
      mappings: [{ from: 'ghcr.io/', to: 'b.mirror/ghcr/' }],
    }),
    namespaced('team-a', 'own', { mappings: [{ from: 'docker.io/', to: 'team-a.mirror/hub/' }] }),
  );
  test('a namespaced map beats a cluster map for the same source', () => {
    assert.equal(decide(s, 'nginx:1', ctx('team-a')).image, 'team-a.mirror/hub/library/nginx:1');
    assert.equal(decide(s, 'nginx:1', ctx('team-c')).image, 'cluster.mirror/hub/library/nginx:1');
  });
  test('namespace and pod selectors', () => {
    assert.equal(decide(s, 'ghcr.io/x/y:1', ctx('team-b', { tier: 'front' })).image, 'b.mirror/ghcr/x/y:1');
    assert.equal(decide(s, 'ghcr.io/x/y:1', ctx('team-b', { tier: 'back' })).image, 'ghcr.io/x/y:1');
    assert.equal(decide(s, 'ghcr.io/x/y:1', ctx('team-a', { tier: 'front' })).image, 'ghcr.io/x/y:1');
  });
  test('a map that matches but does not select the namespace or the pod says so, not NoMatch', () => {
    const ns = decide(s, 'ghcr.io/x/y:1', ctx('team-a', { tier: 'front' }));
    assert.equal(ns.outcome, 'Unchanged');
    assert.equal(ns.reasons.length, 1);
    assert.equal(ns.reasons[0]?.code, 'NamespaceNotSelected');
    assert.match(
      ns.reasons[0]!.message,
      /^ClusterImageMap\/team-b spec\.mappings\[0\] matches the image, but its namespaceSelector does not select namespace team-a \(labels: kubernetes\.io\/metadata\.name=team-a\)$/,
    );
    const pod = decide(s, 'ghcr.io/x/y:1', ctx('team-b', { tier: 'back' }));
    assert.equal(pod.reasons[0]?.code, 'PodNotSelected');
    assert.equal(decide(s, 'quay.io/x/y:1', ctx('team-a')).reasons[0]?.code, 'NoMatch');
  });
});

describe('mutable tags and pull policy', () => {
  const s = snapshotOf(
    cluster('m', {
      mappings: [{ from: 'docker.io/', to: 'mirror/hub/' }],
      mutableTags: ['latest', '15(\\.\\d+)?'],
      pullPolicyAlways: 'KeepOriginal',
    }),
  );
  test('latest (written or implied) keeps the original registry', () => {
    for (const image of ['nginx', 'nginx:latest', 'postgres:15', 'postgres:15.4']) {
      const d = decide(s, image);
      assert.equal(d.outcome, 'Unchanged', image);
      assert.ok(d.reasons.some((r) => r.code === 'MutableTagKept'));
    }
  });
  test('patterns match whole tags; digests pin images', () => {
    assert.equal(decide(s, 'postgres:150').outcome, 'Mapped');
    assert.equal(decide(s, 'postgres:latest-1').outcome, 'Mapped');
    assert.equal(decide(s, `nginx:latest@sha256:${'b'.repeat(64)}`).outcome, 'Mapped');
  });
  test('imagePullPolicy: Always is kept when the map says so', () => {
    const d = decide(s, 'nginx:1.27', ctx('default', {}, 'Always'));
    assert.equal(d.outcome, 'Unchanged');
    assert.ok(d.reasons.some((r) => r.code === 'PullPolicyAlwaysKept'));
  });
  test('mutableTagPolicy: Map maps them anyway', () => {
    const m = snapshotOf(
      cluster('m', {
        mappings: [{ from: 'docker.io/', to: 'mirror.local/hub/' }],
        mutableTags: ['latest'],
        mutableTagPolicy: 'Map',
      }),
    );
    assert.equal(decide(m, 'nginx').image, 'mirror.local/hub/library/nginx');
  });
});

describe('when: IfExists', () => {
  const s = snapshotOf(
    cluster('zarf', {
      mappings: [{ from: 'quay.io/', to: ['zarf.local:31999/', 'backup.local/quay/'], when: 'IfExists' }],
      mutableTags: ['latest'],
    }),
  );
  test('the decision asks for every candidate it needs', () => {
    const d = decide(s, 'quay.io/knative/queue:1.0');
    assert.equal(d.outcome, 'Pending');
    assert.deepEqual(d.pendingProbes, [
      { candidate: 'zarf.local:31999/knative/queue:1.0' },
      { candidate: 'backup.local/quay/knative/queue:1.0' },
    ]);
  });
  test('the first candidate that has the image wins', () => {
    const d = decide(
      s,
      'quay.io/knative/queue:1.0',
      ctx(),
      factsFrom({
        'zarf.local:31999/knative/queue:1.0': 'NotFound',
        'backup.local/quay/knative/queue:1.0': 'Available',
      }),
    );
    assert.equal(d.image, 'backup.local/quay/knative/queue:1.0');
    assert.deepEqual(
      d.reasons.map((r) => r.code),
      ['Matched', 'CandidateMissing', 'CandidateAvailable'],
    );
  });
  test('an earlier available candidate needs no later probe', () => {
    const d = decide(
      s,
      'quay.io/knative/queue:1.0',
      ctx(),
      factsFrom({ 'zarf.local:31999/knative/queue:1.0': 'Available' }),
    );
    assert.equal(d.image, 'zarf.local:31999/knative/queue:1.0');
    assert.deepEqual(d.pendingProbes, []);
  });
  test('no candidate has it: the original stays', () => {
    const d = decide(
      s,
      'quay.io/app/web:2',
      ctx(),
      factsFrom({ 'zarf.local:31999/app/web:2': 'NotFound', 'backup.local/quay/app/web:2': 'Unauthorized' }),
    );
    assert.equal(d.outcome, 'Unchanged');
    assert.equal(d.reasons.at(-1)?.code, 'NoCandidateHasImage');
  });
  test('a failed probe keeps the original by default', () => {
    const d = decide(
      s,
      'quay.io/app/web:2',
      ctx(),
      factsFrom({ 'zarf.local:31999/app/web:2': 'Timeout', 'backup.local/quay/app/web:2': 'Available' }),
    );
    assert.equal(d.outcome, 'Unchanged');
    assert.ok(d.reasons.some((r) => r.code === 'ProbeFailureKeptOriginal'));
  });
  test('onProbeError: NextCandidate moves on', () => {
    const n = snapshotOf(
      cluster('z', {
        mappings: [
          { from: 'quay.io/', to: ['a.local/', 'b.local/'], when: 'IfExists', onProbeError: 'NextCandidate' },
        ],
      }),
    );
    const d = decide(
      n,
      'quay.io/x/y:1',
      ctx(),
      factsFrom({ 'a.local/x/y:1': 'Unreachable', 'b.local/x/y:1': 'Available' }),
    );
    assert.equal(d.image, 'b.local/x/y:1');
  });
  test('latest is never probed', () => {
    const d = decide(s, 'quay.io/app/web:latest');
    assert.equal(d.outcome, 'Unchanged');
    assert.deepEqual(d.pendingProbes, []);
  });
});

describe('zarf naming', () => {
  test('CRC-32 matches the IEEE check value', () => {
    assert.equal(crc32('123456789'), 0xcbf43926);
  });
  const s = snapshotOf(
    cluster('z', { mappings: [{ from: '*', to: 'gitlab.com/project/', naming: 'zarf' }] }),
  );
  // Vectors published with Zarf's own transform tests.
  const vectors: [string, string][] = [
    ['nginx', 'gitlab.com/project/library/nginx:latest-zarf-3793515731'],
    ['nginx:1.23.3', 'gitlab.com/project/library/nginx:1.23.3-zarf-3793515731'],
    [
      'defenseunicorns/zarf-agent:v0.22.1',
      'gitlab.com/project/defenseunicorns/zarf-agent:v0.22.1-zarf-4283503412',
    ],
    ['ghcr.io/stefanprodan/podinfo:6.3.3', 'gitlab.com/project/stefanprodan/podinfo:6.3.3-zarf-2985051089'],
    [
      'registry1.dso.mil/ironbank/opensource/defenseunicorns/zarf/zarf-agent:v0.25.0',
      'gitlab.com/project/ironbank/opensource/defenseunicorns/zarf/zarf-agent:v0.25.0-zarf-2003217571',
    ],
    [
      'defenseunicorns/zarf-agent@sha256:84605f731c6a18194794c51e70021c671ab064654b751aa57e905bce55be13de',
      'gitlab.com/project/defenseunicorns/zarf-agent@sha256:84605f731c6a18194794c51e70021c671ab064654b751aa57e905bce55be13de',
    ],
  ];
  for (const [input, expected] of vectors)
    test(input.slice(0, 50), () => assert.equal(decide(s, input).image, expected));
  test('a tag that would exceed 128 characters leaves the image alone', () => {
    const d = decide(s, `nginx:${'t'.repeat(120)}`);
    assert.equal(d.outcome, 'Unchanged');
    assert.ok(d.reasons.some((r) => r.code === 'TargetInvalid'));
  });
  test('an image already under the target is not mapped again', () => {
    assert.equal(decide(s, 'gitlab.com/project/library/nginx:latest-zarf-3793515731').outcome, 'Unchanged');
  });
});

describe('stage 2: the cache', () => {
  const s = snapshotOf(
    cluster('edge', {
      mappings: [{ from: 'docker.io/', to: 'project-a.azurecr.io/docker-mirror/' }],
      cache: { enabled: true },
    }),
    cluster('local', {
      mappings: [{ from: 'localhost:5000/', to: 'localhost:5000/' }],
      cache: { enabled: true, address: '127.0.0.1:7439' },
    }),
  );
  test('story 001: redirect, then route through the cache', () => {
    assert.equal(
      decide(s, 'docker.io/nats:2.10.26-alpine').image,
      'localhost:7439/project-a.azurecr.io/docker-mirror/library/nats:2.10.26-alpine',
    );
  });
  test('identity mapping only routes through the cache; ports are embedded with "_"', () => {
    assert.equal(decide(s, 'localhost:5000/app:1').image, '127.0.0.1:7439/localhost_5000/app:1');
  });
  test('a routed image is never routed again', () => {
    const d = decide(s, 'localhost:7439/project-a.azurecr.io/docker-mirror/library/nats:2.10.26-alpine');
    assert.equal(d.outcome, 'Unchanged');
    assert.equal(d.reasons[0]?.code, 'AlreadyMapped');
  });
});

describe('"*" keeps the source registry in the target path', () => {
  const s = snapshotOf(cluster('all', { mappings: [{ from: '*', to: 'mirror.local/' }] }));
  test('images from every registry land apart', () => {
    assert.equal(decide(s, 'nginx:1').image, 'mirror.local/docker.io/library/nginx:1');
    assert.equal(decide(s, 'quay.io/a/b:1').image, 'mirror.local/quay.io/a/b:1');
    assert.equal(decide(s, 'mirror.local/quay.io/a/b:1').outcome, 'Unchanged');
  });
});

test('parseCacheUpstreams: the hosts of a --cache-upstreams value, or the first bad one named', () => {
  assert.deepEqual(parseCacheUpstreams(' docker.io, quay.io ,127.0.0.1:5000,'), {
    hosts: ['docker.io', 'quay.io', '127.0.0.1:5000'],
  });
  const error = (text: string) => {
    const r = parseCacheUpstreams(text);
    return 'error' in r ? r.error : '';
  };
  assert.match(error(' , '), /names no host/);
  assert.match(error('docker.io,Quay.io'), /"Quay\.io" must be lowercase/);
  assert.match(error('https://quay.io'), /"https:\/\/quay\.io" is not a registry host\[:port\]/);
  assert.match(error('quay.io/acme'), /"quay\.io\/acme" is not a registry host/);
});

test('configFileNames: a directory contributes its .yaml, .yml and .json files, not hidden ones, sorted', () => {
  assert.deepEqual(
    configFileNames(['b.yml', '.hidden.yaml', 'a.yaml', 'notes.txt', 'c.json', '..data', 'd.yaml.bak']),
    ['a.yaml', 'b.yml', 'c.json'],
  );
});
