// `pullmap cache --config FILE`: runs the pull-through cache until SIGTERM or SIGINT.
import type { ListenAddress } from '../core/net.ts';
import { proxySettingsFromEnv, redactProxy } from '../core/proxy.ts';
import { createLogger } from '../observe/log.ts';
import { UsageError } from './errors.ts';
import { proxyConfigOf } from './existence.ts';
import type { CliIO } from './io.ts';
import { DEFAULT_MAX_INPUT_BYTES, readInput } from './maps.ts';

interface CacheFlags {
  readonly config: string;
  /** Overrides the config's listen address. */
  readonly listen: ListenAddress | undefined;
  readonly maxInputBytes: number;
}

/** Runs until `stopped` resolves (SIGTERM or SIGINT in the real command), then closes the cache. */
export async function cache(flags: CacheFlags, io: CliIO, stopped: Promise<string>): Promise<number> {
  // Loaded here, not at start-up: other commands do not pay for the server and the registry client.
  const { CacheSetupError, parseCacheConfig, startCache } = await import('../cache/index.ts');
  const text = await readInput(flags.config, io.stdin, flags.maxInputBytes);
  const parsed = parseCacheConfig(text, flags.config);
  if (!parsed.ok) throw new UsageError(`invalid cache config:\n  ${parsed.errors.join('\n  ')}`);
  const config = flags.listen ? { ...parsed.config, listen: flags.listen } : parsed.config;
  const proxy = proxyConfigOf(proxySettingsFromEnv(io.env));
  const log = createLogger({ level: config.logLevel, out: io.stderr, base: { component: 'cache' } });
  let running: Awaited<ReturnType<typeof startCache>>;
  try {
    running = await startCache(config, log, { proxy });
  } catch (err) {
    if (err instanceof CacheSetupError) throw new UsageError(err.message, { cause: err });
    throw err;
  }
  log.info('serving', {
    address: running.address,
    upstreams: config.upstreams.map((u) => u.host),
    store: config.storage.dir,
    storedBytes: running.store.usedBytes,
    ...(proxy.https ? { httpsProxy: redactProxy(proxy.https) } : {}),
    ...(proxy.http ? { httpProxy: redactProxy(proxy.http) } : {}),
  });
  log.info('stopping', { signal: await stopped });
  await running.close();
  return 0;
}

interface CacheLsFlags {
  /** The cache's config: its listen address (and token, with clientAuth.tokenFile). */
  readonly config: string | undefined;
  /** Or the cache's URL; credentials in it (http://user:password@host:port) are sent as Basic. */
  readonly url: string | undefined;
  readonly output: string | undefined;
}

interface Listing {
  readonly usedBytes: number;
  readonly maxSize?: number | null;
  readonly blobs: number;
  readonly manifests: number;
  readonly storeFull: boolean;
  readonly tags: readonly {
    name: string;
    tag: string;
    digest: string;
    bytes: number;
    lastUse: number;
  }[];
}

const bytes = (n: number): string => {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  for (; n >= 1024 && i < units.length - 1; i++) n /= 1024;
  return i === 0 ? `${n} B` : `${n.toFixed(1)} ${units[i]}`;
};

/** Where a cache answers, and the Authorization header it wants (if any). */
interface CacheEndpoint {
  base: URL;
  headers: Record<string, string>;
}

/** The loopback address that reaches a listen address ("0.0.0.0" is reached on 127.0.0.1). */
function reachableHost(host: string): string {
  if (host === '0.0.0.0') return '127.0.0.1';
  if (host === '::') return '[::1]';
  return host.includes(':') ? `[${host}]` : host;
}

/** The endpoint a cache config listens on, with its client token when it asks for one. */
async function endpointFromConfig(file: string, io: CliIO): Promise<CacheEndpoint> {
  const { parseCacheConfig } = await import('../cache/config.ts');
  const parsed = parseCacheConfig(await readInput(file, io.stdin, DEFAULT_MAX_INPUT_BYTES), file);
  if (!parsed.ok) throw new UsageError(`invalid cache config:\n  ${parsed.errors.join('\n  ')}`);
  const { host, port } = parsed.config.listen;
  const base = new URL(`http://${reachableHost(host)}:${port}`);
  const headers: Record<string, string> = {};
  const tokenFile = parsed.config.clientAuth?.tokenFile;
  if (tokenFile !== undefined)
    headers['authorization'] =
      `Bearer ${(await readInput(tokenFile, io.stdin, DEFAULT_MAX_INPUT_BYTES)).trim()}`;
  return { base, headers };
}

/** The endpoint --url names; user:password in it becomes a Basic Authorization header. */
function endpointFromUrl(url: string): CacheEndpoint {
  let base: URL;
  try {
    base = new URL(url);
  } catch {
    throw new UsageError(`cache ls: --url ${JSON.stringify(url)} is not a URL (http://HOST:PORT)`);
  }
  const headers: Record<string, string> = {};
  if (base.username !== '') {
    const user = `${decodeURIComponent(base.username)}:${decodeURIComponent(base.password)}`;
    headers['authorization'] = `Basic ${Buffer.from(user).toString('base64')}`;
    base.username = '';
    base.password = '';
  }
  return { base, headers };
}

/** The cache's /store listing, or undefined once the failure is reported on stderr. */
async function fetchListing({ base, headers }: CacheEndpoint, io: CliIO): Promise<Listing | undefined> {
  try {
    const res = await fetch(new URL('/store', base), { headers, signal: AbortSignal.timeout(60_000) });
    const text = await res.text();
    if (!res.ok) {
      io.stderr.write(`pullmap: cache ls: ${base.origin} answered ${res.status}: ${text.trim()}\n`);
      return undefined;
    }
    return JSON.parse(text) as Listing;
  } catch (err) {
    io.stderr.write(`pullmap: cache ls: cannot read ${base.origin}/store: ${(err as Error).message}\n`);
    return undefined;
  }
}

/** The listing for a person: one line on the store, then a table of tags. */
function printListing(listing: Listing, io: CliIO): void {
  const cap =
    typeof listing.maxSize !== 'number'
      ? 'no maxSize'
      : `of maxSize ${bytes(listing.maxSize)} (${((100 * listing.usedBytes) / listing.maxSize).toFixed(1)} %)`;
  io.stdout.write(
    `store: ${bytes(listing.usedBytes)} used ${cap}; ${listing.blobs} blobs, ${listing.manifests} manifests${listing.storeFull ? '; FULL: blobs stream through without being kept' : ''}\n`,
  );
  const rows = [
    ['REPOSITORY', 'TAG', 'DIGEST', 'SIZE', 'LAST USE'],
    ...listing.tags.map((t) => [
      t.name,
      t.tag,
      t.digest.slice(0, 19),
      bytes(t.bytes),
      new Date(t.lastUse).toISOString().slice(0, 19).replace('T', ' '),
    ]),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] as string).length)));
  for (const r of rows)
    io.stdout.write(
      `${r
        .map((c, i) => c.padEnd(widths[i]!))
        .join('  ')
        .trimEnd()}\n`,
    );
}

/** `pullmap cache ls`: what a running cache holds, read from its /store endpoint. */
export async function cacheLs(flags: CacheLsFlags, io: CliIO): Promise<number> {
  if ((flags.config === undefined) === (flags.url === undefined))
    throw new UsageError('cache ls needs one of --config FILE and --url URL');
  if (flags.output !== undefined && flags.output !== 'json')
    throw new UsageError(`cache ls: -o ${flags.output}: the one output format is json`);
  const endpoint =
    flags.config !== undefined
      ? await endpointFromConfig(flags.config, io)
      : endpointFromUrl(flags.url as string);
  const listing = await fetchListing(endpoint, io);
  if (listing === undefined) return 1;
  if (flags.output === 'json') io.stdout.write(`${JSON.stringify(listing, null, 2)}\n`);
  else printListing(listing, io);
  return 0;
}
