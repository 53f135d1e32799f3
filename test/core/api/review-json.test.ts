// The AdmissionReview answer is written out by hand (reviewJson) to skip escaping the base64 patch;
// it must be exactly what JSON.stringify makes of the envelope, whatever the strings hold.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { type AdmissionResponse, reviewEnvelope, reviewJson } from '../../../src/core/api/admission.ts';

const response: fc.Arbitrary<AdmissionResponse> = fc.record(
  {
    uid: fc.string({ unit: 'binary' }),
    allowed: fc.boolean(),
    patchType: fc.constant('JSONPatch' as const),
    patch: fc.string({ unit: 'binary' }).map((s) => Buffer.from(s).toString('base64')),
    warnings: fc.array(fc.string({ unit: 'binary' }), { maxLength: 3 }),
    status: fc.record(
      {
        code: fc.integer({ min: 100, max: 599 }),
        reason: fc.string(),
        message: fc.string({ unit: 'binary' }),
      },
      { requiredKeys: ['code', 'message'] },
    ),
  },
  { requiredKeys: ['uid', 'allowed'] },
);

describe('reviewJson', () => {
  it('is JSON.stringify of the envelope for any response', () => {
    fc.assert(
      fc.property(response, (r) => {
        assert.equal(reviewJson(r), JSON.stringify(reviewEnvelope(r)));
      }),
      { numRuns: 500 },
    );
  });
});
