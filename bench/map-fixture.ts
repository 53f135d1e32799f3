// 1,000 mappings over four ClusterImageMaps and two ImageMaps, plus a 10-container pod whose images
// each take a different path through the decision. Every target keeps its source in the path on a
// mirror host of its own map, so the set is injective and analyzeMaps accepts all of it.

import { embedRegistry } from '../src/core/reference/index.ts';
import { type Random, seeded } from './random.ts';

export const POD_NAMESPACE = 'shop';
const CLUSTER_MAPS = 4;
const CLUSTER_MAPPINGS = 200;
const NAMESPACED_MAPS = 2;
const NAMESPACED_MAPPINGS = 100;
export const TOTAL_MAPPINGS = CLUSTER_MAPS * CLUSTER_MAPPINGS + NAMESPACED_MAPS * NAMESPACED_MAPPINGS;

interface Mapping {
  from: string;
  to: string | string[];
  when?: 'IfExists';
  onProbeError?: 'NextCandidate';
}

interface MapDraft {
  readonly kind: 'ClusterImageMap' | 'ImageMap';
  readonly name: string;
  readonly mirror: string;
  readonly spec: Record<string, unknown>;
  readonly mappings: Mapping[];
  /** Sources already used in this map's scope: two maps of one scope may not send a source apart. */
  readonly scopeSources: Set<string>;
}

/** What a pod container should come out as; checked before timing so the benchmark measures this mix. */
export interface ExpectedContainer {
  readonly list: 'initContainers' | 'containers';
  readonly name: string;
  readonly image: string;
  readonly outcome: 'Mapped' | 'Unchanged';
  /** The map whose rule decides it, when one does. */
  readonly map?: string;
}

/** Where a source goes on a map's mirror: the fully qualified source, with a port made path-safe. */
function onMirror(mirror: string, source: string): string {
  const slash = source.indexOf('/');
  return `${mirror}/${embedRegistry(source.slice(0, slash))}${source.slice(slash)}`;
}

/** Target of `from` keeping the source in the path; a digest source gets a repository target. */
function targetFor(mirror: string, from: string): string {
  const at = from.indexOf('@');
  return onMirror(mirror, at === -1 ? from : from.slice(0, at));
}

function add(draft: MapDraft, from: string, ifExists = false): void {
  if (draft.scopeSources.has(from)) return;
  draft.scopeSources.add(from);
  const primary = targetFor(draft.mirror, from);
  if (!ifExists) {
    draft.mappings.push({ from, to: primary });
    return;
  }
  // The backup mirror is the candidate that has images (see `benchFacts`): both candidates are walked.
  const backup = targetFor(draft.mirror.replace('mirror-', 'backup-'), from);
  draft.mappings.push({ from, to: [primary, backup], when: 'IfExists', onProbeError: 'NextCandidate' });
}

const REGISTRIES = ['docker.io', 'quay.io', 'ghcr.io', 'gcr.io', 'registry.gitlab.com', 'registry.k8s.io'];

/** A random entry of the mix: registry and repository prefixes, repositories, tagged and pinned images. */
function randomSource(r: Random): string {
  const registry = r.pick(REGISTRIES);
  const org = `org-${r.int(40)}`;
  const repo = `${registry}/${org}/app-${r.int(60)}`;
  const roll = r.next();
  if (roll < 0.05) return `reg-${r.int(500)}.example${r.next() < 0.5 ? `:${5000 + r.int(10)}` : ''}/`;
  if (roll < 0.2) return `${registry}/${org}/${r.next() < 0.5 ? `team-${r.int(5)}/` : ''}`;
  if (roll < 0.55) return repo;
  if (roll < 0.85) return `${repo}:${r.int(10)}.${r.int(30)}.${r.int(10)}`;
  return `${repo}@sha256:${r.hex(64)}`;
}

const DIGEST = `sha256:${'7d3f'.repeat(16)}`;

export interface MapFixture {
  readonly objects: readonly Record<string, unknown>[];
  readonly pod: Record<string, unknown>;
  readonly expected: readonly ExpectedContainer[];
}

export function mapFixture(seed = 1000): MapFixture {
  const r = seeded(seed);
  const clusterSources = new Set<string>();
  const namespaceSources = new Set<string>();
  const drafts: MapDraft[] = [];
  for (let i = 0; i < CLUSTER_MAPS; i++) {
    const spec: Record<string, unknown> = {};
    if (i === 0) spec.mutableTags = ['latest'];
    if (i === 2)
      spec.namespaceSelector = {
        matchExpressions: [
          { key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: ['kube-public'] },
        ],
      };
    if (i === 3) spec.cache = { enabled: true };
    drafts.push({
      kind: 'ClusterImageMap',
      name: `cluster-${i}`,
      mirror: `mirror-c${i}.example`,
      spec,
      mappings: [],
      scopeSources: clusterSources,
    });
  }
  for (let i = 0; i < NAMESPACED_MAPS; i++) {
    drafts.push({
      kind: 'ImageMap',
      name: `shop-${i}`,
      mirror: `mirror-shop${i}.example`,
      spec: {},
      mappings: [],
      scopeSources: namespaceSources,
    });
  }
  const [c0, c1, c2, c3, shop0] = drafts as [MapDraft, MapDraft, MapDraft, MapDraft, MapDraft];

  // The entries the pod's images hit, one kind of match each; written before the random fill so
  // the random entries can never take their sources.
  add(c1, 'docker.io/acme-tools/migrate'); // shadowed by shop-0's exact image
  add(shop0, 'docker.io/acme-tools/migrate:3.1.0');
  add(c2, 'reg-pki.example:5000/');
  add(c1, 'docker.io/library/nginx');
  add(c0, 'quay.io/acme/');
  add(c1, 'quay.io/acme/payments/'); // longer prefix beats c0's
  add(c0, `ghcr.io/acme/worker@${DIGEST}`);
  add(c1, 'docker.io/elastic/search', true);
  add(c3, 'registry.k8s.io/kube-state-metrics/kube-state-metrics');
  add(c0, 'docker.io/bitnami/kubectl');
  add(c2, 'docker.io/prom/');

  for (const draft of drafts) {
    const size = draft.kind === 'ClusterImageMap' ? CLUSTER_MAPPINGS : NAMESPACED_MAPPINGS;
    while (draft.mappings.length < size) add(draft, randomSource(r), r.next() < 0.1);
  }

  const objects = drafts.map((d) => ({
    apiVersion: 'pullmap.dev/v1alpha1',
    kind: d.kind,
    metadata: {
      name: d.name,
      ...(d.kind === 'ImageMap' ? { namespace: POD_NAMESPACE } : {}),
      creationTimestamp: '2024-11-21T00:00:00Z',
      generation: 1,
    },
    spec: { ...d.spec, mappings: d.mappings },
  }));

  const expected: ExpectedContainer[] = [
    {
      list: 'initContainers',
      name: 'migrate',
      image: 'docker.io/acme-tools/migrate:3.1.0',
      outcome: 'Mapped',
      map: `ImageMap/${POD_NAMESPACE}/shop-0`,
    },
    {
      list: 'initContainers',
      name: 'certs',
      image: 'reg-pki.example:5000/pki/certgen:v1.4.0',
      outcome: 'Mapped',
      map: 'ClusterImageMap/cluster-2',
    },
    {
      list: 'containers',
      name: 'web',
      image: 'nginx:1.27.3',
      outcome: 'Mapped',
      map: 'ClusterImageMap/cluster-1',
    },
    {
      list: 'containers',
      name: 'api',
      image: 'quay.io/acme/payments/api:2.8.1',
      outcome: 'Mapped',
      map: 'ClusterImageMap/cluster-1',
    },
    {
      list: 'containers',
      name: 'worker',
      image: `ghcr.io/acme/worker@${DIGEST}`,
      outcome: 'Mapped',
      map: 'ClusterImageMap/cluster-0',
    },
    {
      list: 'containers',
      name: 'search',
      image: 'elastic/search:8.15.0',
      outcome: 'Mapped',
      map: 'ClusterImageMap/cluster-1',
    },
    {
      list: 'containers',
      name: 'ksm',
      image: 'registry.k8s.io/kube-state-metrics/kube-state-metrics:v2.13.0',
      outcome: 'Mapped',
      map: 'ClusterImageMap/cluster-3',
    },
    // Mutable tag: matched, then kept on its registry.
    {
      list: 'containers',
      name: 'tools',
      image: 'bitnami/kubectl:latest',
      outcome: 'Unchanged',
      map: 'ClusterImageMap/cluster-0',
    },
    {
      list: 'containers',
      name: 'envoy',
      image: 'registry.internal.example/edge/envoy:1.31.0',
      outcome: 'Unchanged',
    },
    // Already one of cluster-2's targets: re-admission must leave it alone.
    {
      list: 'containers',
      name: 'exporter',
      image: 'mirror-c2.example/docker.io/prom/exporter:1.8.2',
      outcome: 'Unchanged',
    },
  ];
  const container = (c: ExpectedContainer) => ({ name: c.name, image: c.image });
  const pod = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'storefront-7c9d5', namespace: POD_NAMESPACE, labels: { app: 'storefront' } },
    spec: {
      initContainers: expected.filter((c) => c.list === 'initContainers').map(container),
      containers: expected.filter((c) => c.list === 'containers').map(container),
    },
  };
  return { objects, pod, expected };
}
