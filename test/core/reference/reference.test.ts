import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  checkDigest,
  DIGEST,
  DIGEST_ALGORITHMS,
  describeReferenceError,
  digestAlgorithm,
  effectiveTag,
  embedRegistry,
  foldDockerHubHost,
  formatFamiliar,
  formatNormalized,
  formatReference,
  type ImageReference,
  parseReference,
  type ReferenceErrorCode,
  unembedRegistry,
} from '../../../src/core/reference/index.ts';
import { assertLinear } from '../../harness/growth.ts';

/** Property runs, scaled by PULLMAP_PROPERTY_SCALE (npm run mutate runs every test once per mutant). */
const runs = (n: number): number =>
  Math.max(50, Math.round(n * Number(process.env.PULLMAP_PROPERTY_SCALE ?? 1)));

const D64 = 'a'.repeat(64);
const SHA = `sha256:${'0123456789abcdef'.repeat(4)}`;

// [input, registry, repository, tag, digest]
const valid: [string, string, string, (string | undefined)?, (string | undefined)?][] = [
  ['nginx', 'docker.io', 'library/nginx'],
  ['nginx:1.27', 'docker.io', 'library/nginx', '1.27'],
  ['nginx:latest', 'docker.io', 'library/nginx', 'latest'],
  [`nginx@${SHA}`, 'docker.io', 'library/nginx', undefined, SHA],
  [`nginx:1.27@${SHA}`, 'docker.io', 'library/nginx', '1.27', SHA],
  ['library/nginx', 'docker.io', 'library/nginx'],
  ['docker.io/nginx', 'docker.io', 'library/nginx'],
  ['docker.io/library/nginx:1', 'docker.io', 'library/nginx', '1'],
  ['index.docker.io/nginx', 'docker.io', 'library/nginx'],
  ['index.docker.io/bitnami/nats', 'docker.io', 'bitnami/nats'],
  ['bitnami/nats:2.10.26-alpine', 'docker.io', 'bitnami/nats', '2.10.26-alpine'],
  ['a/b/c/d', 'docker.io', 'a/b/c/d'],
  ['quay.io/acme/app:latest', 'quay.io', 'acme/app', 'latest'],
  ['quay.io/acme/foo-bar', 'quay.io', 'acme/foo-bar'],
  ['gcr.io/google-samples/kubernetes-bootcamp:v1', 'gcr.io', 'google-samples/kubernetes-bootcamp', 'v1'],
  ['localhost/foo', 'localhost', 'foo'],
  ['localhost:5000/foo', 'localhost:5000', 'foo'],
  ['localhost:5000/foo:bar', 'localhost:5000', 'foo', 'bar'],
  ['127.0.0.1:5000/a/b:c', '127.0.0.1:5000', 'a/b', 'c'],
  ['[::1]/foo', '[::1]', 'foo'],
  ['[::1]:5000/foo:bar', '[::1]:5000', 'foo', 'bar'],
  ['[2001:db8::1]:443/x/y', '[2001:db8::1]:443', 'x/y'],
  ['Docker.io/x', 'Docker.io', 'x'],
  ['Foo/bar', 'Foo', 'bar'],
  ['foo.bar/baz', 'foo.bar', 'baz'],
  ['my-registry.example.com:8443/team/app', 'my-registry.example.com:8443', 'team/app'],
  ['registry/a.b/c_d/e__f/g-h/i---j', 'docker.io', 'registry/a.b/c_d/e__f/g-h/i---j'],
  ['a.b', 'docker.io', 'library/a.b'],
  ['a__b', 'docker.io', 'library/a__b'],
  ['a--b', 'docker.io', 'library/a--b'],
  ['0', 'docker.io', 'library/0'],
  ['localhost', 'docker.io', 'library/localhost'],
  ['x:_', 'docker.io', 'library/x', '_'],
  ['x:A-Z.9', 'docker.io', 'library/x', 'A-Z.9'],
  [`x:${'t'.repeat(128)}`, 'docker.io', 'library/x', 't'.repeat(128)],
  [`x/${'a'.repeat(253)}`, 'docker.io', `x/${'a'.repeat(253)}`],
  [`reg.io/${'a'.repeat(255)}`, 'reg.io', 'a'.repeat(255)],
  [`x@sha512:${'ab'.repeat(64)}`, 'docker.io', 'library/x', undefined, `sha512:${'ab'.repeat(64)}`],
  [`x@sha384:${'cd'.repeat(48)}`, 'docker.io', 'library/x', undefined, `sha384:${'cd'.repeat(48)}`],
  [`sha256:${D64.slice(0, 10)}`, 'docker.io', 'library/sha256', D64.slice(0, 10)],
  ['xn--bcher-kva.example/app', 'xn--bcher-kva.example', 'app'],
  ['a-b.c-d:1/e', 'a-b.c-d:1', 'e'],
  // Without a "/", "localhost:5000" is the Hub image "localhost" with tag "5000", as Docker reads it.
  ['localhost:5000', 'docker.io', 'library/localhost', '5000'],
];

// [input, code]
const invalid: [string, ReferenceErrorCode][] = [
  ['', 'REF_EMPTY'],
  [' nginx', 'REF_WHITESPACE'],
  ['nginx ', 'REF_WHITESPACE'],
  ['ngi nx', 'REF_WHITESPACE'],
  ['nginx\n', 'REF_WHITESPACE'],
  ['nginx\t:1', 'REF_WHITESPACE'],
  [D64, 'REF_IMAGE_ID'],
  ['docker.io/X', 'REF_PATH_UPPERCASE'],
  ['NGINX', 'REF_PATH_UPPERCASE'],
  ['quay.io/Acme/app', 'REF_PATH_UPPERCASE'],
  ['a//b', 'REF_PATH_INVALID'],
  ['a/', 'REF_PATH_INVALID'],
  ['/a', 'REF_PATH_INVALID'],
  ['a-', 'REF_PATH_INVALID'],
  ['-a', 'REF_PATH_INVALID'],
  ['a.', 'REF_PATH_INVALID'],
  ['.a', 'REF_PATH_INVALID'],
  ['a..b', 'REF_PATH_INVALID'],
  ['a___b', 'REF_PATH_INVALID'],
  ['a-_b', 'REF_PATH_INVALID'],
  ['a_-b', 'REF_PATH_INVALID'],
  ['a._b', 'REF_PATH_INVALID'],
  ['a/b!', 'REF_PATH_INVALID'],
  ['a/b$c', 'REF_PATH_INVALID'],
  ['a/ü', 'REF_PATH_INVALID'],
  ['reg.io/a+b', 'REF_PATH_INVALID'],
  ['x:', 'REF_TAG_INVALID'],
  ['x:-a', 'REF_TAG_INVALID'],
  ['x:.a', 'REF_TAG_INVALID'],
  ['x:a+b', 'REF_TAG_INVALID'],
  [`x:${'t'.repeat(129)}`, 'REF_TAG_INVALID'],
  ['x:a/b', 'REF_PORT_INVALID'],
  ['x@', 'REF_DIGEST_INVALID'],
  ['x@sha256', 'REF_DIGEST_INVALID'],
  ['x@sha256:', 'REF_DIGEST_INVALID'],
  [`x@sha256:${'a'.repeat(63)}`, 'REF_DIGEST_INVALID'],
  [`x@sha256:${'a'.repeat(65)}`, 'REF_DIGEST_INVALID'],
  [`x@sha256:${'A'.repeat(64)}`, 'REF_DIGEST_INVALID'],
  [`x@sha256:${'g'.repeat(64)}`, 'REF_DIGEST_INVALID'],
  [`x@md5:${'a'.repeat(32)}`, 'REF_DIGEST_UNSUPPORTED'],
  [`x@sha256+b64:${'a'.repeat(64)}`, 'REF_DIGEST_UNSUPPORTED'],
  [`x@1sha:${'a'.repeat(64)}`, 'REF_DIGEST_INVALID'],
  [`x@@sha256:${D64}`, 'REF_DIGEST_INVALID'],
  [`@sha256:${D64}`, 'REF_PATH_INVALID'],
  ['localhost:/foo', 'REF_PORT_INVALID'],
  ['localhost:abc/foo', 'REF_PORT_INVALID'],
  ['-reg.io/foo', 'REF_HOST_INVALID'],
  ['reg-.io/foo', 'REF_HOST_INVALID'],
  ['reg..io/foo', 'REF_HOST_INVALID'],
  ['reg_x.io/foo', 'REF_HOST_INVALID'],
  ['[::1/foo', 'REF_HOST_INVALID'],
  ['[]/foo', 'REF_PATH_INVALID'],
  ['[fe80::1%eth0]/foo', 'REF_HOST_INVALID'],
  ['[::1]x/foo', 'REF_HOST_INVALID'],
  ['[::1]:5000', 'REF_PATH_INVALID'],
  [`reg.io/${'a'.repeat(256)}`, 'REF_PATH_TOO_LONG'],
  [`x/${'a'.repeat(254)}`, 'REF_PATH_TOO_LONG'],
  ['http://reg.io/foo', 'REF_PORT_INVALID'],
  ['C:\\Users\\x', 'REF_TAG_INVALID'],
];

describe('parseReference: valid references', () => {
  for (const [input, registry, repository, tag, digest] of valid) {
    test(JSON.stringify(input.length > 70 ? `${input.slice(0, 67)}...` : input), () => {
      const r = parseReference(input);
      assert.ok(r.ok, r.ok ? '' : r.error.message);
      assert.deepEqual(r.ref, { registry, repository, tag, digest });
    });
  }
});

describe('parseReference: invalid references', () => {
  for (const [input, code] of invalid) {
    test(JSON.stringify(input.length > 70 ? `${input.slice(0, 67)}...` : input), () => {
      const r = parseReference(input);
      assert.equal(r.ok, false, `expected ${code}`);
      if (!r.ok) {
        assert.equal(r.error.code, code, r.error.message);
        assert.ok(r.error.message.length > 10);
      }
    });
  }
});

describe('parseReference: each refusal says what is wrong, in words', () => {
  // One input per kind of message: the words are part of the contract (they name the part and the fix).
  const messages: [string, string][] = [
    ['', 'image reference is empty'],
    [' nginx', 'contains U+0020 at offset 0; remove spaces and control characters'],
    ['nginx\n', 'contains U+000A at offset 5; remove spaces and control characters'],
    [
      'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',
      'a 64-character hex string is an image ID, not a repository name; add a repository name or "@sha256:"',
    ],
    ['docker.io/X', 'repository name must be lowercase (found "X" in "X")'],
    ['a//b', 'repository path has an empty component (check for "//" or a trailing "/")'],
    ['a-', 'repository path component "a-" must not end with a separator'],
    ['-a', 'repository path component "-a" must start with a-z or 0-9 ("-")'],
    ['a..b', 'repository path component "a..b" has two separators in a row (".")'],
    [
      'a/b!',
      'repository path component "b!" contains "!"; allowed are a-z, 0-9 and one of "." "_" "__" "-" between them',
    ],
    [
      'a/ü',
      'repository path component "ü" contains U+00FC; allowed are a-z, 0-9 and one of "." "_" "__" "-" between them',
    ],
    ['x:', 'tag is empty after ":"; remove the ":" or name a tag'],
    ['x:-a', 'tag "-a" must start with a letter, digit or "_"'],
    ['x:a+b', 'tag "a+b" contains "+"; allowed are letters, digits, "_", "." and "-"'],
    ['x:a/b', 'registry port "a" must be a number'],
    ['x@', 'digest "" must look like "sha256:<64 hex digits>"'],
    ['x@sha256:', 'sha256 digest must have 64 hex digits, found 0'],
    [
      'x@sha256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA',
      'digest "sha256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" must be lowercase hex',
    ],
    [
      'x@sha256:gggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggg',
      'digest "sha256:gggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggg" contains "g"; only hex digits are allowed',
    ],
    [
      'x@md5:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',
      'digest algorithm "md5" is not supported; use sha256, sha384 or sha512',
    ],
    [
      'x@1sha:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',
      'digest algorithm "1sha" is malformed',
    ],
    [
      '@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',
      'a digest needs a repository name before the "@"',
    ],
    ['localhost:/foo', 'registry "localhost:" has ":" but no port number'],
    ['-reg.io/foo', 'registry host label "-reg" must not start or end with "-"'],
    ['reg..io/foo', 'registry host "reg..io" has an empty label'],
    ['reg_x.io/foo', 'registry host label "reg_x" contains "_"; allowed are letters, digits and "-"'],
    ['[::1/foo', 'registry host "[::1" opens "[" for an IPv6 address but never closes it'],
    [
      '[fe80::1%eth0]/foo',
      'IPv6 registry host "[fe80::1%eth0]" contains "%"; only hex digits and ":" are allowed (no zone identifiers)',
    ],
    ['[::1]x/foo', 'registry host "[::1]x" has "x" after "]"; expected ":port" or "/"'],
    ['[::1]:5000', '"[::1]" looks like a registry, but no repository path follows it'],
  ];
  for (const [input, message] of messages)
    test(JSON.stringify(input.length > 40 ? `${input.slice(0, 37)}...` : input), () => {
      const r = parseReference(input);
      assert.equal(r.ok ? '' : r.error.message, message);
    });
});

test('long tags and paths: the length found and the limit', () => {
  const message = (input: string) => {
    const r = parseReference(input);
    return r.ok ? '' : `${r.error.code}: ${r.error.message}`;
  };
  assert.equal(
    message(`x:${'t'.repeat(129)}`),
    'REF_TAG_INVALID: tag is 129 characters long; at most 128 are allowed',
  );
  assert.equal(
    message(`reg.io/${'a'.repeat(256)}`),
    'REF_PATH_TOO_LONG: repository path is 256 characters long; at most 255 are allowed (registry not counted)',
  );
  const r = parseReference('Nginx');
  assert.equal(
    r.ok ? '' : describeReferenceError('Nginx', r.error),
    `"Nginx" is not a valid image reference: ${r.ok ? '' : r.error.message}`,
  );
});

test('refusals of an IPv6 host and a digest algorithm: their code and words', () => {
  const refusal = (input: string) => {
    const r = parseReference(input);
    return r.ok ? '' : `${r.error.code}: ${r.error.message}`;
  };
  const hex = 'a'.repeat(64);
  assert.equal(refusal('[]:5000/foo'), 'REF_HOST_INVALID: registry host "[]:5000" has an empty IPv6 address');
  assert.equal(refusal(`x@sha!256:${hex}`), 'REF_DIGEST_INVALID: digest algorithm "sha!256" contains "!"');
  assert.equal(refusal(`x@sha256-:${hex}`), 'REF_DIGEST_INVALID: digest algorithm "sha256-" is malformed');
  assert.equal(refusal(`x@-sha:${hex}`), 'REF_DIGEST_INVALID: digest algorithm "-sha" is malformed');
});

test('effectiveTag: the tag written, else latest, except for a digest alone', () => {
  const tagOf = (input: string) => {
    const r = parseReference(input);
    return r.ok ? effectiveTag(r.ref) : r.error.code;
  };
  assert.equal(tagOf('nginx'), 'latest');
  assert.equal(tagOf('nginx:1.27'), '1.27');
  assert.equal(tagOf(`nginx@${SHA}`), undefined);
  assert.equal(tagOf(`nginx:1.27@${SHA}`), '1.27');
});

test('a registry written as a path component: what cannot be one is refused both ways', () => {
  assert.equal(embedRegistry('localhost:5000'), 'localhost_5000');
  for (const host of ['[::1]:5000', '[::1]', 'Reg.io', 'reg.IO:5000'])
    assert.equal(embedRegistry(host), undefined, host);
  assert.equal(unembedRegistry('localhost_5000'), 'localhost:5000');
  for (const component of ['Reg.io', 'reg.io_X', '', 'a_b_1', '_5000'])
    assert.equal(unembedRegistry(component), undefined, component);
});

test('digestAlgorithm names the hash of a digest it does not support as sha256, which cannot match', () => {
  assert.equal(digestAlgorithm(`md5:${'a'.repeat(32)}`), 'sha256');
  assert.equal(digestAlgorithm('sha384'), 'sha256');
  assert.equal(digestAlgorithm(':sha384'), 'sha256');
  assert.equal(digestAlgorithm('sha3841'), 'sha256'); // no ":": not read as "sha384" with one more character
});

describe('formatting', () => {
  const cases: [string, string, string, string][] = [
    // input, formatReference, formatNormalized, formatFamiliar
    ['nginx', 'docker.io/library/nginx', 'docker.io/library/nginx:latest', 'nginx'],
    ['nginx:1.27', 'docker.io/library/nginx:1.27', 'docker.io/library/nginx:1.27', 'nginx:1.27'],
    [`nginx@${SHA}`, `docker.io/library/nginx@${SHA}`, `docker.io/library/nginx@${SHA}`, `nginx@${SHA}`],
    ['bitnami/nats', 'docker.io/bitnami/nats', 'docker.io/bitnami/nats:latest', 'bitnami/nats'],
    ['docker.io/library/a/b', 'docker.io/library/a/b', 'docker.io/library/a/b:latest', 'library/a/b'],
    ['quay.io/x/y:1', 'quay.io/x/y:1', 'quay.io/x/y:1', 'quay.io/x/y:1'],
    ['localhost:5000/x', 'localhost:5000/x', 'localhost:5000/x:latest', 'localhost:5000/x'],
  ];
  for (const [input, full, normalized, familiar] of cases) {
    test(input.slice(0, 40), () => {
      const r = parseReference(input);
      assert.ok(r.ok);
      assert.equal(formatReference(r.ref), full);
      assert.equal(formatNormalized(r.ref), normalized);
      assert.equal(formatFamiliar(r.ref), familiar);
    });
  }
});

// Generators for the grammar's productions, to check that formatting and re-parsing round-trip.
const alnum = fc.string({
  unit: fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789'),
  minLength: 1,
  maxLength: 6,
});
const separator = fc.constantFrom('.', '_', '__', '-', '--');
const component = fc
  .tuple(alnum, fc.array(fc.tuple(separator, alnum), { maxLength: 3 }))
  .map(([first, rest]) => first + rest.map(([s, a]) => s + a).join(''));
const label = fc.string({
  unit: fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789'),
  minLength: 1,
  maxLength: 8,
});
const host = fc.oneof(
  fc.tuple(label, fc.array(label, { minLength: 1, maxLength: 3 })).map(([a, b]) => [a, ...b].join('.')),
  fc.constant('localhost'),
  fc.constant('[::1]'),
  fc.ipV4(),
);
const registry = fc.oneof(
  host,
  fc.tuple(host, fc.integer({ min: 1, max: 65535 })).map(([h, p]) => `${h}:${p}`),
);
const tag = fc
  .tuple(
    fc.constantFrom(...'abcXYZ019_'),
    fc.string({ unit: fc.constantFrom(...'abcXYZ019_.-'), maxLength: 20 }),
  )
  .map(([a, b]) => a + b);
const digest = fc
  .string({ unit: fc.constantFrom(...'0123456789abcdef'), minLength: 64, maxLength: 64 })
  .map((h) => `sha256:${h}`);
const reference = fc.record({
  registry,
  repository: fc.array(component, { minLength: 1, maxLength: 4 }).map((c) => c.join('/')),
  tag: fc.option(tag, { nil: undefined }),
  digest: fc.option(digest, { nil: undefined }),
});

describe('round trip', () => {
  test('parse(formatReference(x)) == x for generated references', () => {
    fc.assert(
      fc.property(reference, (generated) => {
        const text = formatReference(generated as ImageReference);
        const r = parseReference(text);
        assert.ok(r.ok, `${text}: ${r.ok ? '' : r.error.message}`);
        const expected = { ...generated, registry: generated.registry, repository: generated.repository };
        // Docker Hub's one-component names gain "library/"; everything else comes back unchanged.
        if (expected.registry === 'docker.io' && !expected.repository.includes('/'))
          expected.repository = `library/${expected.repository}`;
        assert.deepEqual(r.ref, expected);
      }),
      { numRuns: runs(3000) },
    );
  });

  test('familiar and normalized forms re-parse to the same image', () => {
    fc.assert(
      fc.property(reference, (generated) => {
        const first = parseReference(formatReference(generated as ImageReference));
        if (!first.ok) return;
        for (const text of [formatFamiliar(first.ref), formatNormalized(first.ref)]) {
          const again = parseReference(text);
          assert.ok(again.ok, text);
          assert.equal(again.ref.registry, first.ref.registry);
          assert.equal(again.ref.repository, first.ref.repository);
          assert.equal(again.ref.digest, first.ref.digest);
        }
      }),
      { numRuns: runs(2000) },
    );
  });

  test('arbitrary strings never throw', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), (s) => {
        const r = parseReference(s);
        if (r.ok) assert.ok(parseReference(formatReference(r.ref)).ok);
      }),
      { numRuns: runs(5000) },
    );
  });
});

describe('linear time on hostile input', () => {
  // Each of these makes a backtracking port of the reference regexps take exponential time.
  const hostile: ((n: number) => string)[] = [
    (n) => `${'a-'.repeat(n / 2)}!`,
    (n) => `${'a.'.repeat(n / 2)}`,
    (n) => `${'a_'.repeat(n / 2)}A`,
    (n) => `${'a/'.repeat(n / 2)}!`,
    (n) => `${'a'.repeat(n)}:`,
    (n) => `${'a.'.repeat(n / 2)}a:${'b'.repeat(n)}!`,
    (n) => `${'a'.repeat(n)}@sha256:${'0'.repeat(n)}`,
    (n) => `${'['.repeat(n)}`,
    (n) => `${':'.repeat(n)}`,
    (n) => `${'a-b'.repeat(n / 3)}-`,
    (n) => `localhost:${'9'.repeat(n)}/a`,
    (n) => `${'a'.repeat(n)}!`,
  ];
  test('10 KB → 100 KB adversarial strings: the CPU time per input grows linearly', () => {
    for (const input of hostile) assertLinear(parseReference, input, 10_002);
  });
});

describe('generated table: registry spellings × paths × tag/digest', () => {
  // [as written, canonical registry, whether Docker Hub]
  const registries: [string, string, boolean][] = [
    ['', 'docker.io', true],
    ['docker.io/', 'docker.io', true],
    ['index.docker.io/', 'docker.io', true],
    ['quay.io/', 'quay.io', false],
    ['localhost/', 'localhost', false],
    ['localhost:5000/', 'localhost:5000', false],
    ['10.0.0.1:443/', '10.0.0.1:443', false],
    ['[::1]:5000/', '[::1]:5000', false],
    ['Registry.Example/', 'Registry.Example', false],
  ];
  const paths = ['app', 'team/app', 'ab/c_d.e', 'x/y/z/w', 'my--app', 'e__f/g-h'];
  const suffixes: [string, string | undefined, string | undefined][] = [
    ['', undefined, undefined],
    [':1.0', '1.0', undefined],
    [':latest', 'latest', undefined],
    [`@${SHA}`, undefined, SHA],
    [`:v2_x@${SHA}`, 'v2_x', SHA],
  ];
  for (const [prefix, registry, hub] of registries) {
    for (const path of paths) {
      for (const [suffix, tag, digest] of suffixes) {
        const input = prefix + path + suffix;
        test(input.length > 70 ? `${input.slice(0, 67)}...` : input, () => {
          const r = parseReference(input);
          assert.ok(r.ok, r.ok ? '' : r.error.message);
          const repository = hub && !path.includes('/') ? `library/${path}` : path;
          assert.deepEqual(r.ref, { registry, repository, tag, digest });
        });
      }
    }
  }
});

describe('digests: one list for the grammar, the registry client and the cache', () => {
  test('DIGEST accepts exactly what the reference grammar accepts', () => {
    const hex = fc.stringMatching(/^[0-9a-fA-F]{0,130}$/);
    const algorithm = fc.constantFrom('sha256', 'sha384', 'sha512', 'sha1', 'md5', 'SHA256', 'sha256+b64');
    fc.assert(
      fc.property(algorithm, hex, (a, h) => {
        const digest = `${a}:${h}`;
        assert.equal(DIGEST.test(digest), checkDigest(digest) === undefined, digest);
      }),
      { numRuns: runs(3000) },
    );
    for (const [name, length] of Object.entries(DIGEST_ALGORITHMS)) {
      const digest = `${name}:${'a'.repeat(length)}`;
      assert.ok(DIGEST.test(digest) && parseReference(`x@${digest}`).ok, name);
      assert.equal(digestAlgorithm(digest), name);
    }
  });
});

test("Docker Hub's names fold into docker.io; other hosts are kept as written", () => {
  for (const host of ['docker.io', 'index.docker.io', 'registry-1.docker.io'])
    assert.equal(foldDockerHubHost(host), 'docker.io');
  for (const host of ['Docker.io', 'docker.io:443', 'ghcr.io', 'hub.docker.com'])
    assert.equal(foldDockerHubHost(host), host);
  // A reference says index.docker.io for Hub; the API host is, for a reference, another registry.
  const registryOf = (text: string) => {
    const parsed = parseReference(text);
    return parsed.ok ? parsed.ref.registry : parsed.error.code;
  };
  assert.equal(registryOf('index.docker.io/x'), 'docker.io');
  assert.equal(registryOf('registry-1.docker.io/x'), 'registry-1.docker.io');
});
