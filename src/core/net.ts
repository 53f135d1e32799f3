// Host names and listen addresses, shared by the commands that serve (webhook, cache) and the registry
// client.

export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

/** "HOST:PORT", "[IPv6]:PORT" or ":PORT" (all interfaces); undefined when it is none of these. */
export function parseListenAddress(text: string): ListenAddress | undefined {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(text);
  const port = Number(m?.[3]);
  if (!m || port > 65535) return undefined;
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

/** Whether a host name (no port, no brackets) is this machine's loopback. */
export function isLoopbackName(name: string): boolean {
  const n = name.toLowerCase();
  return n === 'localhost' || n.endsWith('.localhost') || n === '::1' || /^127\.\d+\.\d+\.\d+$/.test(n);
}
