// The cache's config file, request routing and stale classification: pure, table-driven.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { Download } from '../../src/cache/blob-fetch.ts';
import { parseCacheConfig, parseSize } from '../../src/cache/config.ts';
import { copyRange } from '../../src/cache/copy.ts';
import { staleKindOf } from '../../src/cache/manifests.ts';
import { paginate, routeOf } from '../../src/cache/route.ts';
import { runInProcess } from '../harness/cli.ts';

const D = `sha256:${'a'.repeat(64)}`;

describe('cache config', () => {
  it('accepts every example in examples/cache/', () => {
    const dir = join('examples', 'cache');
    const files = readdirSync(dir).filter((f) => f.endsWith('.yaml'));
    assert.ok(files.length >= 1);
    for (const f of files) {
      const r = parseCacheConfig(readFileSync(join(dir, f), 'utf8'), f);
      assert.ok(r.ok, r.ok ? '' : r.errors.join('\n'));
    }
  });

  it('accepts the configs embedded in deploy/cache and deploy/cache-pvc', () => {
    for (const f of ['deploy/cache/config.yaml', 'deploy/cache-pvc/cache.yaml']) {
      const docs = parseAllDocuments(readFileSync(f, 'utf8')).map(
        (d) => d.toJS() as { kind: string; data?: Record<string, string> },
      );
      const configMap = docs.find((d) => d.kind === 'ConfigMap');
      const r = parseCacheConfig(configMap?.data?.['cache.yaml'] ?? '', f);
      assert.ok(r.ok, r.ok ? '' : r.errors.join('\n'));
      assert.equal(r.ok && r.config.listen.port, 7439);
    }
  });

  it('names every bad field and how to fix it', () => {
    const r = parseCacheConfig(
      `listen: "7439"
storage: {dir: /x, maxSize: 12Q}
upstreams:
  - {host: Docker.io}
  - {host: quay.io, username: u}
  - {host: quay.io}
refresh: {default: Sometimes, rules: [{tags: ["(a+)+", "v(?=1)"], repository: "(x)\\\\1", refresh: Always}]}
staleIfError: {notfound: true}
clientAuth: {}
`,
      'cache.yaml',
    );
    assert.equal(r.ok, false);
    const text = r.ok ? '' : r.errors.join('\n');
    for (const expected of [
      /storage\.maxSize: must be a size such as "50Gi"/,
      /upstreams\[0\]\.host: must be lowercase/,
      /refresh\.default: "Sometimes" is not a refresh policy/,
      /refresh\.rules\[0\]\.tags\[1\]: uses the lookaround \(\?= \.\.\.\)/,
      /refresh\.rules\[0\]\.repository: uses the backreference \\1:/,
      /staleIfError\.notfound: is not a known field; did you mean "notFound"\?/,
    ])
      assert.match(text, expected);
    const semantic = parseCacheConfig(
      'listen: nowhere\nstorage: {dir: /x}\nupstreams: [{host: quay.io, username: u}, {host: quay.io}]\nclientAuth: {}\n',
      'c.yaml',
    );
    const text2 = semantic.ok ? '' : semantic.errors.join('\n');
    assert.match(text2, /upstreams\[1\]\.host: quay\.io is listed twice/);
    assert.match(text2, /upstreams\[0\]: username and passwordFile go together/);
    assert.match(text2, /clientAuth: set exactly one of htpasswd and tokenFile/);
    assert.match(text2, /listen: "nowhere" is not host:port/);
    assert.equal(parseCacheConfig('storage: {dir: /x}\n', 'c.yaml').ok, false);
    assert.equal(parseCacheConfig(': : bad yaml [', 'c.yaml').ok, false);
  });

  it('reads sizes as Kubernetes quantities', () => {
    assert.equal(parseSize('50Gi'), 50 * 2 ** 30);
    assert.equal(parseSize('500M'), 5e8);
    assert.equal(parseSize(1024), 1024);
    for (const bad of ['1.5Gi', '-1', '10GB', 0, 'Gi', null])
      assert.equal(parseSize(bad), undefined, String(bad));
  });
});

describe('cache routing', () => {
  const upstreams = new Set(['docker.io', '127.0.0.1:5000', 'quay.io']);
  it('reads both addressing modes', () => {
    assert.deepEqual(routeOf('/v2/docker.io/library/nginx/manifests/1.27', upstreams), {
      kind: 'manifest',
      registry: 'docker.io',
      repository: 'library/nginx',
      tag: '1.27',
      digest: undefined,
    });
    assert.deepEqual(routeOf(`/v2/127.0.0.1_5000/a/b/blobs/${D}`, upstreams), {
      kind: 'blob',
      registry: '127.0.0.1:5000',
      repository: 'a/b',
      tag: undefined,
      digest: D,
    });
    assert.deepEqual(routeOf('/v2/library/nginx/manifests/latest?ns=docker.io', upstreams), {
      kind: 'manifest',
      registry: 'docker.io',
      repository: 'library/nginx',
      tag: 'latest',
      digest: undefined,
    });
    // Docker Hub short names are normalised as the runtime would: nginx is library/nginx.
    assert.equal(
      (routeOf('/v2/nginx/manifests/1?ns=docker.io', upstreams) as { repository: string }).repository,
      'library/nginx',
    );
    assert.deepEqual(routeOf('/v2/', upstreams), { kind: 'base' });
    assert.deepEqual(routeOf('/v2/docker.io/nginx/tags/list?n=5&last=1.2', upstreams), {
      kind: 'tags',
      registry: 'docker.io',
      repository: 'library/nginx',
      name: 'docker.io/nginx',
      ns: undefined,
      n: 5,
      last: '1.2',
    });
    assert.deepEqual(routeOf('/v2/_catalog', upstreams), { kind: 'catalog', n: undefined, last: undefined });
  });

  it('pages a sorted list after `last`, at most `n`', () => {
    const all = ['a', 'b', 'c'];
    assert.deepEqual(paginate(all, { n: 2, last: undefined }), { items: ['a', 'b'], more: true });
    assert.deepEqual(paginate(all, { n: 2, last: 'b' }), { items: ['c'], more: false });
    assert.deepEqual(paginate(all, { n: undefined, last: 'a' }), { items: ['b', 'c'], more: false });
    assert.deepEqual(paginate(all, { n: 0, last: undefined }), { items: [], more: true });
  });

  it('refuses what is not a configured upstream or not a valid name', () => {
    const cases: [string, string][] = [
      ['/v2/gcr.io/x/manifests/1', 'NAME_UNKNOWN'],
      ['/v2/x/manifests/1?ns=gcr.io', 'NAME_UNKNOWN'],
      ['/v2/nginx/manifests/1', 'NAME_UNKNOWN'],
      ['/v2/127.0.0.1_5001/a/manifests/1', 'NAME_UNKNOWN'],
      ['/v2/docker.io/../etc/manifests/1', 'NAME_INVALID'],
      ['/v2/docker.io/a/%2e%2e/manifests/1', 'NAME_INVALID'],
      ['/v2/docker.io/a//b/manifests/1', 'NAME_INVALID'],
      ['/v2/docker.io/A/manifests/1', 'NAME_INVALID'],
      ['/v2/a_b_c/x/manifests/1', 'NAME_INVALID'],
      ['/v2/docker.io/a:1/manifests/1', 'NAME_INVALID'],
      ['/v2/docker.io/a/manifests/-bad', 'MANIFEST_INVALID'],
      ['/v2/docker.io/a/blobs/sha256:xyz', 'DIGEST_INVALID'],
      [`/v2/docker.io/a/blobs/${D.toUpperCase()}`, 'DIGEST_INVALID'],
      ['/v2/docker.io/a/tags', 'UNSUPPORTED'],
      ['/v2/docker.io/A/tags/list', 'NAME_INVALID'],
      ['/v2/gcr.io/a/tags/list', 'NAME_UNKNOWN'],
      ['/v2/docker.io/a/tags/list?n=-1', 'PAGINATION_NUMBER_INVALID'],
      ['/v2/_catalog?n=10001', 'PAGINATION_NUMBER_INVALID'],
      ['/v2/_catalog/x', 'UNSUPPORTED'],
      [`/v2/${'a/'.repeat(3000)}manifests/1`, 'NAME_INVALID'],
    ];
    for (const [target, code] of cases) {
      const r = routeOf(target, upstreams);
      assert.equal(r.kind, 'error', target);
      assert.equal((r as { code: string }).code, code, target.slice(0, 80));
    }
  });
});

describe('stale classification', () => {
  it('maps each upstream failure to the switch that covers it, and invalid answers to none', () => {
    assert.equal(staleKindOf('REG_CONNECTION_FAILED'), 'unreachable');
    assert.equal(staleKindOf('REG_DNS_FAILED'), 'unreachable');
    assert.equal(staleKindOf('REG_TLS_FAILED'), 'unreachable');
    assert.equal(staleKindOf('REG_BUSY'), 'timeout');
    assert.equal(staleKindOf('REG_DEADLINE'), 'timeout');
    assert.equal(staleKindOf('REG_AUTH_UNSUPPORTED'), 'unauthorized');
    assert.equal(staleKindOf('REG_METHOD_REFUSED'), undefined);
    assert.equal(staleKindOf('REG_TIMEOUT'), 'timeout');
    assert.equal(staleKindOf('REG_SERVER_ERROR'), 'serverError');
    assert.equal(staleKindOf('REG_RATE_LIMITED'), 'rateLimited');
    assert.equal(staleKindOf('REG_FORBIDDEN'), 'unauthorized');
    assert.equal(staleKindOf('REG_AUTH_REFUSED'), 'unauthorized');
    assert.equal(staleKindOf('REG_NOT_FOUND'), 'notFound');
    assert.equal(staleKindOf('REG_DIGEST_MISMATCH'), undefined);
    assert.equal(staleKindOf('REG_INVALID_RESPONSE'), undefined);
  });
});

describe('download hold-back', () => {
  it('clients never get the last byte before the digest is verified', async () => {
    const { mkdtemp, open, rm } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const dir = await mkdtemp(join(tmpdir(), 'pullmap-hold-'));
    try {
      const path = join(dir, 'x.part');
      const download = new Download(D, 8, { path, handle: await open(path, 'wx+') });
      download.append(Buffer.from('1234'));
      download.append(Buffer.from('5678'));
      await download.end();
      assert.equal(download.available(), 7);
      assert.ok(download.acquire());
      const chunks: Buffer[] = [];
      const out = new PassThrough();
      out.on('data', (c: Buffer) => chunks.push(c));
      const copying = copyRange(download, 0, 7, out, () => {});
      await new Promise((r) => setTimeout(r, 20));
      assert.equal(Buffer.concat(chunks).toString(), '1234567');
      download.finish(new Error('digest mismatch'));
      await assert.rejects(copying, /digest mismatch/);
      assert.equal(Buffer.concat(chunks).toString(), '1234567');
      download.release();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('pullmap cache command', () => {
  it('exits 2 with the field and the fix for a bad config, a missing file or no --config', async () => {
    const { mkdtemp, rm, writeFile } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const dir = await mkdtemp(join(tmpdir(), 'pullmap-cachecli-'));
    try {
      const bad = join(dir, 'bad.yaml');
      await writeFile(bad, 'storage: {dir: /tmp/x}\nupstreams: [{host: quay.io, plainHttp: yes}]\n');
      const missingCa = join(dir, 'ca.yaml');
      await writeFile(
        missingCa,
        `storage: {dir: ${dir}/store}\nupstreams: [{host: quay.io, caFile: ${dir}/nope.pem}]\n`,
      );
      const cases: [string[], RegExp][] = [
        [['cache'], /cache needs --config FILE/],
        [['cache', '--config', bad], /upstreams\[0\]\.plainHttp: must be true or false/],
        [['cache', '--config', join(dir, 'absent.yaml')], /cannot read .*absent\.yaml: no such file/],
        [['cache', '--config', missingCa], /upstreams\[0\]\.caFile: cannot read .*nope\.pem/],
        [['cache', '--config', missingCa, '--listen', 'nowhere'], /--listen "nowhere" is not HOST:PORT/],
      ];
      for (const [args, expected] of cases) {
        const { code, stderr } = await runInProcess(args);
        assert.equal(code, 2, args.join(' '));
        assert.match(stderr, expected, args.join(' '));
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
