// kube/config.ts reads the kubeconfigs it understands exactly as client-node does, and hands every
// other one to client-node.
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { KubeConfig } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { KubeConfigError, loadKubeConfig } from '../../src/kube/config.ts';
import { type TempDir, tempDir } from '../harness/process.ts';

let dir: TempDir;
before(async () => {
  dir = await tempDir('kubeconfig');
});
after(() => dir.remove());

const CA = '-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n';
const CERT = '-----BEGIN CERTIFICATE-----\nCLIENT\n-----END CERTIFICATE-----\n';
const KEY = '-----BEGIN PRIVATE KEY-----\nKEY\n-----END PRIVATE KEY-----\n';
const b64 = (s: string) => Buffer.from(s).toString('base64');

let n = 0;
async function kubeconfig(
  cluster: Record<string, unknown>,
  user: Record<string, unknown>,
  extra: Record<string, unknown> = {},
): Promise<string> {
  const path = join(dir.path, `config-${++n}`);
  await writeFile(
    path,
    stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'c', cluster: { server: 'https://127.0.0.1:6443', ...cluster } }],
      users: [{ name: 'u', user }],
      contexts: [{ name: 'ctx', context: { cluster: 'c', user: 'u' } }],
      'current-context': 'ctx',
      ...extra,
    }),
  );
  return path;
}

type Applied = { headers?: Record<string, unknown>; ca?: unknown; cert?: unknown; key?: unknown };
const applied = async (kc: { applyToHTTPSOptions(o: object): Promise<void> }): Promise<Applied> => {
  const o: Applied = {};
  await kc.applyToHTTPSOptions(o);
  return {
    ...(o.headers?.Authorization !== undefined
      ? { headers: { Authorization: o.headers.Authorization } }
      : {}),
    ...(o.ca !== undefined ? { ca: String(o.ca) } : {}),
    ...(o.cert !== undefined ? { cert: String(o.cert) } : {}),
    ...(o.key !== undefined ? { key: String(o.key) } : {}),
  };
};
const clientNode = (path: string) => {
  const kc = new KubeConfig();
  kc.loadFromFile(path);
  return kc;
};

describe('kubeconfigs read here', () => {
  test('token and CA data: the same server, CA and Authorization header as client-node', async () => {
    const path = await kubeconfig({ 'certificate-authority-data': b64(CA) }, { token: 'abc' });
    const kc = await loadKubeConfig({ path, env: {} });
    assert.equal(kc.loadedBy, 'kubeconfig');
    assert.deepEqual(kc.getCurrentCluster(), { server: 'https://127.0.0.1:6443', skipTLSVerify: false });
    assert.deepEqual(await applied(kc), await applied(clientNode(path)));
    assert.deepEqual(await applied(kc), { headers: { Authorization: 'Bearer abc' }, ca: CA });
  });

  test('client certificate files relative to the kubeconfig, and insecure-skip-tls-verify', async () => {
    await mkdir(join(dir.path, 'pki'), { recursive: true });
    await writeFile(join(dir.path, 'pki', 'ca.crt'), CA);
    await writeFile(join(dir.path, 'pki', 'client.crt'), CERT);
    await writeFile(join(dir.path, 'pki', 'client.key'), KEY);
    const path = await kubeconfig(
      { 'certificate-authority': 'pki/ca.crt', 'insecure-skip-tls-verify': true },
      { 'client-certificate': 'pki/client.crt', 'client-key': join(dir.path, 'pki', 'client.key') },
    );
    const kc = await loadKubeConfig({ path, env: {} });
    assert.equal(kc.loadedBy, 'kubeconfig');
    assert.equal(kc.getCurrentCluster()?.skipTLSVerify, true);
    assert.deepEqual(await applied(kc), { ca: CA, cert: CERT, key: KEY });
    assert.deepEqual(await applied(kc), await applied(clientNode(path)));
  });

  test('a token file is re-read once a minute (rotated tokens are picked up)', async () => {
    const tokenPath = join(dir.path, 'token-file');
    await writeFile(tokenPath, 'first\n');
    const path = await kubeconfig({}, { tokenFile: tokenPath });
    let now = 0;
    const kc = await loadKubeConfig({ path, env: {}, now: () => now });
    assert.deepEqual((await applied(kc)).headers, { Authorization: 'Bearer first' });
    await writeFile(tokenPath, 'second\n');
    now = 59_000;
    assert.deepEqual((await applied(kc)).headers, { Authorization: 'Bearer first' });
    now = 61_000;
    assert.deepEqual((await applied(kc)).headers, { Authorization: 'Bearer second' });
  });

  test('$KUBECONFIG names the file when no path is given', async () => {
    const path = await kubeconfig({}, { token: 'from-env' });
    const kc = await loadKubeConfig({ env: { KUBECONFIG: path, HOME: dir.path } });
    assert.equal(kc.loadedBy, 'kubeconfig');
    assert.deepEqual(await applied(kc), { headers: { Authorization: 'Bearer from-env' } });
  });

  test('the service account in a pod', async () => {
    const sa = join(dir.path, 'serviceaccount');
    await mkdir(sa, { recursive: true });
    await writeFile(join(sa, 'token'), 'sa-token');
    await writeFile(join(sa, 'ca.crt'), CA);
    const env = { KUBERNETES_SERVICE_HOST: 'fd00::1', KUBERNETES_SERVICE_PORT: '443', HOME: sa };
    const kc = await loadKubeConfig({ env, serviceAccountDir: sa });
    assert.equal(kc.loadedBy, 'in-cluster');
    assert.equal(kc.getCurrentCluster()?.server, 'https://[fd00::1]:443');
    assert.deepEqual(await applied(kc), { headers: { Authorization: 'Bearer sa-token' }, ca: CA });
  });
});

describe('handed to client-node', () => {
  test('an exec credential plugin', async () => {
    const path = await kubeconfig(
      {},
      { exec: { apiVersion: 'client.authentication.k8s.io/v1', command: 'true', interactiveMode: 'Never' } },
    );
    assert.equal((await loadKubeConfig({ path, env: {} })).loadedBy, 'client-node');
  });

  test('a cluster behind a proxy, and several files in $KUBECONFIG', async () => {
    const proxied = await kubeconfig({ 'proxy-url': 'http://127.0.0.1:3128' }, { token: 't' });
    assert.equal((await loadKubeConfig({ path: proxied, env: {} })).loadedBy, 'client-node');
    const a = await kubeconfig({}, { token: 'a' });
    const b = await kubeconfig({}, { token: 'b' });
    assert.equal((await loadKubeConfig({ env: { KUBECONFIG: `${a}:${b}` } })).loadedBy, 'client-node');
  });
});

describe('errors name the problem', () => {
  test('no current-context, an unknown context, no such file', async () => {
    const noContext = await kubeconfig({}, { token: 't' }, { 'current-context': '' });
    await assert.rejects(loadKubeConfig({ path: noContext, env: {} }), (err: Error) => {
      assert.ok(err instanceof KubeConfigError);
      assert.match(err.message, /current-context is not set; run kubectl config use-context NAME/);
      return true;
    });
    const unknown = await kubeconfig({}, { token: 't' }, { 'current-context': 'other' });
    await assert.rejects(
      loadKubeConfig({ path: unknown, env: {} }),
      /current-context other names no entry in contexts/,
    );
    await assert.rejects(
      loadKubeConfig({ path: join(dir.path, 'missing'), env: {} }),
      /cannot read .*missing: ENOENT/,
    );
  });
});
