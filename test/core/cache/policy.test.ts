// The cache's pure parts in src/core: refresh policies and the inverse of stage-2 host embedding.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  formatRefresh,
  isDue,
  parseRefresh,
  type Refresh,
  refreshFor,
} from '../../../src/core/cache/policy.ts';
import { embedRegistry, unembedRegistry } from '../../../src/core/reference/index.ts';
import { compileTagPatterns } from '../../../src/core/tag-pattern.ts';

const refresh = (text: string): Refresh => {
  const r = parseRefresh(text);
  if (!r.ok) throw new Error(r.message);
  return r.refresh;
};

describe('refresh policies', () => {
  it('parses Always, Never and Interval(duration), and says how to write anything else', () => {
    assert.deepEqual(refresh('Always'), { kind: 'Always' });
    assert.deepEqual(refresh('Never'), { kind: 'Never' });
    assert.deepEqual(refresh('Interval(1h30m)'), { kind: 'Interval', ms: 5_400_000 });
    assert.deepEqual(refresh('Interval(0)'), { kind: 'Always' });
    assert.equal(formatRefresh(refresh('Interval(90s)')), 'Interval(90000ms)');
    for (const bad of ['always', 'Interval', 'Interval()', 'Interval(1 hour)', 'Sometimes', '']) {
      const r = parseRefresh(bad);
      assert.equal(r.ok, false, bad);
      assert.match(r.ok ? '' : r.message, /Interval|Always/, bad);
    }
  });

  it('the first matching rule decides; repository and tag patterns match whole strings', () => {
    const rules = [
      {
        repository: compileTagPatterns(['docker\\.io/library/.*']),
        tags: compileTagPatterns(['latest']),
        refresh: refresh('Always'),
      },
      { repository: undefined, tags: compileTagPatterns(['v?[0-9.]+']), refresh: refresh('Never') },
      {
        repository: compileTagPatterns(['quay\\.io/acme']),
        tags: undefined,
        refresh: refresh('Interval(5m)'),
      },
    ];
    const fallback = refresh('Interval(1h)');
    const cases: [string, string, string][] = [
      ['docker.io/library/nginx', 'latest', 'Always'],
      ['docker.io/library/nginx', 'latest-2', 'Interval(3600000ms)'],
      ['docker.io/library/nginx', '1.27', 'Never'],
      ['quay.io/acme', 'main', 'Interval(300000ms)'],
      ['quay.io/acme-labs', 'main', 'Interval(3600000ms)'],
      ['xdocker.io/library/nginx', 'latest', 'Interval(3600000ms)'],
    ];
    for (const [name, tag, expected] of cases)
      assert.equal(formatRefresh(refreshFor(rules, fallback, name, tag)), expected, `${name}:${tag}`);
  });

  it('is due by policy and by the clock it is given', () => {
    assert.equal(isDue(refresh('Always'), 1000, 1000), true);
    assert.equal(isDue(refresh('Never'), 0, Number.MAX_SAFE_INTEGER), false);
    assert.equal(isDue(refresh('Interval(1m)'), 0, 59_999), false);
    assert.equal(isDue(refresh('Interval(1m)'), 0, 60_000), true);
  });
});

describe('unembedRegistry', () => {
  it('inverts embedRegistry for hosts with and without ports', () => {
    for (const host of ['docker.io', 'localhost:5000', '127.0.0.1:7439', 'registry.example.com', 'a-b.c:1']) {
      const embedded = embedRegistry(host);
      assert.ok(embedded !== undefined);
      assert.equal(unembedRegistry(embedded), host);
    }
  });

  it('refuses what no embedded host looks like', () => {
    for (const bad of [
      '',
      'a_b_c',
      '_5000',
      'host_',
      'Docker.io',
      'host_port',
      'ex ample',
      '..',
      'a/b',
      'host_-1',
    ])
      assert.equal(unembedRegistry(bad), undefined, bad);
  });
});
