// The pure parts of the stores: the eviction policy both follow, the bucket's collection inventory
// (last use from use markers), the download lease's decisions, and the per-tag listing.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  evictionOrder,
  isOrphanTag,
  LOW_WATER,
  type StoredObject,
  toEvict,
} from '../../src/cache/store/eviction.ts';
import { describeStore } from '../../src/cache/store/listing.ts';
import { inventory, staleLeases } from '../../src/cache/store/s3/collection.ts';
import { BucketKeys } from '../../src/cache/store/s3/keys.ts';
import { leaseBody, nextStep, parseLease, renewalInterval } from '../../src/cache/store/s3/lease.ts';

const d = (c: string): string => `sha256:${c.repeat(64)}`;
const obj = (kind: 'blob' | 'manifest', c: string, size: number, lastUse: number): StoredObject => ({
  kind,
  digest: d(c),
  size,
  lastUse,
});

describe('eviction policy', () => {
  const objects = [
    obj('manifest', 'a', 10, 100),
    obj('blob', 'b', 1000, 50), // referenced, oldest
    obj('blob', 'c', 500, 900), // unreferenced, newest
    obj('blob', 'e', 300, 400), // referenced
    obj('manifest', 'f', 10, 30), // pulled by digest, oldest of all
  ];
  const referenced = new Set([d('b'), d('e')]);

  it('orders unreferenced blobs first, then everything by last use', () => {
    assert.deepEqual(
      evictionOrder(objects, referenced).map((o) => o.digest[7]),
      ['c', 'f', 'b', 'a', 'e'],
    );
  });

  it('evicts the shortest prefix that gets under the low-water mark', () => {
    const used = 1820;
    // Cap 1700: the goal is 1530; c (500) brings 1820 to 1320.
    assert.deepEqual(
      toEvict(objects, referenced, used, 1700).map((o) => o.digest[7]),
      ['c'],
    );
    // Cap 1000: the goal is 900: c, f, b (1820 - 1510 = 310).
    assert.deepEqual(
      toEvict(objects, referenced, used, 1000).map((o) => o.digest[7]),
      ['c', 'f', 'b'],
    );
    assert.equal(LOW_WATER, 0.9);
  });

  it('evicts nothing under the cap or without one', () => {
    assert.deepEqual(toEvict(objects, referenced, 1820, 1820), []);
    assert.deepEqual(toEvict(objects, referenced, 1820, undefined), []);
  });

  it('sweeps tag records that are unreadable or name a manifest not stored', () => {
    const stored = new Set([d('a')]);
    const record = (digest: string) => JSON.stringify({ name: 'h/r', tag: 't', digest, checkedAt: 1 });
    assert.equal(isOrphanTag(record(d('a')), stored), false);
    assert.equal(isOrphanTag(record(d('f')), stored), true);
    assert.equal(isOrphanTag('{"digest":', stored), true);
    assert.equal(isOrphanTag(JSON.stringify({ digest: d('a') }), stored), true, 'not a whole record');
  });
});

describe('bucket collection inventory', () => {
  const keys = new BucketKeys('cache/');
  const hex = (c: string) => c.repeat(64);

  it('takes the later of LastModified and the use marker as last use, and finds stray markers', () => {
    const found = inventory(
      keys,
      [
        { key: `cache/blobs/sha256/${hex('b')}`, size: 100, modified: 10 },
        { key: `cache/blobs/sha256/${hex('c')}`, size: 200, modified: 50 },
        { key: 'cache/blobs/sha256/not-a-digest', size: 7, modified: 1 },
      ],
      [{ key: `cache/manifests/sha256/${hex('a')}`, size: 5, modified: 20 }],
      [
        { key: `cache/used/blobs/sha256/${hex('b')}`, size: 0, modified: 90 },
        { key: `cache/used/blobs/sha256/${hex('c')}`, size: 0, modified: 40 },
        { key: `cache/used/blobs/sha256/${hex('9')}`, size: 0, modified: 5 },
      ],
    );
    assert.deepEqual(
      found.objects.map((o) => [o.kind, o.digest[7], o.lastUse]),
      [
        ['blob', 'b', 90],
        ['blob', 'c', 50],
        ['manifest', 'a', 20],
      ],
    );
    assert.equal(found.usedBytes, 305);
    assert.deepEqual(found.strayMarkers, [`cache/used/blobs/sha256/${hex('9')}`]);
    // The policy on top: b was used recently (its marker), so c goes first among referenced blobs.
    assert.deepEqual(
      evictionOrder(found.objects, new Set([d('b'), d('c')])).map((o) => o.digest[7]),
      ['a', 'c', 'b'],
    );
  });

  it('sweeps leases older than the given age', () => {
    const leases = [
      { key: 'cache/downloading/sha256/old', size: 1, modified: 1_000 },
      { key: 'cache/downloading/sha256/new', size: 1, modified: 9_500 },
    ];
    assert.deepEqual(staleLeases(leases, 10_000, 1_000), ['cache/downloading/sha256/old']);
  });

  it('maps digests to keys and back', () => {
    assert.equal(keys.blob(d('b')), `cache/blobs/sha256/${hex('b')}`);
    assert.equal(keys.digestOf(keys.manifest(d('a'))), d('a'));
    assert.equal(keys.usedObject(keys.used(keys.blob(d('b')))), keys.blob(d('b')));
    assert.equal(keys.lease(d('c')), `cache/downloading/sha256/${hex('c')}`);
  });
});

describe('download lease', () => {
  it('round-trips a lease, and reads an unreadable one as expired', () => {
    assert.deepEqual(parseLease(leaseBody('me', 1_000, 500)), { owner: 'me', expiresAt: 1_500 });
    assert.deepEqual(parseLease('not json'), { owner: '', expiresAt: 0 });
    assert.deepEqual(parseLease('{"owner":1}'), { owner: '', expiresAt: 0 });
  });

  it('decides from the lease found and the clock', () => {
    const live = { owner: 'other', expiresAt: 2_000 };
    assert.equal(nextStep(undefined, 'me', 1_000, 5_000), 'retry');
    assert.equal(nextStep({ owner: 'me', expiresAt: 0 }, 'me', 1_000, 5_000), 'hold');
    assert.equal(nextStep({ owner: 'other', expiresAt: 999 }, 'me', 1_000, 5_000), 'take-over');
    assert.equal(nextStep(live, 'me', 1_000, 5_000), 'wait');
    assert.equal(nextStep(live, 'me', 1_999, 1_500), 'fetch', 'waited until the deadline');
    assert.equal(nextStep(parseLease('garbage'), 'me', 1_000, 5_000), 'take-over');
  });

  it('renews a third of the way through its lifetime', () => {
    assert.equal(renewalInterval(30_000), 10_000);
  });
});

describe('store listing', () => {
  it('adds each tag its manifest and the stored objects it names, once each, with the latest use', () => {
    const listing = describeStore({
      maxSize: 10_000,
      objects: [
        obj('manifest', 'a', 10, 100), // an index naming manifest b
        obj('manifest', 'b', 20, 300),
        obj('blob', 'c', 1_000, 200),
        obj('blob', 'e', 500, 50), // named by nothing tagged
      ],
      tags: [
        { name: 'h/team/app', tag: 'v1', digest: d('a'), checkedAt: 1 },
        { name: 'h/team/app', tag: 'gone', digest: d('f'), checkedAt: 1 },
        { name: 'h/other', tag: 'x', digest: d('b'), checkedAt: 1 },
      ],
      references: new Map([
        [d('a'), [d('b'), d('9')]],
        [d('b'), [d('c'), d('c')]],
      ]),
    });
    assert.deepEqual(
      listing.tags.map((t) => [t.name, t.tag, t.bytes, t.lastUse]),
      [
        ['h/other', 'x', 1_020, 300],
        ['h/team/app', 'v1', 1_030, 300],
      ],
    );
    assert.deepEqual(
      [listing.usedBytes, listing.maxSize, listing.blobs, listing.manifests],
      [1_530, 10_000, 2, 2],
    );
  });
});
