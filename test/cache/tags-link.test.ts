// Which Link headers of an upstream tags/list the cache follows: the next page of the same list on the
// same registry, never another host or path.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { nextPage } from '../../src/cache/transport/tags.ts';

describe('tags/list Link header', () => {
  it('follows rel="next" to the same list on the same registry', () => {
    assert.equal(
      nextPage('</v2/team/app/tags/list?n=100&last=v9>; rel="next"', 'team/app'),
      '/v2/team/app/tags/list?n=100&last=v9',
    );
    assert.equal(
      nextPage('</v2/team/app/tags/list?last=b>; rel=next', 'team/app'),
      '/v2/team/app/tags/list?last=b',
    );
  });

  it('ignores another host, another path, another relation and garbage', () => {
    for (const link of [
      '<https://evil.example/v2/team/app/tags/list?last=b>; rel="next"',
      '<//evil.example/v2/team/app/tags/list>; rel="next"',
      '</v2/team/other/tags/list?last=b>; rel="next"',
      '</v2/team/app/tags/list?last=b>; rel="prev"',
      'not a link',
      undefined,
    ])
      assert.equal(nextPage(link, 'team/app'), undefined, String(link));
  });
});
