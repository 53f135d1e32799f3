// fillTarget: the target a copy goes to is the candidate the decision probes and maps to, with the
// mapping's fill settings; images the decision would never map are not filled.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ExistenceFacts } from '../../../src/core/facts.ts';
import {
  analyzeMaps,
  buildSnapshot,
  DEFAULT_DECISION_SETTINGS,
  decideImage,
  fillTarget,
  type MapSnapshot,
} from '../../../src/core/mapping/index.ts';
import { formatReference } from '../../../src/core/reference/index.ts';

function snapshotOf(...specs: Record<string, unknown>[]): MapSnapshot {
  const analysis = analyzeMaps(
    specs.map((spec, i) => ({
      current: {
        apiVersion: 'pullmap.dev/v1alpha1',
        kind: 'ClusterImageMap',
        metadata: { name: `m${i}` },
        spec,
      },
    })),
  );
  for (const v of analysis.verdicts) assert.equal(v.verdict, 'Accepted', JSON.stringify(v.findings));
  return buildSnapshot(analysis.accepted);
}
const ctx = { namespace: 'default', namespaceLabels: {}, podLabels: {} };
const available: ExistenceFacts = () => ({ outcome: 'Available', cached: false, ageMs: 0 });

describe('fillTarget', () => {
  const snapshot = snapshotOf({
    mappings: [
      {
        from: 'docker.io/',
        to: ['zarf.local:31999/', 'backup.local/'],
        naming: 'zarf',
        when: 'IfExists',
        fill: { enabled: true, platforms: ['linux/arm64'], secret: 'zarf-push' },
      },
      { from: 'quay.io/', to: 'mirror.local/quay/' },
    ],
    mutableTags: ['latest'],
  });

  for (const image of ['nginx:1.27', 'nginx@sha256:' + 'a'.repeat(64), 'quay.io/acme/app:2'])
    test(`${image}: the first candidate, the one decideImage maps to when it has the image`, () => {
      const fill = fillTarget(snapshot, DEFAULT_DECISION_SETTINGS, image, ctx);
      assert.ok(fill.ok, JSON.stringify(fill));
      assert.equal(
        formatReference(fill.plan.target),
        decideImage(snapshot, DEFAULT_DECISION_SETTINGS, image, ctx, available).image,
      );
    });

  test('carries the fill settings and the source', () => {
    const fill = fillTarget(snapshot, DEFAULT_DECISION_SETTINGS, 'nginx:1.27', ctx);
    assert.ok(fill.ok);
    assert.deepEqual(fill.plan.fill, { enabled: true, platforms: ['linux/arm64'], secret: 'zarf-push' });
    assert.equal(formatReference(fill.plan.source), 'docker.io/library/nginx:1.27');
    assert.match(formatReference(fill.plan.target), /^zarf\.local:31999\/library\/nginx:1\.27-zarf-\d+$/);
    const quay = fillTarget(snapshot, DEFAULT_DECISION_SETTINGS, 'quay.io/acme/app:2', ctx);
    assert.equal(quay.ok && quay.plan.fill, undefined);
  });

  test('nothing to fill for images the decision keeps or already mapped', () => {
    const reason = (image: string) => {
      const fill = fillTarget(snapshot, DEFAULT_DECISION_SETTINGS, image, ctx);
      return fill.ok ? 'ok' : fill.reason.code;
    };
    assert.equal(reason('nginx:latest'), 'MutableTagKept');
    assert.equal(reason('zarf.local:31999/library/nginx:1.27-zarf-1'), 'AlreadyMapped');
    assert.equal(reason('ghcr.io/x/y:1'), 'NoMatch');
    assert.equal(reason('Not/Valid'), 'InvalidReference');
  });

  test('pullPolicyAlways: KeepOriginal keeps what Kubernetes pulls Always (written, or defaulted for :latest and no tag)', () => {
    const kept = snapshotOf({
      mappings: [{ from: 'docker.io/', to: 'mirror.local/hub/', fill: { enabled: true } }],
      pullPolicyAlways: 'KeepOriginal',
    });
    const code = (image: string, pullPolicy?: string) => {
      const fill = fillTarget(kept, DEFAULT_DECISION_SETTINGS, image, { ...ctx, pullPolicy });
      return fill.ok ? 'ok' : fill.reason.code;
    };
    assert.equal(code('nginx'), 'PullPolicyAlwaysKept');
    assert.equal(code('nginx:latest'), 'PullPolicyAlwaysKept');
    assert.equal(code('nginx:1.27', 'Always'), 'PullPolicyAlwaysKept');
    assert.equal(code('nginx:1.27'), 'ok');
    assert.equal(code(`nginx@sha256:${'a'.repeat(64)}`), 'ok');
    assert.equal(code('nginx', 'IfNotPresent'), 'ok');
  });

  test('an image on the cache, or a mapping whose target is the image itself, is not filled', () => {
    const cached = snapshotOf({
      cache: { enabled: true, address: 'cache.local:7439' },
      mappings: [{ from: 'quay.io/', to: 'quay.io/' }],
    });
    const reason = (image: string) => {
      const fill = fillTarget(cached, DEFAULT_DECISION_SETTINGS, image, ctx);
      return fill.ok ? undefined : fill.reason;
    };
    assert.deepEqual(reason('cache.local:7439/quay.io/acme/app:1'), {
      code: 'AlreadyMapped',
      message: 'cache.local:7439 is the pullmap cache',
    });
    // Routing through the cache without changing the registry: nothing to copy anywhere.
    assert.deepEqual(reason('quay.io/acme/app:1'), {
      code: 'AlreadyMapped',
      message: 'the target is the image itself',
    });
  });
});
