// RegistryClient against real docker-registry instances (anonymous, htpasswd, token, TLS, blob
// redirects); only the slow and the rate-limited cases use loopback stubs.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { type ImageReference, parseReference } from '../../src/core/reference/index.ts';
import { RegistryClient, type RegistryClientOptions } from '../../src/registry/client.ts';
import type { RegistryCredential } from '../../src/registry/credentials.ts';
import { RegistryFailure, type RegistryResult } from '../../src/registry/errors.ts';
import { CredentialKeyring } from '../../src/registry/keyring.ts';
import { OCI_INDEX, OCI_MANIFEST } from '../../src/registry/media-types.ts';
import { startFaultyUpstream } from '../harness/faulty-upstream.ts';
import { buildImage, buildIndex, pushBlob, pushImage, pushIndex } from '../harness/images.ts';
import { type TempDir, tempDir } from '../harness/process.ts';
import { startRegistry, type TestRegistry } from '../harness/registry.ts';
import {
  type LoopbackStub,
  startDelayingProxy,
  startRateLimitedRegistry,
} from '../harness/registry-stubs.ts';
import { startTokenServer, type TokenServer } from '../harness/token-server.ts';

function ref(text: string): ImageReference {
  const parsed = parseReference(text);
  if (!parsed.ok) throw new Error(`bad test reference ${text}: ${parsed.error.message}`);
  return parsed.ref;
}

function basic(username: string, password: string, source = `test ${username}`): RegistryCredential {
  return { kind: 'basic', username, password, source };
}

function keyring(host: string, ...credentials: RegistryCredential[]): CredentialKeyring {
  return new CredentialKeyring(credentials.map((credential) => ({ key: host, credential })));
}

function plain(host: string, extra: Partial<RegistryClientOptions> = {}): RegistryClient {
  return new RegistryClient({ endpoints: { [host]: { scheme: 'http' } }, ...extra });
}

function errorCode<T>(result: RegistryResult<T>): string {
  return result.ok ? 'ok' : result.error.code;
}

describe('RegistryClient against an anonymous registry', () => {
  let registry: TestRegistry;
  let client: RegistryClient;
  const image = buildImage();
  const multi = buildIndex([
    { os: 'linux', architecture: 'amd64' },
    { os: 'linux', architecture: 'arm64' },
  ]);
  const dockerList = buildIndex(
    [
      { os: 'linux', architecture: 'amd64' },
      { os: 'linux', architecture: 's390x' },
    ],
    'docker',
  );
  const dockerImage = buildImage({ format: 'docker', files: { 'hello.txt': 'docker v2\n' } });

  before(async () => {
    registry = await startRegistry();
    await pushImage(registry, 'team/app', 'v1', image);
    await pushIndex(registry, 'team/multi', 'v1', multi);
    await pushIndex(registry, 'team/dockerlist', 'v1', dockerList);
    await pushImage(registry, 'team/dockerv2', 'v1', dockerImage);
    client = plain(registry.host);
  });
  after(async () => {
    await client.close();
    await registry.close();
  });

  it('HEADs a present manifest and answers its digest', async () => {
    const result = await client.headManifest(ref(`${registry.host}/team/app:v1`));
    assert.ok(result.ok, JSON.stringify(result));
    assert.equal(result.value.digest, image.manifest.digest);
    assert.equal(result.value.mediaType, OCI_MANIFEST);
    assert.equal(result.value.size, image.manifest.size);
  });

  it('answers NotFound for an absent tag and an absent repository', async () => {
    for (const text of [`${registry.host}/team/app:v2`, `${registry.host}/team/nothing:v1`]) {
      const result = await client.headManifest(ref(text));
      assert.equal(result.ok, false);
      if (result.ok) return;
      assert.deepEqual(
        [result.error.code, result.error.outcome, result.error.status],
        ['REG_NOT_FOUND', 'NotFound', 404],
      );
    }
  });

  it('finds a multi-arch OCI index (which a HEAD without the index type would miss)', async () => {
    const result = await client.headManifest(ref(`${registry.host}/team/multi:v1`));
    assert.ok(result.ok, JSON.stringify(result));
    assert.equal(result.value.digest, multi.index.digest);
    assert.equal(result.value.mediaType, OCI_INDEX);
    // The same HEAD accepting only single-image manifests: the registry says 404.
    const narrow = await request(`${registry.url}/v2/team/multi/manifests/v1`, {
      method: 'HEAD',
      headers: { accept: OCI_MANIFEST },
      dispatcher: registry.dispatcher,
    });
    await narrow.body.dump();
    assert.equal(narrow.statusCode, 404);
  });

  it('finds a Docker manifest list and a Docker v2 manifest', async () => {
    const list = await client.headManifest(ref(`${registry.host}/team/dockerlist:v1`));
    assert.ok(list.ok && list.value.digest === dockerList.index.digest, JSON.stringify(list));
    const single = await client.headManifest(ref(`${registry.host}/team/dockerv2:v1`));
    assert.ok(single.ok && single.value.digest === dockerImage.manifest.digest, JSON.stringify(single));
  });

  it('HEADs by digest', async () => {
    const present = await client.headManifest(ref(`${registry.host}/team/app@${image.manifest.digest}`));
    assert.ok(present.ok && present.value.digest === image.manifest.digest);
    const absent = await client.headManifest(ref(`${registry.host}/team/app@sha256:${'0'.repeat(64)}`));
    assert.equal(errorCode(absent), 'REG_NOT_FOUND');
  });

  it('GETs manifests by tag and by digest, verified', async () => {
    const byTag = await client.getManifest(ref(`${registry.host}/team/multi:v1`));
    assert.ok(byTag.ok, JSON.stringify(byTag));
    assert.deepEqual(byTag.value.bytes, multi.index.bytes);
    assert.equal(byTag.value.digest, multi.index.digest);
    assert.equal(byTag.value.mediaType, OCI_INDEX);
    const child = multi.images[1];
    assert.ok(child);
    const byDigest = await client.getManifest(ref(`${registry.host}/team/multi@${child.manifest.digest}`));
    assert.ok(byDigest.ok && byDigest.value.mediaType === OCI_MANIFEST);
    assert.deepEqual(byDigest.value.bytes, child.manifest.bytes);
  });

  it('refuses a manifest whose bytes do not match the digest asked for', async () => {
    const victim = buildImage({ files: { 'manifest-victim.txt': 'x\n' } });
    const digest = await pushImage(registry, 'team/corrupt', 'v1', victim);
    const hex = digest.slice('sha256:'.length);
    const file = join(registry.dir, 'data/docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data');
    // Still a valid manifest (one size changed), so only the digest check can catch it.
    const tampered = victim.manifest.bytes
      .toString('utf8')
      .replace(/"size":(\d+)/, (_, size: string) => `"size":${Number(size) + 1}`);
    await writeFile(file, tampered);
    const result = await client.getManifest(ref(`${registry.host}/team/corrupt@${digest}`));
    assert.equal(errorCode(result), 'REG_DIGEST_MISMATCH');
    assert.equal(result.ok ? '' : result.error.outcome, 'Invalid');
  });

  it('refuses a manifest larger than its bound', async () => {
    const small = plain(registry.host, { maxManifestBytes: 100 });
    const result = await small.getManifest(ref(`${registry.host}/team/app:v1`));
    await small.close();
    assert.equal(errorCode(result), 'REG_TOO_LARGE');
    assert.equal(result.ok ? '' : result.error.outcome, 'Invalid');
  });

  it('streams a blob, verified against its digest, and passes a Range through', async () => {
    const whole = await client.getBlob(registry.host, 'team/app', image.layer.digest);
    assert.ok(whole.ok, JSON.stringify(whole));
    const chunks: Buffer[] = [];
    // The chunks are views of a reused read buffer: a sink keeping them must copy.
    await whole.value.pipeTo((chunk) => {
      chunks.push(Buffer.from(chunk));
      return undefined;
    });
    assert.deepEqual(Buffer.concat(chunks), image.layer.bytes);
    assert.equal(whole.value.size, image.layer.size);
    assert.equal(whole.value.status, 200);

    const part = await client.getBlob(registry.host, 'team/app', image.layer.digest, {
      range: 'bytes=10-19',
    });
    assert.ok(part.ok, JSON.stringify(part));
    assert.equal(part.value.status, 206);
    assert.equal(part.value.contentRange, `bytes 10-19/${image.layer.size}`);
    const partChunks: Buffer[] = [];
    for await (const chunk of part.value.stream()) partChunks.push(chunk as Buffer);
    assert.deepEqual(Buffer.concat(partChunks), image.layer.bytes.subarray(10, 20));

    const missing = await client.getBlob(registry.host, 'team/app', `sha256:${'1'.repeat(64)}`);
    assert.equal(errorCode(missing), 'REG_NOT_FOUND');
    const badDigest = await client.getBlob(registry.host, 'team/app', 'md5:abc');
    assert.equal(errorCode(badDigest), 'REG_BAD_INPUT');
  });

  it('fetches and verifies blobs named by sha384 and sha512, as references may name them', async () => {
    const bytes = Buffer.from('a layer addressed by a longer hash\n');
    for (const algorithm of ['sha384', 'sha512'] as const) {
      const digest = `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}`;
      assert.ok(parseReference(`${registry.host}/team/long@${digest}`).ok, 'the reference parses');
      await pushBlob(registry, 'team/long', { digest, size: bytes.length, bytes, mediaType: 'x' });
      const got = await client.getBlob(registry.host, 'team/long', digest);
      assert.ok(got.ok, JSON.stringify(got));
      const chunks: Buffer[] = [];
      await got.value.pipeTo((chunk) => {
        chunks.push(Buffer.from(chunk));
        return undefined;
      });
      assert.deepEqual(Buffer.concat(chunks), bytes);
    }
  });

  it('asks whether a blob exists with HEAD, answering its size', async () => {
    const head = await client.headBlob(registry.host, 'team/app', image.layer.digest);
    assert.ok(head.ok, JSON.stringify(head));
    assert.deepEqual(head.value, { size: image.layer.size, digest: image.layer.digest });
    const missing = await client.headBlob(registry.host, 'team/app', `sha256:${'1'.repeat(64)}`);
    assert.equal(errorCode(missing), 'REG_NOT_FOUND');
    assert.equal(errorCode(await client.headBlob(registry.host, 'team/app', 'md5:abc')), 'REG_BAD_INPUT');
  });

  it('keeps connections alive across HEADs', async () => {
    const fresh = plain(registry.host);
    for (let i = 0; i < 20; i++) {
      const result = await fresh.headManifest(ref(`${registry.host}/team/keepalive:v${i}`));
      assert.equal(errorCode(result), 'REG_NOT_FOUND');
    }
    await fresh.close();
    const connections = await registry.clientAddresses({ method: 'HEAD', uri: '/v2/team/keepalive/' });
    assert.ok(connections.size <= 2, `20 HEADs used ${connections.size} connections`);
  });

  it('pings /v2/', async () => {
    const result = await client.ping(registry.host);
    assert.ok(result.ok);
    assert.deepEqual(
      [result.value.status, result.value.authRequired, result.value.apiVersion],
      [200, false, 'registry/2.0'],
    );
  });

  it('refuses plain HTTP to a host that is not loopback unless marked insecure', async () => {
    const strict = new RegistryClient({ defaults: { scheme: 'http' } });
    const result = await strict.headManifest(ref('registry.invalid/team/app:v1'));
    await strict.close();
    assert.equal(errorCode(result), 'REG_INSECURE_REFUSED');
  });

  it('answers Unreachable once the registry is stopped', async () => {
    const doomed = await startRegistry();
    const c = plain(doomed.host);
    assert.equal(errorCode(await c.headManifest(ref(`${doomed.host}/team/app:v1`))), 'REG_NOT_FOUND');
    await doomed.stop();
    const result = await c.headManifest(ref(`${doomed.host}/team/app:v1`));
    await c.close();
    await doomed.close();
    assert.equal(result.ok, false);
    if (result.ok) return;
    assert.deepEqual([result.error.code, result.error.outcome], ['REG_CONNECTION_FAILED', 'Unreachable']);
    assert.equal(result.error.cause, 'ECONNREFUSED');
  });
});

describe('RegistryClient with htpasswd Basic auth', () => {
  let registry: TestRegistry;
  const image = buildImage();

  before(async () => {
    registry = await startRegistry({ auth: { kind: 'htpasswd', users: { alice: 'wonderland' } } });
    await pushImage(registry, 'team/app', 'v1', image);
  });
  after(() => registry.close());

  it('answers the Basic challenge, then sends credentials up front', async () => {
    const client = plain(registry.host, {
      credentials: keyring(registry.host, basic('alice', 'wonderland')),
    });
    const first = await client.headManifest(ref(`${registry.host}/team/app:v1`));
    const second = await client.headManifest(ref(`${registry.host}/team/app:v1`));
    await client.close();
    assert.ok(first.ok && first.value.digest === image.manifest.digest, JSON.stringify(first));
    assert.ok(second.ok);
    const heads = await registry.requests({ method: 'HEAD', uri: '/v2/team/app/manifests/v1' });
    assert.deepEqual(
      heads.map((h) => h.status),
      [401, 200, 200],
    );
  });

  it('answers Unauthorized for wrong credentials and for none', async () => {
    for (const credentials of [keyring(registry.host, basic('alice', 'wrong')), undefined]) {
      const client = plain(registry.host, { credentials });
      const result = await client.headManifest(ref(`${registry.host}/team/app:v1`));
      await client.close();
      assert.equal(result.ok, false);
      if (result.ok) return;
      assert.deepEqual(
        [result.error.code, result.error.outcome, result.error.status],
        ['REG_UNAUTHORIZED', 'Unauthorized', 401],
      );
    }
  });

  it('tries the next matching credential when one is refused (rotation)', async () => {
    const credentials = keyring(registry.host, basic('alice', 'old-password'), basic('alice', 'wonderland'));
    const client = plain(registry.host, { credentials });
    const result = await client.headManifest(ref(`${registry.host}/team/app:v1`));
    await client.close();
    assert.ok(result.ok, JSON.stringify(result));
  });
});

describe('RegistryClient with token (Bearer) auth', () => {
  let dir: TempDir;
  let tokens: TokenServer;
  let registry: TestRegistry;
  let oldTokens: TokenServer;
  let oldRegistry: TestRegistry;
  const image = buildImage();

  before(async () => {
    dir = await tempDir('tokens');
    tokens = await startTokenServer(dir.path, {
      users: { bob: 'builder' },
      refreshTokens: { rt: 'bob' },
      expiresInSeconds: 120,
    });
    registry = await startRegistry({ auth: { kind: 'token', tokenServer: tokens } });
    await pushImage(registry, 'team/app', 'v1', image);
    oldTokens = await startTokenServer(dir.path, {
      users: { bob: 'builder' },
      acceptPost: false,
      anonymousPull: true,
    });
    oldRegistry = await startRegistry({ auth: { kind: 'token', tokenServer: oldTokens } });
    await pushImage(oldRegistry, 'team/app', 'v1', image);
  });
  after(async () => {
    await registry.close();
    await oldRegistry.close();
    await tokens.close();
    await oldTokens.close();
    await dir.remove();
  });

  it('gets a token with the OAuth2 POST form, caches it, and renews it after expires_in', async () => {
    let now = Date.now();
    const client = plain(registry.host, {
      credentials: keyring(registry.host, basic('bob', 'builder')),
      now: () => now,
    });
    const before = tokens.requests().length;
    for (let i = 0; i < 3; i++) {
      const result = await client.headManifest(ref(`${registry.host}/team/app:v1`));
      assert.ok(result.ok && result.value.digest === image.manifest.digest, JSON.stringify(result));
    }
    const issued = tokens.requests().slice(before);
    assert.deepEqual(
      issued.map((r) => [r.method, r.account, r.scopes.join(' '), r.status]),
      [['POST', 'bob', 'repository:team/app:pull', 200]],
    );
    assert.deepEqual(
      (await registry.requests({ method: 'HEAD', uri: '/v2/team/app/manifests/v1' })).map((r) => r.status),
      [401, 200, 200, 200],
    );
    now += 120_000; // past expires_in: the next request fetches a new token up front
    const renewed = await client.headManifest(ref(`${registry.host}/team/app:v1`));
    await client.close();
    assert.ok(renewed.ok);
    assert.equal(tokens.requests().length - before, 2);
  });

  it('answers Unauthorized when the token server refuses the credentials', async () => {
    const client = plain(registry.host, { credentials: keyring(registry.host, basic('bob', 'wrong')) });
    const result = await client.headManifest(ref(`${registry.host}/team/app:v1`));
    await client.close();
    assert.equal(result.ok, false);
    if (result.ok) return;
    assert.deepEqual([result.error.code, result.error.outcome], ['REG_AUTH_REFUSED', 'Unauthorized']);
    assert.equal(tokens.requests().at(-1)?.status, 401);
  });

  it('answers Unauthorized when an anonymous token grants nothing', async () => {
    const client = plain(registry.host);
    const result = await client.headManifest(ref(`${registry.host}/team/app:v1`));
    await client.close();
    assert.equal(errorCode(result), 'REG_UNAUTHORIZED');
    assert.equal(tokens.requests().at(-1)?.method, 'GET');
  });

  it('falls back to GET with Basic credentials when the token server has no POST form', async () => {
    const client = plain(oldRegistry.host, {
      credentials: keyring(oldRegistry.host, basic('bob', 'builder')),
    });
    const result = await client.headManifest(ref(`${oldRegistry.host}/team/app:v1`));
    await client.close();
    assert.ok(result.ok, JSON.stringify(result));
    assert.deepEqual(
      oldTokens.requests().map((r) => [r.method, r.status, r.account]),
      [
        ['POST', 404, undefined],
        ['GET', 200, 'bob'],
      ],
    );
  });

  it('pulls anonymously where the token server allows it', async () => {
    const client = plain(oldRegistry.host);
    const result = await client.headManifest(ref(`${oldRegistry.host}/team/app:v1`));
    await client.close();
    assert.ok(result.ok, JSON.stringify(result));
    assert.equal(oldTokens.requests().at(-1)?.account, undefined);
  });

  it('sends an identity token as an OAuth2 refresh_token grant', async () => {
    const identity = (token: string): RegistryCredential => ({
      kind: 'identityToken',
      username: undefined,
      token,
      source: 'test',
    });
    const client = plain(registry.host, { credentials: keyring(registry.host, identity('rt')) });
    const result = await client.headManifest(ref(`${registry.host}/team/app:v1`));
    await client.close();
    assert.ok(result.ok, JSON.stringify(result));
    const sent = tokens.requests().at(-1);
    assert.deepEqual(
      [sent?.method, sent?.status, sent?.account, sent?.form?.grant_type, sent?.form?.refresh_token],
      ['POST', 200, 'bob', 'refresh_token', 'rt'],
    );
    // A token the server does not know: the refusal comes back typed, with no fallback to GET.
    const stale = plain(registry.host, { credentials: keyring(registry.host, identity('revoked')) });
    const refused = await stale.headManifest(ref(`${registry.host}/team/app:v1`));
    await stale.close();
    assert.equal(errorCode(refused), 'REG_AUTH_REFUSED');
    assert.deepEqual(
      tokens
        .requests()
        .slice(-1)
        .map((r) => [r.method, r.status, r.form?.refresh_token]),
      [['POST', 401, 'revoked']],
    );
  });
});

describe('RegistryClient over TLS with a private CA', () => {
  let registry: TestRegistry;
  const image = buildImage();

  before(async () => {
    registry = await startRegistry({ tls: true });
    await pushImage(registry, 'team/app', 'v1', image);
  });
  after(() => registry.close());

  it('trusts the registry with its CA', async () => {
    const client = new RegistryClient({ endpoints: { [registry.host]: { caPem: registry.pki?.caPem } } });
    const result = await client.headManifest(ref(`${registry.host}/team/app:v1`));
    await client.close();
    assert.ok(result.ok && result.value.digest === image.manifest.digest, JSON.stringify(result));
  });

  it('streams a blob over TLS on the blob transport, trusting the same CA', async () => {
    const client = new RegistryClient({ endpoints: { [registry.host]: { caPem: registry.pki?.caPem } } });
    const result = await client.getBlob(registry.host, 'team/app', image.layer.digest);
    assert.ok(result.ok, JSON.stringify(result));
    const chunks: Buffer[] = [];
    for await (const chunk of result.value.stream()) chunks.push(chunk as Buffer);
    const untrusted = await new RegistryClient().getBlob(registry.host, 'team/app', image.layer.digest);
    await client.close();
    assert.deepEqual(Buffer.concat(chunks), image.layer.bytes);
    assert.equal(untrusted.ok ? '' : untrusted.error.code, 'REG_TLS_FAILED');
  });

  it('answers Unreachable (TLS) without the CA', async () => {
    const client = new RegistryClient();
    const result = await client.headManifest(ref(`${registry.host}/team/app:v1`));
    await client.close();
    assert.equal(result.ok, false);
    if (result.ok) return;
    assert.deepEqual([result.error.code, result.error.outcome], ['REG_TLS_FAILED', 'Unreachable']);
  });
});

describe('RegistryClient and blob redirects', () => {
  let registry: TestRegistry;
  const image = buildImage({ files: { 'big.txt': 'x'.repeat(100_000) } });

  before(async () => {
    registry = await startRegistry({
      auth: { kind: 'htpasswd', users: { alice: 'wonderland' } },
      blobRedirect: true,
    });
    await pushImage(registry, 'team/app', 'v1', image);
  });
  after(() => registry.close());

  it('follows the redirect to blob storage without sending Authorization there', async () => {
    const client = plain(registry.host, {
      credentials: keyring(registry.host, basic('alice', 'wonderland')),
    });
    const result = await client.getBlob(registry.host, 'team/app', image.layer.digest);
    assert.ok(result.ok, JSON.stringify(result));
    const chunks: Buffer[] = [];
    for await (const chunk of result.value.stream()) chunks.push(chunk as Buffer);
    await client.close();
    assert.deepEqual(Buffer.concat(chunks), image.layer.bytes);
    const gets = await registry.requests({ method: 'GET', uri: `/blobs/${image.layer.digest}` });
    assert.deepEqual(
      gets.map((g) => g.status),
      [401, 307],
    );
    const storage = registry.blobStorage?.requests() ?? [];
    assert.equal(storage.length, 1);
    assert.ok(storage[0]?.path.endsWith(`/${image.layer.digest.slice(7)}/data`));
    assert.equal(storage[0]?.authorization, undefined);
  });

  it('fails the stream when stored content does not match its digest', async () => {
    const victim = buildImage({ files: { 'victim.txt': 'original content\n' } });
    await pushImage(registry, 'team/victim', 'v1', victim);
    const hex = victim.layer.digest.slice('sha256:'.length);
    const file = join(registry.dir, 'data/docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data');
    const corrupted = Buffer.from(victim.layer.bytes);
    corrupted[corrupted.length - 1] = (corrupted.at(-1) ?? 0) ^ 0xff;
    await writeFile(file, corrupted);
    const client = plain(registry.host, {
      credentials: keyring(registry.host, basic('alice', 'wonderland')),
    });
    const result = await client.getBlob(registry.host, 'team/victim', victim.layer.digest);
    assert.ok(result.ok, JSON.stringify(result));
    let received = 0;
    await assert.rejects(
      result.value.pipeTo((chunk) => {
        received += chunk.length;
        return undefined;
      }),
      (err: unknown) => err instanceof RegistryFailure && err.code === 'REG_DIGEST_MISMATCH',
    );
    // Every byte was handed over before the verdict: the consumer decides what to do with them.
    assert.equal(received, corrupted.length);
    await client.close();
  });

  it('frees the request slot when a blob stream is abandoned', async () => {
    const client = new RegistryClient({
      endpoints: { [registry.host]: { scheme: 'http', maxConcurrent: 1, requestTimeoutMs: 2000 } },
      credentials: keyring(registry.host, basic('alice', 'wonderland')),
    });
    const first = await client.getBlob(registry.host, 'team/app', image.layer.digest);
    assert.ok(first.ok);
    first.value.cancel();
    const second = await client.headManifest(ref(`${registry.host}/team/app:v1`));
    await client.close();
    assert.ok(second.ok, JSON.stringify(second));
  });
});

describe('RegistryClient against slow and rate-limiting registries', () => {
  let registry: TestRegistry;
  let slow: LoopbackStub;
  let limited: LoopbackStub;

  before(async () => {
    registry = await startRegistry();
    await pushImage(registry, 'team/app', 'v1', buildImage());
    slow = await startDelayingProxy(registry.url, 400);
    limited = await startRateLimitedRegistry(7);
  });
  after(async () => {
    await slow.close();
    await limited.close();
    await registry.close();
  });

  it('gives up after its own request timeout', async () => {
    const client = new RegistryClient({
      endpoints: { [slow.host]: { scheme: 'http', requestTimeoutMs: 100 } },
    });
    const result = await client.headManifest(ref(`${slow.host}/team/app:v1`));
    await client.close();
    // REG_TIMEOUT is its own request timeout; a caller's deadline would be REG_DEADLINE.
    assert.equal(result.ok, false);
    if (result.ok) return;
    assert.deepEqual([result.error.code, result.error.outcome], ['REG_TIMEOUT', 'Timeout']);
  });

  it('stops waiting at the caller’s deadline', async () => {
    const client = plain(slow.host);
    const result = await client.headManifest(ref(`${slow.host}/team/app:v1`), {
      signal: AbortSignal.timeout(50),
    });
    assert.equal(errorCode(result), 'REG_DEADLINE');
    assert.equal(result.ok ? '' : result.error.outcome, 'Timeout');
    // Given time, the same registry answers.
    const patient = await client.headManifest(ref(`${slow.host}/team/app:v1`));
    await client.close();
    assert.ok(patient.ok, JSON.stringify(patient));
  });

  it('bounds the requests in flight per host', async () => {
    const client = new RegistryClient({ endpoints: { [slow.host]: { scheme: 'http', maxConcurrent: 2 } } });
    const results = await Promise.all(
      Array.from({ length: 6 }, (_, i) => client.headManifest(ref(`${slow.host}/team/app:v${i}`))),
    );
    await client.close();
    assert.equal(results.filter((r) => errorCode(r) === 'REG_NOT_FOUND').length, 5);
    assert.ok(slow.maxInFlight() <= 2, `saw ${slow.maxInFlight()} in flight`);
  });

  it('answers RateLimited with the Retry-After delay', async () => {
    const client = plain(limited.host);
    const result = await client.headManifest(ref(`${limited.host}/team/app:v1`));
    await client.close();
    assert.equal(result.ok, false);
    if (result.ok) return;
    assert.deepEqual(
      [result.error.code, result.error.outcome, result.error.status, result.error.retryAfterMs],
      ['REG_RATE_LIMITED', 'RateLimited', 429, 7000],
    );
  });
});

describe('RegistryClient.close and blob transfers', () => {
  it('ends a blob transfer under way (it runs on a connection of its own)', async () => {
    const image = buildImage({ files: { 'big.bin': 'x'.repeat(256 * 1024) } });
    const upstream = await startFaultyUpstream('team/app', 'v1', image, { [image.layer.digest]: 'stall' });
    const client = new RegistryClient({
      endpoints: { [upstream.host]: { scheme: 'http', requestTimeoutMs: 60_000 } },
    });
    try {
      const blob = await client.getBlob(upstream.host, 'team/app', image.layer.digest);
      assert.ok(blob.ok, JSON.stringify(blob));
      const reading = blob.value.pipeTo(() => undefined);
      await upstream.stalled();
      await client.close();
      await assert.rejects(reading, (err: unknown) => {
        assert.ok(err instanceof RegistryFailure);
        assert.equal(err.code, 'REG_CONNECTION_FAILED');
        return true;
      });
    } finally {
      await upstream.close();
    }
  });
});
