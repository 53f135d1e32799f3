// Which HTTP proxy, if any, a request goes through: HTTPS_PROXY / HTTP_PROXY / NO_PROXY read the way Go's
// net/http (golang.org/x/net/http/httpproxy) reads them, so an operator's settings mean the same to
// pullmap as to containerd, kubelet and every Go peer. Pure: the CLI hands in the environment's values.

/** The three settings as given (environment variables or a config file), not yet checked. */
export interface ProxySettings {
  readonly httpsProxy?: string | undefined;
  readonly httpProxy?: string | undefined;
  readonly noProxy?: string | undefined;
}

/** A NO_PROXY entry, parsed. */
type NoProxyRule =
  | { readonly kind: 'all' }
  | { readonly kind: 'cidr'; readonly family: 4 | 6; readonly bits: bigint; readonly prefix: number }
  | { readonly kind: 'ip'; readonly family: 4 | 6; readonly bits: bigint; readonly port: string }
  /** `suffix` starts with a dot; `exact` also matches the name without it ("example.com"). */
  | { readonly kind: 'domain'; readonly suffix: string; readonly exact: boolean; readonly port: string };

/** Checked settings: the proxy for each scheme (undefined: direct) and the NO_PROXY rules. */
export interface ProxyConfig {
  readonly https: URL | undefined;
  readonly http: URL | undefined;
  readonly noProxy: readonly NoProxyRule[];
}

/**
 * The settings from environment variables, upper case first as Go reads them (HTTPS_PROXY, then
 * https_proxy). An empty value counts as unset.
 */
export function proxySettingsFromEnv(env: Readonly<Record<string, string | undefined>>): ProxySettings {
  const any = (...names: string[]): string | undefined => {
    for (const name of names) if (env[name]) return env[name];
    return undefined;
  };
  return {
    httpsProxy: any('HTTPS_PROXY', 'https_proxy'),
    httpProxy: any('HTTP_PROXY', 'http_proxy'),
    noProxy: any('NO_PROXY', 'no_proxy'),
  };
}

type ProxyParse = { ok: true; config: ProxyConfig } | { ok: false; errors: string[] };

/** Checks the settings; `names` says what to call each one in errors (the variable or config field). */
export function parseProxySettings(
  settings: ProxySettings,
  names: { httpsProxy: string; httpProxy: string } = { httpsProxy: 'HTTPS_PROXY', httpProxy: 'HTTP_PROXY' },
): ProxyParse {
  const errors: string[] = [];
  const https = parseProxyUrl(settings.httpsProxy, names.httpsProxy, errors);
  const http = parseProxyUrl(settings.httpProxy, names.httpProxy, errors);
  if (errors.length > 0) return { ok: false, errors };
  return { ok: true, config: { https, http, noProxy: parseNoProxy(settings.noProxy ?? '') } };
}

function parseProxyUrl(value: string | undefined, name: string, errors: string[]): URL | undefined {
  const text = value?.trim();
  if (!text) return undefined;
  // As Go: a value without a scheme ("proxy.corp:3128") is an http:// proxy.
  let url = tryUrl(text);
  if (url === undefined || url.host === '' || !/^[a-z][a-z0-9+.-]*:\/\//i.test(text))
    url = tryUrl(`http://${text}`);
  if (url === undefined || url.hostname === '') {
    errors.push(`${name}: ${JSON.stringify(text)} is not a proxy URL; write it as http://HOST:PORT`);
    return undefined;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    errors.push(
      `${name}: proxy scheme ${url.protocol.slice(0, -1)} is not supported; use an http:// or https:// proxy`,
    );
    return undefined;
  }
  if ((url.pathname !== '/' && url.pathname !== '') || url.search !== '' || url.hash !== '') {
    errors.push(`${name}: a proxy URL has no path or query; write it as http://HOST:PORT`);
    return undefined;
  }
  return url;
}

function tryUrl(text: string): URL | undefined {
  try {
    return new URL(text);
  } catch {
    return undefined;
  }
}

/** NO_PROXY's comma-separated entries; entries that parse as nothing are ignored (as Go does). */
function parseNoProxy(text: string): NoProxyRule[] {
  const rules: NoProxyRule[] = [];
  for (const raw of text.split(',')) {
    const entry = raw.trim().toLowerCase();
    if (entry === '*') return [{ kind: 'all' }];
    const rule = entry === '' ? undefined : noProxyRule(entry);
    if (rule) rules.push(rule);
  }
  return rules;
}

/** One NO_PROXY entry other than "*": a CIDR, an address, or a domain; undefined when it is none. */
function noProxyRule(entry: string): NoProxyRule | undefined {
  const slash = entry.indexOf('/');
  if (slash > 0) {
    const ip = parseIp(entry.slice(0, slash));
    const prefix = Number(entry.slice(slash + 1));
    const fits = ip && /^\d{1,3}$/.test(entry.slice(slash + 1)) && prefix <= (ip.family === 4 ? 32 : 128);
    return fits ? { kind: 'cidr', ...ip, prefix } : undefined;
  }
  const { host, port } = splitHostPort(entry);
  if (host === '') return undefined;
  const ip = parseIp(host);
  if (ip) return { kind: 'ip', ...ip, port };
  // "*.example.com" is ".example.com"; "example.com" matches itself and its subdomains.
  const name = host.startsWith('*.') ? host.slice(1) : host;
  return name.startsWith('.')
    ? { kind: 'domain', suffix: name, exact: false, port }
    : { kind: 'domain', suffix: `.${name}`, exact: true, port };
}

/** "host:port", "[v6]:port", "[v6]", a bare IPv6 address or a name; port '' when none. */
function splitHostPort(entry: string): { host: string; port: string } {
  const bracket = /^\[([^\]]*)\](?::(\d+))?$/.exec(entry);
  if (bracket) return { host: bracket[1] as string, port: bracket[2] ?? '' };
  const colon = entry.lastIndexOf(':');
  // More than one colon and no brackets: an IPv6 address without a port.
  if (colon < 0 || entry.indexOf(':') !== colon) return { host: entry, port: '' };
  return { host: entry.slice(0, colon), port: entry.slice(colon + 1) };
}

/** A literal IPv4 (dotted quad) or IPv6 address as a number; undefined for anything else. */
function parseIp(text: string): { family: 4 | 6; bits: bigint } | undefined {
  const v4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text);
  if (v4) {
    const parts = v4.slice(1).map(Number);
    if (parts.some((p) => p > 255)) return undefined;
    return { family: 4, bits: parts.reduce((n, p) => (n << 8n) | BigInt(p), 0n) };
  }
  if (!text.includes(':')) return undefined;
  // The URL parser normalises IPv6 (an embedded IPv4 tail becomes two hex groups).
  const url = tryUrl(`http://[${text}]/`);
  if (url === undefined) return undefined;
  const [head = '', tail] = url.hostname.slice(1, -1).split('::');
  const left = head === '' ? [] : head.split(':');
  const right = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = [...left, ...Array(8 - left.length - right.length).fill('0'), ...right];
  const bits = groups.reduce((n, g) => (n << 16n) | BigInt(Number.parseInt(g, 16)), 0n);
  // An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is that IPv4 address, as Go treats it.
  if (bits >> 32n === 0xffffn) return { family: 4, bits: bits & 0xffffffffn };
  return { family: 6, bits };
}

function isLoopbackIp(ip: { family: 4 | 6; bits: bigint }): boolean {
  return ip.family === 4 ? ip.bits >> 24n === 127n : ip.bits === 1n;
}

/** Where a request to `url` is sent: the proxy's URL, or undefined for a direct connection. */
export function proxyFor(config: ProxyConfig, url: URL): URL | undefined {
  const proxy = url.protocol === 'https:' ? config.https : url.protocol === 'http:' ? config.http : undefined;
  if (proxy === undefined) return undefined;
  const host = (url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname)
    .toLowerCase()
    .replace(/\.$/, '');
  const port = url.port || (url.protocol === 'https:' ? '443' : '80');
  // As Go: the loopback is never proxied (the name "localhost" and loopback addresses).
  if (host === 'localhost') return undefined;
  const ip = parseIp(host);
  if (ip && isLoopbackIp(ip)) return undefined;
  for (const rule of config.noProxy) if (bypasses(rule, host, port, ip)) return undefined;
  return proxy;
}

/** A rule without a port matches every port. */
const portFits = (rulePort: string, port: string): boolean => rulePort === '' || rulePort === port;

/** Whether a NO_PROXY rule sends a request to host:port (`ip` when the host is an address) directly. */
function bypasses(
  rule: NoProxyRule,
  host: string,
  port: string,
  ip: { family: 4 | 6; bits: bigint } | undefined,
): boolean {
  switch (rule.kind) {
    case 'all':
      return true;
    case 'cidr': {
      const shift = BigInt((rule.family === 4 ? 32 : 128) - rule.prefix);
      return ip !== undefined && ip.family === rule.family && ip.bits >> shift === rule.bits >> shift;
    }
    case 'ip':
      return (
        ip !== undefined && ip.family === rule.family && ip.bits === rule.bits && portFits(rule.port, port)
      );
    case 'domain':
      return (
        (host.endsWith(rule.suffix) || (rule.exact && host === rule.suffix.slice(1))) &&
        portFits(rule.port, port)
      );
  }
}

/** A proxy URL fit for logs: the credentials it may carry are left out. */
export function redactProxy(url: URL): string {
  return `${url.protocol}//${url.host}`;
}
