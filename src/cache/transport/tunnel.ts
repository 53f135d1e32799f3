// Reaching an upstream through an HTTP proxy, for the cache's own connections (the blob transport in
// wire.ts and the S3 store's agent): a connection to the proxy, and a CONNECT tunnel through it to
// host:port (RFC 9110 §9.3.6). Which requests take the proxy is proxyFor's decision (core/proxy.ts).
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { ProxyError, WireError } from '../errors.ts';

/** A CONNECT answer's head is small; a proxy that sends more is not answering CONNECT. */
const MAX_CONNECT_HEAD = 16 * 1024;

/** Basic credentials from the proxy URL's user info (http://user:pass@proxy:3128), if any. */
export function proxyAuthorization(proxy: URL): string | undefined {
  if (proxy.username === '' && proxy.password === '') return undefined;
  const user = `${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`;
  return `Basic ${Buffer.from(user).toString('base64')}`;
}

/** Where a proxy URL points: host (without brackets) and port (the scheme's default when absent). */
export function proxyAddress(proxy: URL): { host: string; port: number; tls: boolean } {
  const tls = proxy.protocol === 'https:';
  const host = proxy.hostname.startsWith('[') ? proxy.hostname.slice(1, -1) : proxy.hostname;
  return { host, port: Number(proxy.port || (tls ? 443 : 80)), tls };
}

/** A connection to the proxy itself (TLS for an https:// proxy, trusting the system roots). */
export function connectToProxy(
  proxy: URL,
  onread?: { buffer: Buffer; callback: (n: number) => boolean },
): Socket {
  const { host, port, tls } = proxyAddress(proxy);
  const extra = onread ? { onread } : {};
  return tls
    ? tlsConnect({ host, port, servername: host, ALPNProtocols: ['http/1.1'], ...extra })
    : netConnect({ host, port, ...extra });
}

/** "host:port" as a request target, IPv6 in brackets. */
export function authority(host: string, port: number): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/**
 * Opens a tunnel through `proxy` to host:port: resolves with the proxy connection once the proxy
 * answered 2xx to CONNECT; the bytes that follow are the upstream's. Fails with a ProxyError when
 * the proxy refuses, or with the socket's error; `timeoutMs` bounds connecting and the answer.
 */
export function openTunnel(options: {
  readonly proxy: URL;
  readonly host: string;
  readonly port: number;
  readonly timeoutMs: number;
  readonly signal?: AbortSignal | undefined;
}): Promise<Socket> {
  const { proxy, host, port, timeoutMs, signal } = options;
  return new Promise((resolve, reject) => {
    const socket = connectToProxy(proxy);
    const target = authority(host, port);
    let head = Buffer.alloc(0);
    let settled = false;
    const done = (err: Error | undefined): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      socket.off('data', onData);
      socket.off('error', done);
      socket.off('close', onClose);
      if (err === undefined) {
        resolve(socket);
        return;
      }
      socket.destroy();
      reject(err);
    };
    const timer = setTimeout(
      () => done(new WireError('WIRE_CONNECT_TIMEOUT', `no tunnel through the proxy within ${timeoutMs} ms`)),
      timeoutMs,
    );
    const onAbort = (): void => done(signal?.reason instanceof Error ? signal.reason : new Error('aborted'));
    const onClose = (): void =>
      done(
        new ProxyError(
          'WIRE_PROXY_PROTOCOL',
          `the proxy closed the connection before answering CONNECT ${target}`,
        ),
      );
    const onData = (chunk: Buffer): void => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) {
        if (head.length > MAX_CONNECT_HEAD)
          done(new ProxyError('WIRE_PROXY_PROTOCOL', `the proxy's answer to CONNECT is not HTTP`));
        return;
      }
      const status = /^HTTP\/1\.[01] (\d{3})/.exec(head.toString('latin1', 0, Math.min(end, 64)));
      if (status === null) {
        done(new ProxyError('WIRE_PROXY_PROTOCOL', `the proxy's answer to CONNECT is not HTTP`));
        return;
      }
      const code = Number(status[1]);
      if (code < 200 || code > 299) {
        const why = code === 407 ? ' (it wants credentials: put them in the proxy URL)' : '';
        done(
          new ProxyError('WIRE_PROXY_REFUSED', `the proxy answered ${code} to CONNECT ${target}${why}`, code),
        );
        return;
      }
      socket.pause();
      // Bytes past the answer already belong to the tunnel.
      const rest = head.subarray(end + 4);
      if (rest.length > 0) socket.unshift(rest);
      done(undefined);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    socket.on('error', done);
    socket.on('close', onClose);
    socket.once(proxyAddress(proxy).tls ? 'secureConnect' : 'connect', () => {
      const auth = proxyAuthorization(proxy);
      socket.write(
        `CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n${auth ? `Proxy-Authorization: ${auth}\r\n` : ''}\r\n`,
      );
      socket.on('data', onData);
    });
  });
}
