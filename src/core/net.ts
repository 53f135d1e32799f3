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

/**
 * "host:port", "[ipv6]:port", "host", "[ipv6]" or a bare IPv6 address → the host without brackets
 * and the port ("" when none). Lenient like reading, not validating: it never fails.
 */
export function splitHostPort(hostPort: string): { host: string; port: string } {
  if (hostPort.startsWith('[')) {
    const close = hostPort.indexOf(']');
    if (close === -1) return { host: hostPort, port: '' };
    return {
      host: hostPort.slice(1, close),
      port: hostPort[close + 1] === ':' ? hostPort.slice(close + 2) : '',
    };
  }
  const colon = hostPort.indexOf(':');
  // Two colons or more without brackets: a bare IPv6 address, all host.
  if (colon === -1 || colon !== hostPort.lastIndexOf(':')) return { host: hostPort, port: '' };
  return { host: hostPort.slice(0, colon), port: hostPort.slice(colon + 1) };
}

/** Whether a host name (no port, no brackets) is this machine's loopback. */
export function isLoopbackName(name: string): boolean {
  const n = name.toLowerCase();
  return n === 'localhost' || n.endsWith('.localhost') || n === '::1' || /^127\.\d+\.\d+\.\d+$/.test(n);
}
