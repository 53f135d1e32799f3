// Hostile token realms (issue 21 §4): a realm that redirects the OAuth2 POST form (username and
// password) to another origin must not get the form re-sent there, nor the Basic credentials of the
// GET form. A real docker-registry in token mode; the realm redirects to a loopback server that
// records everything it receives.
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { parseReference } from '../../src/core/reference/index.ts';
import { RegistryClient } from '../../src/registry/client.ts';
import { CredentialKeyring } from '../../src/registry/keyring.ts';
import { buildImage, pushImage } from '../harness/images.ts';
import { type TempDir, tempDir } from '../harness/process.ts';
import { startRegistry, type TestRegistry } from '../harness/registry.ts';
import { startTokenServer, type TokenServer } from '../harness/token-server.ts';

interface Received {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
}

const PASSWORD = 'builder-s3cret';

describe('a token realm redirecting to another origin', () => {
  let dir: TempDir;
  let tokens: TokenServer;
  let registry: TestRegistry;
  const received: Received[] = [];
  const recorder = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString('utf8')));
    req.on('end', () => {
      received.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not_found"}');
    });
  });
  const redirect: { status: 301 | 302 | 307 | 308; to: string } = { status: 307, to: '' };

  before(async () => {
    await new Promise<void>((resolve) => recorder.listen(0, '127.0.0.1', resolve));
    redirect.to = `http://127.0.0.1:${(recorder.address() as AddressInfo).port}`;
    dir = await tempDir('token-redirect');
    tokens = await startTokenServer(dir.path, { users: { bob: PASSWORD }, redirect });
    registry = await startRegistry({ auth: { kind: 'token', tokenServer: tokens } });
    await pushImage(registry, 'team/app', 'v1', buildImage());
  });
  after(async () => {
    await registry.close();
    await tokens.close();
    recorder.closeAllConnections();
    await new Promise((resolve) => recorder.close(resolve));
    await dir.remove();
  });

  for (const status of [307, 308, 301, 302] as const) {
    it(`never sends the password to the other origin (${status})`, async () => {
      redirect.status = status;
      received.length = 0;
      const client = new RegistryClient({
        endpoints: { [registry.host]: { scheme: 'http' } },
        credentials: new CredentialKeyring([
          {
            key: registry.host,
            credential: { kind: 'basic', username: 'bob', password: PASSWORD, source: 'test' },
          },
        ]),
      });
      const parsed = parseReference(`${registry.host}/team/app:v1`);
      assert.ok(parsed.ok);
      const result = await client.headManifest(parsed.ref);
      await client.close();
      assert.equal(result.ok, false, 'no token came from the realm, so the registry refuses');
      const basic = Buffer.from(`bob:${PASSWORD}`).toString('base64');
      for (const r of received) {
        const seen = JSON.stringify(r);
        assert.ok(!seen.includes(PASSWORD) && !seen.includes(basic), `the other origin got ${seen}`);
        assert.equal(r.headers.authorization, undefined);
        assert.equal(r.body, '');
      }
      if (status === 307 || status === 308) {
        // The form would be re-sent as it is: refused with a typed error, nothing reaches the other origin.
        assert.equal(result.ok ? '' : result.error.code, 'REG_INSECURE_REFUSED');
        assert.deepEqual(received, []);
      } else {
        // 301/302 turn the POST into a bodiless GET; the GET form's Basic header stays behind.
        assert.ok(received.length > 0 && received.every((r) => r.method === 'GET'));
      }
    });
  }
});
