// kube/client.ts's failures, against loopback peers that produce them: a closed port, a server that
// accepts and never answers, a server that answers too much. (Successful requests and watches run
// against a real kube-apiserver in test/e2e/controller.test.ts.)
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { after, describe, test } from 'node:test';
import { KubeApiError, kubeClient } from '../../src/kube/client.ts';
import type { KubeCredentials } from '../../src/kube/config.ts';

const credentials = (server: string): KubeCredentials => ({
  getCurrentCluster: () => ({ server }),
  applyToHTTPSOptions: async () => {},
});

/** A loopback TCP server whose connections get `answer` (nothing at all when undefined). */
async function peer(answer?: (socket: Socket) => void): Promise<{ url: string; server: Server }> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    answer?.(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  server.on('close', () => {
    for (const s of sockets) s.destroy();
  });
  return { url: `http://127.0.0.1:${port}`, server };
}

const failure = async (p: Promise<unknown>): Promise<KubeApiError> => {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof KubeApiError, String(err));
    return err;
  }
  assert.fail('the request succeeded');
};

describe('kube client failures', { timeout: 10_000 }, () => {
  const servers: Server[] = [];
  after(() => {
    for (const s of servers) s.close();
  });

  test('a closed port is KUBE_UNREACHABLE, named by the connection error', async () => {
    const { url, server } = await peer();
    await new Promise((resolve) => server.close(resolve));
    const client = kubeClient(credentials(url));
    const err = await failure(client.request('GET', '/version'));
    assert.equal(err.code, 'KUBE_UNREACHABLE');
    assert.match(err.message, /^GET \/version: ECONNREFUSED$/);
    await client.close();
  });

  test('a server that never answers is KUBE_TIMEOUT at the request deadline', async () => {
    const { url, server } = await peer();
    servers.push(server);
    const client = kubeClient(credentials(url));
    const err = await failure(client.request('GET', '/version', { timeoutMs: 200 }));
    assert.equal(err.code, 'KUBE_TIMEOUT');
    await client.close();
  });

  test('an answer over the size cap is KUBE_TOO_LARGE; an error status is KUBE_HTTP with its Status', async () => {
    const big = 'x'.repeat(4096);
    const { url, server } = await peer((socket) =>
      socket.once('data', (head) => {
        const body = head.toString().startsWith('GET /big')
          ? JSON.stringify({ items: [big] })
          : JSON.stringify({ kind: 'Status', reason: 'NotFound', message: 'namespaces "nope" not found' });
        const status = head.toString().startsWith('GET /big') ? '200 OK' : '404 Not Found';
        socket.end(
          `HTTP/1.1 ${status}\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`,
        );
      }),
    );
    servers.push(server);
    const client = kubeClient(credentials(url), { maxBodyBytes: 1024 });
    const large = await failure(client.request('GET', '/big'));
    assert.equal(large.code, 'KUBE_TOO_LARGE');
    const missing = await failure(client.request('GET', '/api/v1/namespaces/nope'));
    assert.equal(missing.code, 'KUBE_HTTP');
    assert.equal(missing.status, 404);
    assert.equal(missing.reason, 'NotFound');
    await client.close();
  });
});
