// Admission warnings echo image strings nobody validated, and kubectl prints them to a terminal
// (issue 21 §7): escape sequences and bidi controls arrive escaped, through a real `pullmap serve`.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type Pullmap, podReview, startPullmap } from '../harness/pullmap.ts';

describe('admission warnings with hostile image strings', () => {
  let pm: Pullmap;
  before(async () => {
    pm = await startPullmap();
  });
  after(() => pm.stop());

  it('carry no terminal escapes or bidi controls', async () => {
    // Mutating admission runs before validation: container names are not checked yet either.
    const name = 'app\u001b]0;owned\u0007\u202e';
    const image = 'nginx\u001b[2J\u202e:1.27';
    const { status, json } = await pm.review(podReview({ [name]: image }, { uid: 'esc' }));
    assert.equal(status, 200);
    const warnings: string[] = json.response.warnings ?? [];
    assert.ok(warnings.length > 0, 'an invalid image is left unchanged with a warning');
    for (const w of warnings)
      assert.doesNotMatch(w, /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/);
    assert.match(warnings[0] ?? '', /container app\\u\{001B\}\]0;owned\\u\{0007\}\\u\{202E\}/);
    assert.equal(json.response.patch, undefined);
  });
});
