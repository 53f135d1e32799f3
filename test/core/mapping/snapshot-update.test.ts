// updateSnapshot takes over the scopes of namespaces whose maps did not change; it must give exactly
// what buildSnapshot gives for the same maps, whatever changed in the namespaces it rebuilds.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  analyzeMaps,
  buildSnapshot,
  type CompiledMap,
  DEFAULT_DECISION_SETTINGS,
  decideImage,
} from '../../../src/core/mapping/index.ts';
import { type MapSnapshot, updateSnapshot } from '../../../src/core/mapping/snapshot.ts';

const NAMESPACES = ['ns-a', 'ns-b', 'ns-c', 'ns-d'];

/** One namespace's maps at a version: `count` maps whose targets carry the version. */
function namespaceObjects(ns: string, count: number, version: number, cache: boolean): unknown[] {
  return Array.from({ length: count }, (_, j) => ({
    apiVersion: 'pullmap.dev/v1alpha1',
    kind: 'ImageMap',
    metadata: { name: `map-${j}`, namespace: ns, creationTimestamp: `2026-01-0${j + 1}T00:00:00Z` },
    spec: {
      mappings: [
        { from: `registry-${j}.example/`, to: `mirror-${j}.example/v${version}/` },
        { from: `quay.io/team-${j}/app`, to: `mirror.example/${ns}/v${version}/app` },
      ],
      ...(cache ? { cache: { enabled: true, address: `cache-${ns}.local:7439` } } : {}),
    },
  }));
}

const cluster = [
  {
    apiVersion: 'pullmap.dev/v1alpha1',
    kind: 'ClusterImageMap',
    metadata: { name: 'hub' },
    spec: {
      mappings: [
        { from: 'docker.io/', to: 'hub.mirror/' },
        { from: '*', to: 'all.mirror/' },
      ],
    },
  },
];

/** Compiles cluster maps plus one namespace, as the controller does per namespace part. */
function compile(ns: string, count: number, version: number, cache: boolean): CompiledMap[] {
  const a = analyzeMaps(
    [...cluster, ...namespaceObjects(ns, count, version, cache)].map((current) => ({ current })),
  );
  return a.accepted.filter((m) => m.ref.namespace === ns);
}

const clusterMaps = analyzeMaps(cluster.map((current) => ({ current }))).accepted;

function sameSnapshot(actual: MapSnapshot, expected: MapSnapshot): void {
  assert.deepEqual(actual.maps, expected.maps);
  assert.deepEqual(actual.cluster, expected.cluster);
  assert.deepEqual([...actual.namespaces.keys()].sort(), [...expected.namespaces.keys()].sort());
  for (const [ns, scope] of expected.namespaces) assert.deepEqual(actual.namespaces.get(ns), scope, ns);
  assert.deepEqual(actual.cacheHosts, expected.cacheHosts);
  assert.equal(actual.defaultCacheUsed, expected.defaultCacheUsed);
  const images = [
    'nginx',
    'registry-0.example/x:1',
    'registry-1.example/y',
    'quay.io/team-0/app:2',
    'cache-ns-a.local:7439/docker.io/library/nginx:1',
  ];
  for (const ns of [undefined, ...NAMESPACES])
    for (const image of images) {
      const ctx = { namespace: ns, namespaceLabels: {}, podLabels: {} };
      assert.deepEqual(
        decideImage(actual, DEFAULT_DECISION_SETTINGS, image, ctx, () => undefined),
        decideImage(expected, DEFAULT_DECISION_SETTINGS, image, ctx, () => undefined),
        `${image} in ${ns}`,
      );
    }
}

describe('updateSnapshot', () => {
  test('keeps the scopes of namespaces not named, and equals a fresh build', () => {
    const shape = fc.record({
      count: fc.integer({ min: 0, max: 3 }),
      version: fc.nat(3),
      cache: fc.boolean(),
    });
    const state = fc.dictionary(fc.constantFrom(...NAMESPACES), shape, { maxKeys: 4 });
    fc.assert(
      fc.property(state, fc.array(state, { minLength: 1, maxLength: 4 }), (first, changes) => {
        const byNs = new Map<string, CompiledMap[]>();
        for (const [ns, s] of Object.entries(first)) byNs.set(ns, compile(ns, s.count, s.version, s.cache));
        let snapshot = buildSnapshot([...clusterMaps, ...[...byNs.values()].flat()]);
        for (const change of changes) {
          // Namespaces in `change` get new maps (or lose them, with count 0); the rest keep their objects.
          for (const [ns, s] of Object.entries(change))
            byNs.set(ns, compile(ns, s.count, s.version, s.cache));
          const maps = [...clusterMaps, ...[...byNs.values()].flat()];
          const next = updateSnapshot(snapshot, maps, new Set(Object.keys(change)));
          sameSnapshot(next, buildSnapshot(maps));
          for (const ns of NAMESPACES)
            if (!(ns in change) && snapshot.namespaces.has(ns))
              assert.equal(next.namespaces.get(ns), snapshot.namespaces.get(ns), `${ns} was rebuilt`);
          snapshot = next;
        }
      }),
      { numRuns: 60 },
    );
  });
});
