// The watch stream's line splitter without an API server: values across chunk boundaries (UTF-8 split
// mid-character included), blank lines skipped, and the two failures by code.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { JsonLines } from '../../src/kube/client.ts';
import { KubeApiError } from '../../src/kube/errors.ts';

const bytes = (s: string) => new TextEncoder().encode(s);

test('lines split anywhere, even inside a UTF-8 character, come out whole and in order', () => {
  const text = '{"a":1}\n\n{"name":"é€"}\n  \n{"b":[2]}\n';
  const all = bytes(text);
  for (let cut = 0; cut <= all.length; cut++) {
    const seen: unknown[] = [];
    const lines = new JsonLines('watch /x', 1024);
    lines.push(all.slice(0, cut), (v) => seen.push(v));
    lines.push(all.slice(cut), (v) => seen.push(v));
    assert.deepEqual(seen, [{ a: 1 }, { name: 'é€' }, { b: [2] }], `cut at ${cut}`);
  }
});

test('a line that is not JSON is KUBE_BAD_RESPONSE with the parse error as cause; earlier lines were delivered', () => {
  const seen: unknown[] = [];
  const lines = new JsonLines('watch /x', 1024);
  assert.throws(
    () => lines.push(bytes('{"ok":true}\n{nope\n'), (v) => seen.push(v)),
    (err: unknown) =>
      err instanceof KubeApiError && err.code === 'KUBE_BAD_RESPONSE' && err.cause instanceof SyntaxError,
  );
  assert.deepEqual(seen, [{ ok: true }]);
});

test('a line growing past the cap is KUBE_TOO_LARGE before it ends', () => {
  const lines = new JsonLines('watch /x', 16);
  lines.push(bytes('{"a":"0123456789'), () => assert.fail('no line yet'));
  assert.throws(
    () => lines.push(bytes('0123456789'), () => undefined),
    (err: unknown) => err instanceof KubeApiError && err.code === 'KUBE_TOO_LARGE',
  );
});
