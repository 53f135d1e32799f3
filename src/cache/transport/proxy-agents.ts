// node:http agents for the S3 store's SDK client that open each connection direct or through a CONNECT
// tunnel (tunnel.ts), decided per host by proxyFor (Go's HTTPS_PROXY / HTTP_PROXY / NO_PROXY rules).
// The SDK's request handler takes agents, not proxies. Plain-HTTP endpoints are tunnelled too: the SDK
// writes origin-form requests, which a proxy only accepts inside a tunnel.
import type { AgentOptions, Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent, type AgentOptions as HttpsAgentOptions } from 'node:https';
import type { Socket } from 'node:net';
import { isIP } from 'node:net';
import type { Duplex } from 'node:stream';
import { type ConnectionOptions, connect as tlsConnect } from 'node:tls';
import { type ProxyConfig, proxyFor } from '../../core/proxy.ts';
import { http } from '../../net/node-http.ts';
import { authority, openTunnel } from './tunnel.ts';

type Callback = (err: Error | null, socket: Duplex) => void;
interface ConnectOptions {
  host?: string | null;
  port?: number | string | null;
  servername?: string;
}

/** The proxy for a connection to host:port over `scheme`, if any. */
function route(proxy: ProxyConfig, scheme: 'http' | 'https', options: ConnectOptions): URL | undefined {
  const host = options.host ?? 'localhost';
  const port = Number(options.port ?? (scheme === 'https' ? 443 : 80));
  return proxyFor(proxy, new URL(`${scheme}://${authority(host, port)}`));
}

export function proxiedAgents(
  proxy: ProxyConfig,
  options: AgentOptions & HttpsAgentOptions & { connectTimeoutMs: number },
): { httpAgent: HttpAgent; httpsAgent: HttpsAgent } {
  const { connectTimeoutMs, ...agentOptions } = options;
  class ProxiedHttpAgent extends http.Agent {
    override createConnection(opts: ConnectOptions, callback: Callback): Duplex | undefined {
      const via = route(proxy, 'http', opts);
      // biome-ignore lint/suspicious/noExplicitAny: node's Agent.createConnection is untyped here.
      if (via === undefined) return (http.Agent.prototype as any).createConnection.call(this, opts, callback);
      openTunnel({
        proxy: via,
        host: String(opts.host),
        port: Number(opts.port ?? 80),
        timeoutMs: connectTimeoutMs,
      }).then(
        (socket) => {
          socket.resume();
          callback(null, socket);
        },
        (err: Error) => callback(err, undefined as unknown as Socket),
      );
      return undefined;
    }
  }
  class ProxiedHttpsAgent extends HttpsAgent {
    override createConnection(
      opts: ConnectOptions & ConnectionOptions,
      callback: Callback,
    ): Duplex | undefined {
      const via = route(proxy, 'https', opts);
      // biome-ignore lint/suspicious/noExplicitAny: node's Agent.createConnection is untyped here.
      if (via === undefined) return (HttpsAgent.prototype as any).createConnection.call(this, opts, callback);
      const host = String(opts.host);
      openTunnel({ proxy: via, host, port: Number(opts.port ?? 443), timeoutMs: connectTimeoutMs }).then(
        (socket) => {
          const servername = opts.servername ?? (isIP(host) === 0 ? host : undefined);
          callback(null, tlsConnect({ ...opts, socket, ...(servername ? { servername } : {}) }));
        },
        (err: Error) => callback(err, undefined as unknown as Socket),
      );
      return undefined;
    }
  }
  return { httpAgent: new ProxiedHttpAgent(agentOptions), httpsAgent: new ProxiedHttpsAgent(agentOptions) };
}
