import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { type AuthChallenge, parseChallenges } from '../../src/registry/challenge.ts';
import { assertLinear } from '../harness/growth.ts';

const bearer = (params: Record<string, string>): AuthChallenge => ({ scheme: 'bearer', params });
const basic = (params: Record<string, string>): AuthChallenge => ({ scheme: 'basic', params });

describe('parseChallenges', () => {
  const table: [string, string | string[] | undefined, AuthChallenge[]][] = [
    ['no header', undefined, []],
    ['empty', '', []],
    ['Basic with realm', 'Basic realm="pullmap-test"', [basic({ realm: 'pullmap-test' })]],
    [
      'distribution Bearer',
      'Bearer realm="http://127.0.0.1:5001/token",service="test-registry",scope="repository:team/app:pull"',
      [
        bearer({
          realm: 'http://127.0.0.1:5001/token',
          service: 'test-registry',
          scope: 'repository:team/app:pull',
        }),
      ],
    ],
    [
      'Docker Hub style with error',
      'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull",error="insufficient_scope"',
      [
        bearer({
          realm: 'https://auth.docker.io/token',
          service: 'registry.docker.io',
          scope: 'repository:library/nginx:pull',
          error: 'insufficient_scope',
        }),
      ],
    ],
    [
      'scheme and names are case-insensitive',
      'BEARER Realm="x", SERVICE=y',
      [bearer({ realm: 'x', service: 'y' })],
    ],
    [
      'unquoted token values',
      'Bearer realm=https://h/token,service=reg',
      [bearer({ realm: 'https://h/token', service: 'reg' })],
    ],
    ['spaces around "="', 'Bearer realm = "x" , service= "y"', [bearer({ realm: 'x', service: 'y' })]],
    [
      'two challenges in one header',
      'Bearer realm="a",service="s", Basic realm="b"',
      [bearer({ realm: 'a', service: 's' }), basic({ realm: 'b' })],
    ],
    [
      'Basic first, then Bearer',
      'Basic realm="b", Bearer realm="a"',
      [basic({ realm: 'b' }), bearer({ realm: 'a' })],
    ],
    [
      'several headers',
      ['Basic realm="b"', 'Bearer realm="a"'],
      [basic({ realm: 'b' }), bearer({ realm: 'a' })],
    ],
    [
      'escaped quote and comma inside quotes',
      'Bearer realm="a\\"b,c",service="s"',
      [bearer({ realm: 'a"b,c', service: 's' })],
    ],
    [
      'scope with spaces',
      'Bearer scope="repository:a:pull repository:b:pull"',
      [bearer({ scope: 'repository:a:pull repository:b:pull' })],
    ],
    ['scheme without parameters', 'Bearer', [bearer({})]],
    ['bare schemes separated by commas', 'Basic, Bearer realm="x"', [basic({}), bearer({ realm: 'x' })]],
    ['first of a repeated parameter wins', 'Bearer realm="a", realm="b"', [bearer({ realm: 'a' })]],
    ['empty quoted value', 'Bearer realm=""', [bearer({ realm: '' })]],
    ['unterminated quote keeps what was read', 'Bearer service="s", realm="abc', [bearer({ service: 's' })]],
    ['leading commas and spaces', ' , ,Basic realm="x"', [basic({ realm: 'x' })]],
    [
      'prototype names stay data',
      'Bearer __proto__="x", constructor="y"',
      [bearer({ ['__proto__']: 'x', constructor: 'y' })],
    ],
  ];
  for (const [name, header, expected] of table) {
    it(name, () => {
      const got = parseChallenges(header);
      assert.deepEqual(
        got.map((c) => ({ ...c, params: { ...c.params } })),
        expected.map((c) => ({ ...c, params: { ...c.params } })),
      );
    });
  }

  it('reads token68 credentials', () => {
    assert.deepEqual(parseChallenges('Negotiate abc+/def==, Basic realm="r"'), [
      { scheme: 'negotiate', params: {}, token68: 'abc+/def==' },
      { scheme: 'basic', params: { realm: 'r' } },
    ]);
  });

  it('keeps "__proto__" as an own property, not a prototype', () => {
    const [challenge] = parseChallenges('Bearer __proto__="polluted"');
    assert.ok(challenge);
    assert.equal(Object.getPrototypeOf(challenge.params), Object.prototype);
    assert.equal(Object.hasOwn(challenge.params, '__proto__'), true);
    assert.equal(({} as Record<string, unknown>)['polluted'], undefined);
  });

  it('skips garbage without throwing', () => {
    for (const header of ['"', '=', '==,==', 'Bearer"x"', '\u0000\u0001', ',,,', 'realm="x"']) {
      assert.doesNotThrow(() => parseChallenges(header));
    }
    assert.deepEqual(parseChallenges('Bearer"x", Basic realm="b"'), [basic({ realm: 'b' })]);
  });

  it('never throws and stays linear on arbitrary input', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (header) => {
        parseChallenges(header);
      }),
      { numRuns: 2000 },
    );
    const hostile = (n: number) => `Bearer ${'a="b",'.repeat(n)}${' ,'.repeat(n)}"${'\\"'.repeat(n)}`;
    assertLinear(parseChallenges, hostile, 5_000);
  });
});
