// The `pullmap cache` config file: declared once with the schema DSL, so every problem names its field.
// Pure: the caller reads the file and the files it names (CAs, credentials, htpasswd).

import { duration, patternList } from '../core/api/v1alpha1.ts';
import { parseRefresh, type Refresh, type RefreshRule } from '../core/cache/policy.ts';
import { loadYamlObjects } from '../core/config.ts';
import { parseDuration } from '../core/duration.ts';
import { type ListenAddress, parseListenAddress } from '../core/net.ts';
import { checkDomainAndPort } from '../core/reference/index.ts';
import {
  boolean,
  type FieldIssue,
  type Infer,
  integer,
  list,
  object,
  oneOf,
  optional,
  required,
  type Schema,
  show,
  string,
} from '../core/schema/dsl.ts';
import { checkTagPattern, compileTagPatterns } from '../core/tag-pattern.ts';

const pattern = (description: string) =>
  string({ description, minLength: 1, maxLength: 512, validate: checkTagPattern });

const path = (description: string) => string({ description, minLength: 1, maxLength: 4096 });

const UNITS: Readonly<Record<string, number>> = {
  '': 1,
  K: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
};

/** Bytes as Kubernetes quantities write them ("50Gi", "500M") or a plain number. */
export function parseSize(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isSafeInteger(value) && value > 0 ? value : undefined;
  if (typeof value !== 'string') return undefined;
  const m = /^(\d{1,15})(|K|M|G|T|Ki|Mi|Gi|Ti)$/.exec(value);
  if (!m) return undefined;
  const bytes = Number(m[1]) * (UNITS[m[2] as string] ?? 1);
  return Number.isSafeInteger(bytes) && bytes > 0 ? bytes : undefined;
}

const size: Schema<number> = {
  openApi: { description: 'A size in bytes: 50Gi, 500Mi, 2G or a plain number.' },
  check(value, at, issues) {
    const bytes = parseSize(value);
    if (bytes === undefined)
      issues.push({ path: at, message: `must be a size such as "50Gi" or "500M", not ${show(value)}` });
    return bytes;
  },
};

const hostPort = (description: string) =>
  string({
    description,
    example: 'docker.io',
    minLength: 1,
    maxLength: 255,
    validate: (s) => {
      if (s !== s.toLowerCase()) return 'must be lowercase, as image references write registry hosts';
      const bad = checkDomainAndPort(s);
      return bad === undefined ? undefined : `is not a registry host[:port] (${bad.message})`;
    },
  });

const upstream = object(
  {
    host: required(
      hostPort('The registry as image references name it: "docker.io", "quay.io", "127.0.0.1:5000".'),
    ),
    plainHttp: optional(boolean({ description: 'Speak plain HTTP (loopback hosts, or with insecure).' })),
    insecure: optional(boolean({ description: 'Allow plain HTTP to a host that is not loopback.' })),
    caFile: optional(path('PEM file of extra CAs trusted for this upstream.')),
    dockerConfig: optional(path('A docker config.json whose credentials are used for this upstream.')),
    username: optional(string({ description: 'User name for this upstream (with passwordFile).' })),
    passwordFile: optional(path('File holding the password for username.')),
    timeout: optional(duration('Bound on one upstream request until its headers (and idle gaps in a body).')),
    connectTimeout: optional(duration('TCP and TLS connect timeout.')),
    maxConcurrent: optional(integer({ description: 'Upstream requests in flight at once.', minimum: 1 })),
  },
  { description: 'An upstream registry the cache may fetch from. No other host is ever contacted.' },
);

const bucketName = string({
  description: 'The bucket (created beforehand; the cache never creates or deletes buckets).',
  example: 'pullmap-cache',
  minLength: 3,
  maxLength: 63,
  validate: (s) =>
    /^[a-z0-9][a-z0-9.-]*[a-z0-9]$/.test(s)
      ? undefined
      : 'must be a bucket name: lowercase letters, digits, "." and "-", starting and ending with a letter or digit',
});

const s3Storage = object(
  {
    bucket: required(bucketName),
    endpoint: optional(
      string({
        description:
          'URL of an S3-compatible service ("https://s3.example.net:9000"); without it, AWS S3 of the region.',
        example: 'https://s3.example.net:9000',
        minLength: 1,
        maxLength: 2048,
        validate: (s) => {
          let url: URL;
          try {
            url = new URL(s);
          } catch {
            return 'must be a URL such as "https://s3.example.net:9000"';
          }
          if (url.protocol !== 'http:' && url.protocol !== 'https:')
            return 'must be an http:// or https:// URL';
          if (url.pathname !== '/' || url.search !== '' || url.username !== '')
            return 'must be the service URL alone (no path, query or credentials); the bucket goes in bucket';
          return undefined;
        },
      }),
    ),
    region: optional(
      string({ description: 'Signing region.', example: 'us-east-1', minLength: 1 }),
      'us-east-1',
    ),
    prefix: optional(
      string({
        description:
          'Key prefix every object of the cache is stored under ("pullmap/"); empty: the bucket root.',
        maxLength: 512,
        validate: (s) =>
          s.startsWith('/') ? 'must not start with "/" (keys are relative to the bucket)' : undefined,
      }),
      '',
    ),
    forcePathStyle: optional(
      boolean({ description: 'Address the bucket as <endpoint>/<bucket> rather than <bucket>.<endpoint>.' }),
      false,
    ),
    credentialsFile: optional(
      path(
        'AWS shared credentials file (INI: aws_access_key_id, aws_secret_access_key); without it, the standard AWS chain (environment, shared config, web identity, instance metadata).',
      ),
    ),
    profile: optional(
      string({ description: 'Profile of credentialsFile to use.', example: 'default', minLength: 1 }),
    ),
    caFile: optional(path('PEM file of extra CAs trusted for the endpoint.')),
    timeout: optional(
      duration('Bound on one S3 request until its answer starts (and idle gaps in a body).'),
      '30s',
    ),
    connectTimeout: optional(duration('TCP and TLS connect timeout.'), '5s'),
    maxConcurrent: optional(integer({ description: 'S3 requests in flight at once.', minimum: 1 }), 32),
    serve: optional(
      oneOf(['stream', 'redirect'] as const, {
        description:
          'stream: blobs are read from S3 and sent by the cache; redirect: GETs of stored blobs are answered with a 307 to a presigned URL (clients must reach the endpoint).',
      }),
      'stream',
    ),
    redirectExpiry: optional(duration('Lifetime of a presigned blob URL (serve: redirect).'), '10m'),
    downloadLease: optional(
      duration(
        'Lifetime of the marker a replica writes while it downloads a blob (renewed every third of it): other replicas wait for that blob instead of fetching it too, and take over once it expires.',
      ),
      '30s',
    ),
    peerWait: optional(
      duration('The longest a replica waits for another replica’s download before fetching the blob itself.'),
      '5m',
    ),
    gcInterval: optional(
      duration(
        'How often each replica sums the bucket and collects above maxSize (other replicas write too).',
      ),
      '10m',
    ),
  },
  { description: 'Store in an S3-compatible bucket shared by any number of cache replicas.' },
);

const refreshPolicy = string({
  description: 'Always, Never or Interval(<duration>).',
  example: 'Interval(1h)',
  validate: (s) => {
    const r = parseRefresh(s);
    return r.ok ? undefined : r.message;
  },
});

const STALE_KINDS = [
  'unreachable',
  'timeout',
  'serverError',
  'rateLimited',
  'unauthorized',
  'notFound',
] as const;
export type StaleKind = (typeof STALE_KINDS)[number];

const schema = object(
  {
    listen: optional(
      string({ description: 'host:port to serve on.', example: '127.0.0.1:7439', minLength: 3 }),
      '127.0.0.1:7439',
    ),
    storage: required(
      object(
        {
          dir: optional(
            path(
              'Directory of the content-addressed store, kept across restarts; with s3, only the temp files of downloads in flight.',
            ),
          ),
          s3: optional(s3Storage),
          maxSize: optional(size),
          fsync: optional(boolean({ description: 'fsync each object before it becomes visible.' }), true),
          directIO: optional(
            boolean({
              description:
                'Write downloading blobs (to the disk store, or to the spool of the S3 store) with O_DIRECT, past the page cache, where the filesystem allows it: a blob streamed through once neither pushes other data out of the page cache nor waits for its writeback. Memory is the same either way (a 4-unit ring per download).',
            }),
            true,
          ),
        },
        { description: 'Where cached content lives.' },
      ),
    ),
    upstreams: required(
      list(upstream, { description: 'The only registries fetched from.', minItems: 1, maxItems: 256 }),
    ),
    refresh: optional(
      object(
        {
          default: optional(refreshPolicy, 'Interval(1h)'),
          rules: optional(
            list(
              object(
                {
                  repository: optional(
                    pattern('Regular expression (RE2 syntax) over "<host>/<repository>".'),
                  ),
                  tags: optional(
                    patternList(
                      list(pattern('Regular expression (RE2 syntax) over a tag.'), {
                        description: 'Tag filters.',
                        maxItems: 64,
                      }),
                    ),
                  ),
                  refresh: required(refreshPolicy),
                },
                { description: 'The first rule whose repository and tags match decides.' },
              ),
              { description: 'Refresh policies by repository and tag.', maxItems: 256 },
            ),
          ),
          timeout: optional(
            duration(
              'Bound on asking upstream about a cached tag when staleIfError.timeout lets the cached copy be served instead; shorter than the upstream timeout, so a hung upstream does not hold pulls up.',
            ),
            '5s',
          ),
        },
        { description: 'When cached tags are asked about upstream again. Digests never are.' },
      ),
    ),
    staleIfError: optional(
      object(
        Object.fromEntries(
          STALE_KINDS.map((k) => [
            k,
            optional(boolean({ description: `Serve a cached tag on ${k}.` }), true),
          ]),
        ) as Record<StaleKind, ReturnType<typeof optional<boolean>>>,
        { description: 'Which upstream failures a cached tag is served through (each true by default).' },
      ),
    ),
    clientAuth: optional(
      object(
        {
          htpasswd: optional(path('htpasswd file: bcrypt or SHA-crypt entries (htpasswd -B / -2 / -5).')),
          tokenFile: optional(path('File holding a static bearer token clients must send.')),
        },
        { description: 'Authentication of clients; none by default.' },
      ),
    ),
    listing: optional(
      boolean({
        description:
          'Answer /v2/_catalog and /store (pullmap cache ls) with what the cache holds. Clients are authorised as a whole (a client that may pull may pull every cached repository), so this reveals nothing a client cannot reach; false turns both off.',
      }),
      true,
    ),
    limits: optional(
      object(
        {
          maxConnections: optional(integer({ description: 'Client connections at once.', minimum: 1 }), 1024),
          requestTimeout: optional(
            duration('How long a client may take to send its request headers.'),
            '30s',
          ),
          idleTimeout: optional(
            duration(
              'How long a connection may go without any bytes moving either way (a client that stops reading is cut off); longer than the upstream timeouts.',
            ),
            '60s',
          ),
        },
        { description: 'Bounds on what clients can make the cache hold.' },
      ),
    ),
    log: optional(
      object(
        {
          level: optional(
            oneOf(['debug', 'info', 'warn', 'error'] as const, { description: 'Log level.' }),
            'info',
          ),
        },
        { description: 'Logging.' },
      ),
    ),
  },
  { description: 'pullmap cache configuration.' },
);

type Raw = Infer<typeof schema>;

export interface S3StorageConfig {
  readonly bucket: string;
  readonly endpoint: string | undefined;
  readonly region: string;
  /** "" or ending in "/". */
  readonly prefix: string;
  readonly forcePathStyle: boolean;
  readonly credentialsFile: string | undefined;
  readonly profile: string | undefined;
  readonly caFile: string | undefined;
  readonly timeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly maxConcurrent: number;
  readonly serve: 'stream' | 'redirect';
  readonly redirectExpiryMs: number;
  readonly downloadLeaseMs: number;
  readonly peerWaitMs: number;
  readonly gcIntervalMs: number;
}

const msOf = (text: string): number => (parseDuration(text) as { ms: number }).ms;

function s3Of(raw: NonNullable<Raw['storage']['s3']>): S3StorageConfig {
  const prefix = raw.prefix ?? '';
  return {
    bucket: raw.bucket,
    endpoint: raw.endpoint,
    region: raw.region ?? 'us-east-1',
    prefix: prefix === '' || prefix.endsWith('/') ? prefix : `${prefix}/`,
    forcePathStyle: raw.forcePathStyle ?? false,
    credentialsFile: raw.credentialsFile,
    profile: raw.profile,
    caFile: raw.caFile,
    timeoutMs: msOf(raw.timeout ?? '30s'),
    connectTimeoutMs: msOf(raw.connectTimeout ?? '5s'),
    maxConcurrent: raw.maxConcurrent ?? 32,
    serve: raw.serve ?? 'stream',
    redirectExpiryMs: msOf(raw.redirectExpiry ?? '10m'),
    downloadLeaseMs: msOf(raw.downloadLease ?? '30s'),
    peerWaitMs: msOf(raw.peerWait ?? '5m'),
    gcIntervalMs: msOf(raw.gcInterval ?? '10m'),
  };
}
export type UpstreamConfig = Infer<typeof upstream>;

export interface CacheConfig {
  readonly listen: { readonly host: string; readonly port: number };
  readonly storage: {
    /** With s3: where downloads in flight are spooled (undefined: the OS temp directory). */
    readonly dir: string | undefined;
    readonly s3: S3StorageConfig | undefined;
    readonly maxSize: number | undefined;
    readonly fsync: boolean;
    readonly directIO: boolean;
  };
  readonly upstreams: readonly UpstreamConfig[];
  readonly refreshDefault: Refresh;
  readonly refreshRules: readonly RefreshRule[];
  readonly staleIfError: Readonly<Record<StaleKind, boolean>>;
  /** refresh.timeout: how long a revalidation may take before the cached copy is served stale. */
  readonly revalidateTimeoutMs: number;
  readonly clientAuth: { readonly htpasswd?: string; readonly tokenFile?: string } | undefined;
  /** /v2/_catalog and /store answer (pullmap cache ls). */
  readonly listing: boolean;
  readonly maxConnections: number;
  readonly requestTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly logLevel: 'debug' | 'info' | 'warn' | 'error';
}

export type ConfigResult = { ok: true; config: CacheConfig } | { ok: false; errors: readonly string[] };

function refreshOf(text: string): Refresh {
  const r = parseRefresh(text);
  if (!r.ok) throw new Error(`unchecked refresh ${text}`);
  return r.refresh;
}

function parseListen(text: string, issues: FieldIssue[]): ListenAddress {
  const address = parseListenAddress(text);
  if (address) return address;
  issues.push({
    path: 'listen',
    message: `${show(text)} is not host:port; write it like "127.0.0.1:7439" or ":7439"`,
  });
  return { host: '', port: 0 };
}

/** Checks a config object (already parsed from YAML). */
export function checkCacheConfig(value: unknown, source: string): ConfigResult {
  const issues: FieldIssue[] = [];
  const raw: Raw | undefined = schema.check(value, '', issues);
  if (raw !== undefined) {
    const seen = new Map<string, number>();
    raw.upstreams.forEach((u, i) => {
      const before = seen.get(u.host);
      if (before !== undefined)
        issues.push({
          path: `upstreams[${i}].host`,
          message: `${u.host} is listed twice (also upstreams[${before}])`,
        });
      seen.set(u.host, i);
      if ((u.username === undefined) !== (u.passwordFile === undefined))
        issues.push({
          path: `upstreams[${i}]`,
          message: 'username and passwordFile go together; set both or neither',
        });
    });
    if (raw.storage.dir === undefined && raw.storage.s3 === undefined)
      issues.push({
        path: 'storage',
        message: 'set dir (a store on local disk) or s3 (a bucket shared by replicas)',
      });
    const s3 = raw.storage.s3;
    if (s3 !== undefined) {
      if (s3.profile !== undefined && s3.credentialsFile === undefined)
        issues.push({
          path: 'storage.s3.profile',
          message:
            'names a profile of credentialsFile; set credentialsFile too (or use AWS_PROFILE with the standard chain)',
        });
      const lease = msOf(s3.downloadLease ?? '30s');
      if (lease < 3_000)
        issues.push({
          path: 'storage.s3.downloadLease',
          message: 'must be at least 3s (it is renewed every third of it)',
        });
      const expiry = msOf(s3.redirectExpiry ?? '10m');
      if (expiry < 10_000 || expiry > 7 * 24 * 3_600_000)
        issues.push({
          path: 'storage.s3.redirectExpiry',
          message: 'must be between 10s and 7d (the longest a presigned URL may live)',
        });
    }
    if (
      raw.clientAuth &&
      (raw.clientAuth.htpasswd === undefined) === (raw.clientAuth.tokenFile === undefined)
    )
      issues.push({ path: 'clientAuth', message: 'set exactly one of htpasswd and tokenFile' });
  }
  const listen = raw ? parseListen(raw.listen ?? '', issues) : undefined;
  if (raw === undefined || listen === undefined || issues.length > 0)
    return { ok: false, errors: issues.map((i) => `${source}: ${i.path || '(top level)'}: ${i.message}`) };
  const rules = (raw.refresh?.rules ?? []).map((r) => ({
    repository: r.repository === undefined ? undefined : compileTagPatterns([r.repository]),
    tags: r.tags === undefined ? undefined : compileTagPatterns(r.tags),
    refresh: refreshOf(r.refresh),
  }));
  const stale = raw.staleIfError ?? {};
  return {
    ok: true,
    config: {
      listen,
      storage: {
        dir: raw.storage.dir,
        s3: raw.storage.s3 === undefined ? undefined : s3Of(raw.storage.s3),
        maxSize: raw.storage.maxSize,
        fsync: raw.storage.fsync ?? true,
        directIO: raw.storage.directIO ?? true,
      },
      upstreams: raw.upstreams,
      refreshDefault: refreshOf(raw.refresh?.default ?? 'Interval(1h)'),
      refreshRules: rules,
      staleIfError: Object.fromEntries(STALE_KINDS.map((k) => [k, stale[k] ?? true])) as Record<
        StaleKind,
        boolean
      >,
      revalidateTimeoutMs: (parseDuration(raw.refresh?.timeout ?? '5s') as { ms: number }).ms,
      clientAuth: raw.clientAuth,
      listing: raw.listing ?? true,
      maxConnections: raw.limits?.maxConnections ?? 1024,
      requestTimeoutMs: (parseDuration(raw.limits?.requestTimeout ?? '30s') as { ms: number }).ms,
      idleTimeoutMs: (parseDuration(raw.limits?.idleTimeout ?? '60s') as { ms: number }).ms,
      logLevel: raw.log?.level ?? 'info',
    },
  };
}

/** Parses the YAML text of a config file and checks it. */
export function parseCacheConfig(text: string, source: string): ConfigResult {
  const loaded = loadYamlObjects(text, source);
  if (loaded.errors.length > 0) return { ok: false, errors: loaded.errors };
  if (loaded.objects.length !== 1)
    return {
      ok: false,
      errors: [`${source}: expected one YAML document with the cache config, found ${loaded.objects.length}`],
    };
  return checkCacheConfig(loaded.objects[0]?.value, source);
}
