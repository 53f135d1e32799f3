// The test harness itself: images it builds are valid for a real pull client, the token server
// refuses bad credentials, and request counting sees exactly what was sent.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { buildImage, buildIndex, pushImage, pushIndex, sha256, tarArchive } from '../harness/images.ts';
import { execFileAsync, requireCommand, type TempDir, tempDir } from '../harness/process.ts';
import { startRegistry, type TestRegistry } from '../harness/registry.ts';
import { startTokenServer, type TokenServer } from '../harness/token-server.ts';

describe('test harness', () => {
  let dir: TempDir;
  let tokens: TokenServer;
  let registry: TestRegistry;

  before(async () => {
    dir = await tempDir('harness');
    tokens = await startTokenServer(dir.path, { users: { carol: 'pw' } });
    registry = await startRegistry({ auth: { kind: 'token', tokenServer: tokens } });
  });
  after(async () => {
    await registry.close();
    await tokens.close();
    await dir.remove();
  });

  it('builds reproducible layers', () => {
    assert.deepEqual(buildImage().layer.bytes, buildImage().layer.bytes);
    const tar = tarArchive({ 'a.txt': 'hello\n' });
    assert.equal(tar.length, 512 + 512 + 1024);
    assert.equal(tar.subarray(257, 262).toString(), 'ustar');
  });

  it('pushes images a real pull client accepts (skopeo copies every platform and verifies digests)', async () => {
    const skopeo = requireCommand('skopeo');
    const index = buildIndex([
      { os: 'linux', architecture: 'amd64' },
      { os: 'linux', architecture: 'arm64' },
    ]);
    const digest = await pushIndex(registry, 'harness/multi', 'v1', index);
    assert.equal(digest, index.index.digest);
    const layout = join(dir.path, 'layout');
    await execFileAsync(skopeo, [
      'copy',
      '--all',
      '--src-tls-verify=false',
      '--src-creds',
      'carol:pw',
      `docker://${registry.host}/harness/multi:v1`,
      `oci:${layout}:v1`,
    ]);
    const copied = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as {
      manifests: { digest: string }[];
    };
    assert.equal(copied.manifests[0]?.digest, index.index.digest);
    // The config's diff_ids are the uncompressed layer's digest, as unpacking clients check.
    const image = index.images[0];
    assert.ok(image);
    const config = JSON.parse(image.config.bytes.toString()) as { rootfs: { diff_ids: string[] } };
    const { gunzipSync } = await import('node:zlib');
    assert.equal(config.rootfs.diff_ids[0], sha256(gunzipSync(image.layer.bytes)));
  });

  it('the token server refuses bad credentials on GET and POST', async () => {
    const get = await request(`${tokens.realm}?service=${tokens.service}&scope=repository:x:pull`, {
      headers: { authorization: `Basic ${Buffer.from('carol:nope').toString('base64')}` },
    });
    await get.body.dump();
    const post = await request(tokens.realm, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'password',
        username: 'carol',
        password: 'nope',
        service: tokens.service,
      }).toString(),
    });
    await post.body.dump();
    assert.deepEqual([get.statusCode, post.statusCode], [401, 401]);
  });

  it('the token server signs RS256 tokens carrying the certificate in x5c', async () => {
    const res = await request(tokens.realm, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'password',
        username: 'carol',
        password: 'pw',
        service: tokens.service,
        scope: 'repository:team/app:pull,push',
      }).toString(),
    });
    const body = (await res.body.json()) as { access_token: string; expires_in: number };
    const [header, claims] = body.access_token
      .split('.')
      .slice(0, 2)
      .map((part) => JSON.parse(Buffer.from(part, 'base64url').toString('utf8')) as Record<string, unknown>);
    assert.equal(header?.['alg'], 'RS256');
    assert.ok(header && claims);
    assert.equal((header['x5c'] as string[]).length, 1);
    assert.equal(claims?.['aud'], tokens.service);
    assert.deepEqual(claims?.['access'], [
      { type: 'repository', name: 'team/app', actions: ['pull', 'push'] },
    ]);
  });

  it('counts exactly the requests the registry received', async () => {
    await pushImage(registry, 'harness/app', 'v1', buildImage());
    const auth = registry.authorization('harness/app');
    for (let i = 0; i < 3; i++) {
      const res = await request(`${registry.url}/v2/harness/app/manifests/v1`, {
        method: 'HEAD',
        headers: { authorization: auth ?? '', accept: 'application/vnd.oci.image.manifest.v1+json' },
        dispatcher: registry.dispatcher,
      });
      await res.body.dump();
    }
    assert.equal(await registry.count({ method: 'HEAD', uri: '/v2/harness/app/manifests/v1' }), 3);
    assert.equal(
      await registry.count({ method: 'HEAD', uri: '/v2/harness/app/manifests/v1', status: 200 }),
      3,
    );
    assert.equal(await registry.count({ method: 'PUT', uri: /^\/v2\/harness\/app\/manifests\/v1$/ }), 1);
  });
});
