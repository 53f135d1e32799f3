// An undici dispatcher that sends each request direct or through the configured HTTP proxy, decided per
// origin by proxyFor (Go's rules). undici's own EnvHttpProxyAgent reads process.env itself and knows
// neither CIDR entries nor the loopback exception, so it would not mean what a Go peer means.
import { type ProxyConfig, proxyFor } from '../core/proxy.ts';
import { Agent, Dispatcher, ProxyAgent } from '../net/undici.ts';

interface RoutedAgentOptions {
  readonly proxy: ProxyConfig;
  readonly connections: number;
  readonly keepAliveTimeout: number;
  readonly connectTimeoutMs: number;
  /** Certificates trusted for the registry (not for the proxy, which uses the system roots). */
  readonly ca: readonly string[] | undefined;
  readonly maxOrigins: number;
}

/** Whether any request could be proxied: without a proxy a plain Agent is used. */
export function hasProxy(config: ProxyConfig | undefined): config is ProxyConfig {
  return config !== undefined && (config.https !== undefined || config.http !== undefined);
}

export class RoutedAgent extends Dispatcher {
  readonly #options: RoutedAgentOptions;
  readonly #direct: Agent;
  /** One ProxyAgent per proxy URL (at most two: HTTPS_PROXY and HTTP_PROXY). */
  readonly #proxies = new Map<string, ProxyAgent>();

  constructor(options: RoutedAgentOptions) {
    super();
    this.#options = options;
    const tls = options.ca ? { ca: [...options.ca] } : {};
    this.#direct = new Agent({
      connections: options.connections,
      keepAliveTimeout: options.keepAliveTimeout,
      connect: { timeout: options.connectTimeoutMs, ...tls },
      maxOrigins: options.maxOrigins,
    });
  }

  /** The dispatcher for an origin: direct, or the proxy's. */
  #route(origin: string): Dispatcher {
    const proxy = proxyFor(this.#options.proxy, new URL(origin));
    if (proxy === undefined) return this.#direct;
    let agent = this.#proxies.get(proxy.href);
    if (agent === undefined) {
      const tls = this.#options.ca ? { ca: [...this.#options.ca] } : {};
      agent = new ProxyAgent({
        uri: proxy.href,
        connections: this.#options.connections,
        keepAliveTimeout: this.#options.keepAliveTimeout,
        connectTimeout: this.#options.connectTimeoutMs,
        requestTls: { timeout: this.#options.connectTimeoutMs, ...tls },
        // Plain-HTTP upstreams in absolute form, as Go sends them; HTTPS through CONNECT.
        proxyTunnel: false,
      });
      this.#proxies.set(proxy.href, agent);
    }
    return agent;
  }

  override dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    return this.#route(String(options.origin)).dispatch(options, handler);
  }

  #all(): Dispatcher[] {
    return [this.#direct, ...this.#proxies.values()];
  }

  override close(): Promise<void>;
  override close(callback: () => void): void;
  override close(callback?: () => void): Promise<void> | undefined {
    const done = Promise.all(this.#all().map((d) => d.close())).then(() => {});
    if (callback === undefined) return done;
    void done.then(callback);
    return undefined;
  }

  override destroy(): Promise<void>;
  override destroy(err: Error | null): Promise<void>;
  override destroy(callback: () => void): void;
  override destroy(err: Error | null, callback: () => void): void;
  override destroy(first?: Error | null | (() => void), second?: () => void): Promise<void> | undefined {
    const err = typeof first === 'function' ? null : (first ?? null);
    const callback = typeof first === 'function' ? first : second;
    const done = Promise.all(this.#all().map((d) => d.destroy(err))).then(() => {});
    if (callback === undefined) return done;
    void done.then(callback);
    return undefined;
  }
}
