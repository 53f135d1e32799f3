// Optional client authentication: htpasswd Basic (entries made by the real htpasswd -2 / -5) checked
// with skopeo, and a static token checked with ctr (Basic password) and a Bearer header.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { htpasswdAuth, parseHtpasswd } from '../../src/cache/client-auth.ts';
import { embedRegistry } from '../../src/core/reference/index.ts';
import {
  type Containerd,
  closeAll,
  skopeoCopy,
  startContainerd,
  startTestCache,
  type TestCache,
  unpackOci,
} from '../harness/cache.ts';
import { buildImage, pushImage } from '../harness/images.ts';
import { execFileAsync, requireCommand, type TempDir, tempDir } from '../harness/process.ts';
import { startRegistry, type TestRegistry } from '../harness/registry.ts';

const TOKEN = 'a-static-token-for-the-cache-0123456789';

describe('cache: client authentication', () => {
  let upstream: TestRegistry;
  let work: TempDir;
  let basic: TestCache;
  let token: TestCache;
  let containerd: Containerd;
  const image = buildImage({ files: { 'secret.txt': 'only for cluster nodes\n' } });

  before(async () => {
    upstream = await startRegistry();
    work = await tempDir('cache-auth');
    await pushImage(upstream, 'team/app', '1', image);
    const htpasswd = requireCommand('htpasswd');
    const lines = [
      (await execFileAsync(htpasswd, ['-nb2', 'node', 'node-password'])).stdout.trim(),
      (await execFileAsync(htpasswd, ['-nb5', 'admin', 'admin password'])).stdout.trim(),
      (await execFileAsync(htpasswd, ['-nbB', 'registry', 'bcrypt password'])).stdout.trim(),
    ];
    const htpasswdPath = join(work.path, 'htpasswd');
    await writeFile(htpasswdPath, `${lines.join('\n')}\n`);
    const tokenPath = join(work.path, 'token');
    await writeFile(tokenPath, `${TOKEN}\n`);
    const upstreams = [{ host: upstream.host, plainHttp: true }];
    basic = await startTestCache({ upstreams, clientAuth: { htpasswd: htpasswdPath } });
    token = await startTestCache({ upstreams, clientAuth: { tokenFile: tokenPath } });
    containerd = await startContainerd();
  });
  after(() => closeAll(containerd, basic, token, upstream, work));

  it('htpasswd: skopeo pulls as any user (SHA-256, SHA-512 and bcrypt entries), and is refused without or with wrong credentials', async () => {
    const ref = `${basic.host}/${embedRegistry(upstream.host)}/team/app:1`;
    for (const creds of ['node:node-password', 'admin:admin password', 'registry:bcrypt password']) {
      const layout = await skopeoCopy(ref, work.path, ['--src-creds', creds]);
      assert.deepEqual(await unpackOci(layout), { 'secret.txt': 'only for cluster nodes\n' });
    }
    // Refused for want of credentials, not for any other reason.
    const refused = /unauthorized|authentication required|401/i;
    await assert.rejects(skopeoCopy(ref, work.path), refused);
    await assert.rejects(skopeoCopy(ref, work.path, ['--src-creds', 'node:wrong']), refused);
    await assert.rejects(skopeoCopy(ref, work.path, ['--src-creds', 'registry:wrong']), refused);
    const res = await request(`${basic.url}/v2/`);
    const body = (await res.body.json()) as { errors: { code: string }[] };
    assert.equal(res.statusCode, 401);
    assert.match(String(res.headers['www-authenticate']), /^Basic realm=/);
    assert.equal(body.errors[0]?.code, 'UNAUTHORIZED');
  });

  it('token: ctr pulls with the token as password; Bearer works; a wrong token is refused', async () => {
    const ref = `${token.host}/${embedRegistry(upstream.host)}/team/app:1`;
    await assert.rejects(containerd.ctr(['images', 'pull', '--plain-http', ref]), /unauthorized|401/i);
    await containerd.ctr(['images', 'pull', '--plain-http', '--user', `node:${TOKEN}`, ref]);
    const url = `${token.url}/v2/${embedRegistry(upstream.host)}/team/app/manifests/1`;
    const ok = await request(url, { headers: { authorization: `Bearer ${TOKEN}` } });
    await ok.body.dump();
    assert.equal(ok.statusCode, 200);
    const bad = await request(url, { headers: { authorization: 'Bearer not-the-token' } });
    await bad.body.dump();
    assert.equal(bad.statusCode, 401);
  });

  it('a remembered refusal never shadows the right password, nor a remembered acceptance a wrong one', async () => {
    const line = (await execFileAsync(requireCommand('htpasswd'), ['-nbB', 'u', 'right'])).stdout.trim();
    const parsed = parseHtpasswd(line, 'users');
    assert.deepEqual(parsed.errors, []);
    const auth = htpasswdAuth(parsed.users);
    const basicOf = (pw: string) => `Basic ${Buffer.from(`u:${pw}`).toString('base64')}`;
    for (let round = 0; round < 2; round++) {
      assert.equal(auth.check(basicOf('wrong')), 'unknown user or wrong password');
      assert.equal(auth.check(basicOf('right')), undefined);
      assert.equal(
        auth.check(`Basic ${Buffer.from('nobody:right').toString('base64')}`),
        'unknown user or wrong password',
      );
    }
  });

  it('refuses htpasswd entries it cannot check, naming the line and the fix', () => {
    const parsed = parseHtpasswd(
      [
        `ok:$5$salt$${'a'.repeat(43)}`,
        'cut:$2y$05$abcdefghijklmnopqrstuu',
        'md5:$apr1$salt$abcdefghijklmnopqrstuv',
        `slow:$2y$14$${'a'.repeat(53)}`,
        `fine:$2b$10$${'a'.repeat(53)}`,
      ].join('\n'),
      'users',
    );
    assert.deepEqual([...parsed.users.keys()], ['ok', 'fine']);
    assert.match(parsed.errors[0] ?? '', /^users:2: .*htpasswd -B/);
    assert.match(parsed.errors[1] ?? '', /^users:3: .*MD5/);
    assert.match(parsed.errors[2] ?? '', /^users:4: bcrypt cost 14 .*htpasswd -B -C 10/);
  });
});
