// Map objects the compiler refuses: each finding names the field (spec.mappings[i].from, .to, .to[j],
// metadata.namespace, spec.namespaceSelector) and says the fix. One case per rule of rule.ts's
// parsePattern, checkTarget and compileMap, so a rule that stops firing, or fires on the wrong field,
// fails here.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { analyzeMaps } from '../../../src/core/mapping/index.ts';

type Obj = Record<string, unknown>;

function findings(object: Obj): { verdict: string; found: [string, string][] } {
  const v = analyzeMaps([{ current: object }]).verdicts[0]!;
  return { verdict: v.verdict, found: v.findings.map((f) => [f.path, f.message]) };
}

const clusterMap = (mappings: Obj[], spec: Obj = {}, metadata: Obj = {}): Obj => ({
  apiVersion: 'pullmap.dev/v1alpha1',
  kind: 'ClusterImageMap',
  metadata: { name: 'm', ...metadata },
  spec: { ...spec, mappings },
});

const DIGEST = `sha256:${'a'.repeat(64)}`;

describe('compileMap refuses a mapping, naming its field and the fix', () => {
  const cases: Array<[string, Obj, string, RegExp]> = [
    [
      'a prefix with a tag in it',
      { from: 'docker.io/library/nginx:1.27/', to: 'm.local/' },
      'spec.mappings[0].from',
      /^"docker\.io\/library\/nginx:1\.27\/" is not a valid repository prefix: .*contains ":"/,
    ],
    [
      'an invalid name without "/" (hinting at the prefix form)',
      { from: 'Nginx', to: 'm.local/nginx' },
      'spec.mappings[0].from',
      /^"Nginx" is not a valid image reference: repository name must be lowercase/,
    ],
    [
      '"*" as the target of a prefix',
      { from: 'docker.io/', to: '*' },
      'spec.mappings[0].to',
      /^"\*" as a target only means "unchanged" for from: "\*"$/,
    ],
    [
      'naming: zarf with a repository target',
      { from: 'docker.io/library/nginx', to: 'zarf.local/nginx', naming: 'zarf' },
      'spec.mappings[0].to',
      /^naming: zarf needs a registry or prefix ending in "\/" .*not "zarf\.local\/nginx"$/,
    ],
    [
      'a prefix mapped to a repository',
      { from: 'docker.io/', to: 'm.local/nginx' },
      'spec.mappings[0].to',
      /^from "docker\.io\/" is a prefix, so to must be a prefix ending in "\/" too \(like "mirror\.example\/hub\/"\)$/,
    ],
    [
      '"*" mapped to a repository',
      { from: '*', to: 'm.local/nginx' },
      'spec.mappings[0].to',
      /^from "\*" is a prefix, so to must be a prefix .*\(like "mirror\.example\/all\/"\)$/,
    ],
    [
      'a target naming a digest',
      { from: 'docker.io/library/nginx:1.27', to: `m.local/nginx@${DIGEST}` },
      'spec.mappings[0].to',
      /^to must not name a digest: .*remove "@\.\.\."$/,
    ],
    [
      'a repository (every tag) mapped to one tag',
      { from: 'docker.io/library/nginx', to: 'm.local/nginx:1' },
      'spec.mappings[0].to',
      /matches every tag, so to must not name a tag; remove ":1" or add a tag to from$/,
    ],
    [
      'two targets without when: IfExists',
      { from: 'docker.io/', to: ['a.local/', 'b.local/'] },
      'spec.mappings[0].to',
      /^lists 2 candidates, but only when: IfExists chooses among them; add "when: IfExists"/,
    ],
    [
      'the second of two targets (its own index in the path)',
      { from: 'docker.io/', to: ['a.local/', 'b.local/x'], when: 'IfExists' },
      'spec.mappings[0].to[1]',
      /is a prefix, so to must be a prefix/,
    ],
    [
      'images mapped to themselves without the cache',
      { from: 'docker.io/', to: 'docker.io/' },
      'spec.mappings[0].to',
      /^maps images to themselves, which only makes sense with cache\.enabled: true/,
    ],
  ];
  for (const [name, mapping, path, message] of cases) {
    test(name, () => {
      const { verdict, found } = findings(clusterMap([mapping]));
      assert.equal(verdict, 'Invalid');
      assert.equal(found.length, 1, JSON.stringify(found));
      assert.equal(found[0]![0], path);
      assert.match(found[0]![1], message);
    });
  }

  test('the same source twice (Docker Hub spelled two ways) names the later entry and the earlier one', () => {
    const { found } = findings(
      clusterMap([
        { from: 'docker.io/', to: 'm.local/' },
        { from: 'index.docker.io/', to: 'n.local/' },
      ]),
    );
    assert.deepEqual(found, [
      [
        'spec.mappings[1].from',
        '"index.docker.io/" is the same source as spec.mappings[0].from; merge the two entries',
      ],
    ]);
  });

  test('identity is accepted with the cache on (routing through it without changing the registry)', () => {
    const { verdict } = findings(
      clusterMap([{ from: 'docker.io/', to: 'docker.io/' }], { cache: { enabled: true } }),
    );
    assert.equal(verdict, 'Accepted');
  });

  test('a ClusterImageMap with a namespace, an ImageMap with a namespaceSelector', () => {
    assert.deepEqual(
      findings(clusterMap([{ from: 'docker.io/', to: 'm.local/' }], {}, { namespace: 'team' })).found.map(
        ([p]) => p,
      ),
      ['metadata.namespace'],
    );
    const imageMap = {
      apiVersion: 'pullmap.dev/v1alpha1',
      kind: 'ImageMap',
      metadata: { name: 'm', namespace: 'team' },
      spec: { namespaceSelector: {}, mappings: [{ from: 'docker.io/', to: 'm.local/' }] },
    };
    const { found } = findings(imageMap);
    assert.equal(found.length, 1);
    assert.equal(found[0]![0], 'spec.namespaceSelector');
    assert.match(found[0]![1], /only ClusterImageMap selects namespaces.*remove the field/);
  });

  test('every problem of a map is reported at once, each on its own field', () => {
    const { found } = findings(
      clusterMap([
        { from: 'docker.io/', to: '*' },
        { from: 'quay.io/', to: 'm.local/app' },
      ]),
    );
    assert.deepEqual(
      found.map(([p]) => p),
      ['spec.mappings[0].to', 'spec.mappings[1].to'],
    );
  });
});
