// A real Debian docker-registry on 127.0.0.1 (kernel-chosen port) in a temporary directory, optionally
// with htpasswd Basic auth, token auth, TLS from a throwaway CA, and delete enabled. Requests it
// received are counted from its access log, read as it is written.
import { createReadStream } from 'node:fs';
import { stat, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, resolve, sep } from 'node:path';
import { Agent, type Dispatcher, request } from 'undici';
import { type Daemon, execFileAsync, requireCommand, startDaemon, type TempDir, tempDir } from './process.ts';
import { makePki, type TestPki } from './tls.ts';
import type { TokenServer } from './token-server.ts';

export type RegistryAuth =
  | { readonly kind: 'htpasswd'; readonly users: Readonly<Record<string, string>> }
  | { readonly kind: 'token'; readonly tokenServer: TokenServer };

export interface RegistryOptions {
  readonly auth?: RegistryAuth;
  /** Serve HTTPS with a certificate from a fresh private CA (see `pki`). */
  readonly tls?: boolean;
  /** More DNS names the TLS certificate is valid for (made-up names a test proxy resolves). */
  readonly tlsNames?: readonly string[];
  /** DELETE of manifests (default true): lets tests make an image vanish "upstream". */
  readonly deleteEnabled?: boolean;
  /**
   * Blob GETs answer 307 to a separate "blob storage" host (the registry's `redirect` storage
   * middleware, as with S3 or a CDN); that host serves the registry's own files.
   */
  readonly blobRedirect?: boolean;
  /** Listen on this port (a client may already be trying it: "registry not up yet" tests); default any. */
  readonly port?: number;
}

/** What the blob storage host of a `blobRedirect` registry received. */
export interface BlobStorageRequest {
  readonly path: string;
  readonly authorization: string | undefined;
}

/** One line of the registry's access log. */
export interface AccessLogEntry {
  readonly method: string;
  /** Request URI as sent, with query string. */
  readonly uri: string;
  readonly status: number;
  readonly user: string;
}

export interface RequestFilter {
  readonly method?: string;
  /** A substring or pattern the URI must contain / match. */
  readonly uri?: string | RegExp;
  readonly status?: number;
}

export interface TestRegistry {
  /** "127.0.0.1:PORT", as image references name it. */
  readonly host: string;
  /** "http(s)://127.0.0.1:PORT" */
  readonly url: string;
  readonly port: number;
  readonly dir: string;
  readonly pki: TestPki | undefined;
  /** With `blobRedirect`: the storage host's origin and the requests it received. */
  readonly blobStorage: { readonly url: string; requests(): readonly BlobStorageRequest[] } | undefined;
  /** Trusts the registry's CA; for the harness's own requests (pushes, deletes). */
  readonly dispatcher: Dispatcher;
  /** Authorization for the harness's own push/pull/delete of `repository`, when auth is on. */
  authorization(repository: string): string | undefined;
  /** Access-log entries of requests received so far (harness bookkeeping requests left out). */
  requests(filter?: RequestFilter): Promise<readonly AccessLogEntry[]>;
  count(filter?: RequestFilter): Promise<number>;
  /** Distinct client addresses ("127.0.0.1:PORT") the matching requests came from: one per connection. */
  clientAddresses(filter?: RequestFilter): Promise<ReadonlySet<string>>;
  readonly daemon: Daemon;
  /** Stops the registry but keeps its port number and data (for "registry down" tests). */
  stop(): Promise<void>;
  /** Stops it and removes its directory. */
  close(): Promise<void>;
}

// 127.0.0.1 - user [21/Nov/2026:06:01:49 +0000] "HEAD /v2/foo/manifests/x HTTP/1.1" 404 91 "" "curl/7.88.1"
const ACCESS_LINE = /^\S+ \S+ (\S+) \[[^\]]*\] "(\S+) (\S+) HTTP\/[\d.]+" (\d{3}) /;
const LISTENING = /listening on 127\.0\.0\.1:(\d+)/;
// The info-level line per request also names the client's address and port.
const COMPLETED_METHOD = /http\.request\.method=(\S+)/;
const COMPLETED_URI = /http\.request\.uri=("(?:[^"\\]|\\.)*"|\S+)/;
const COMPLETED_REMOTE = /http\.request\.remoteaddr="?([^"\s]+)"?/;
const HARNESS_MARK = 'pullmap-harness=';
/** Entries kept for counting; far more than any test or benchmark run sends to one registry. */
const MAX_ENTRIES = 200_000;

function matchesFilter(entry: AccessLogEntry, filter: RequestFilter | undefined): boolean {
  if (filter === undefined) return true;
  if (filter.method !== undefined && entry.method !== filter.method) return false;
  if (filter.status !== undefined && entry.status !== filter.status) return false;
  if (filter.uri !== undefined) {
    if (typeof filter.uri === 'string' ? !entry.uri.includes(filter.uri) : !filter.uri.test(entry.uri))
      return false;
  }
  return true;
}

async function htpasswdLines(users: Readonly<Record<string, string>>): Promise<string> {
  const htpasswd = requireCommand('htpasswd');
  const lines: string[] = [];
  for (const [user, password] of Object.entries(users)) {
    // The registry only accepts bcrypt entries.
    const { stdout } = await execFileAsync(htpasswd, ['-Bbn', user, password]);
    lines.push(stdout.trim());
  }
  return `${lines.join('\n')}\n`;
}

/** Serves files under `root` by URL path, recording what each request carried. */
async function startBlobStorage(
  root: string,
): Promise<{ server: Server; url: string; log: BlobStorageRequest[] }> {
  const log: BlobStorageRequest[] = [];
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://storage').pathname;
    log.push({ path, authorization: req.headers.authorization });
    const file = resolve(root, `.${decodeURIComponent(path)}`);
    if (!file.startsWith(root + sep)) {
      res.writeHead(403).end();
      return;
    }
    stat(file).then(
      (info) => {
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': info.size });
        createReadStream(file).pipe(res);
      },
      () => res.writeHead(404).end(),
    );
  });
  await new Promise<void>((done, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => done());
  });
  const { port } = server.address() as AddressInfo;
  return { server, url: `http://127.0.0.1:${port}`, log };
}

export async function startRegistry(options: RegistryOptions = {}): Promise<TestRegistry> {
  const binary = requireCommand('docker-registry');
  const temp: TempDir = await tempDir('registry');
  const dir = temp.path;
  const pki = options.tls ? await makePki(dir, undefined, options.tlsNames) : undefined;
  const config: Record<string, unknown> = {
    version: 0.1,
    // info level is what prints the chosen port; the access log is what we count.
    log: { level: 'info', accesslog: { disabled: false } },
    storage: {
      filesystem: { rootdirectory: join(dir, 'data') },
      delete: { enabled: options.deleteEnabled ?? true },
      maintenance: { uploadpurging: { enabled: false } },
    },
    http: {
      addr: `127.0.0.1:${options.port ?? 0}`,
      secret: 'pullmap-test-secret',
      ...(pki ? { tls: { certificate: pki.certPath, key: pki.keyPath } } : {}),
    },
  };
  const storage = options.blobRedirect ? await startBlobStorage(join(dir, 'data')) : undefined;
  if (storage) {
    config['middleware'] = { storage: [{ name: 'redirect', options: { baseurl: `${storage.url}/` } }] };
  }
  let authorization: (repository: string) => string | undefined = () => undefined;
  if (options.auth?.kind === 'htpasswd') {
    const path = join(dir, 'htpasswd');
    await writeFile(path, await htpasswdLines(options.auth.users));
    config['auth'] = { htpasswd: { realm: 'pullmap-test', path } };
    const [user, password] = Object.entries(options.auth.users)[0] ?? ['', ''];
    const basic = `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
    authorization = () => basic;
  } else if (options.auth?.kind === 'token') {
    const ts = options.auth.tokenServer;
    config['auth'] = {
      token: { realm: ts.realm, service: ts.service, issuer: ts.issuer, rootcertbundle: ts.certPath },
    };
    authorization = (repository) =>
      `Bearer ${ts.mint([{ type: 'repository', name: repository, actions: ['pull', 'push', 'delete'] }], 'harness')}`;
  }
  const configPath = join(dir, 'config.yml');
  // JSON is YAML; the registry reads it as its config file.
  await writeFile(configPath, JSON.stringify(config, null, 2));

  const dispatcher = new Agent({ connect: pki ? { ca: pki.caPem } : {}, keepAliveTimeout: 1000 });
  const entries: AccessLogEntry[] = [];
  const served: { entry: AccessLogEntry; remote: string }[] = [];
  /** Harness markers seen in the registry's own (stderr) log, whatever its level. */
  const loggedMarks = new Set<string>();
  // A read may end mid-line; each stream keeps its own unfinished line.
  const pendingLine = { stdout: '', stderr: '' };
  let port = 0;
  const onOutput = (text: string, stream: 'stdout' | 'stderr'): void => {
    const lines = (pendingLine[stream] + text).split('\n');
    pendingLine[stream] = lines.pop() ?? '';
    for (const line of lines) {
      if (port === 0) {
        const listening = LISTENING.exec(line);
        if (listening) port = Number(listening[1]);
      }
      const m = ACCESS_LINE.exec(line);
      if (m && entries.length < MAX_ENTRIES)
        entries.push({
          user: m[1] as string,
          method: m[2] as string,
          uri: m[3] as string,
          status: Number(m[4]),
        });
      if (!m && line.includes(HARNESS_MARK)) {
        const mark = new RegExp(`${HARNESS_MARK}([\\w-]+)`).exec(line)?.[1];
        if (mark) loggedMarks.add(mark);
      }
      if (line.includes('msg="response completed') && served.length < MAX_ENTRIES) {
        const method = COMPLETED_METHOD.exec(line)?.[1];
        const rawUri = COMPLETED_URI.exec(line)?.[1];
        const remote = COMPLETED_REMOTE.exec(line)?.[1];
        const status = /http\.response\.status=(\d+)/.exec(line)?.[1];
        if (method && rawUri && remote && status) {
          const uri = rawUri.startsWith('"') ? (JSON.parse(rawUri) as string) : rawUri;
          served.push({ entry: { user: '', method, uri, status: Number(status) }, remote });
        }
      }
    }
  };
  const scheme = pki ? 'https' : 'http';
  const base = (): string => `${scheme}://127.0.0.1:${port}`;
  let marks = 0;
  const harnessGet = async (mark: string): Promise<void> => {
    const res = await request(`${base()}/v2/?${HARNESS_MARK}${mark}`, { dispatcher });
    await res.body.dump();
  };

  const closeStorage = async (): Promise<void> => {
    if (!storage) return;
    storage.server.closeAllConnections();
    await new Promise<void>((done) => storage.server.close(() => done()));
  };
  let daemon: Daemon;
  try {
    daemon = await startDaemon({
      name: 'docker-registry',
      command: binary,
      args: ['serve', configPath],
      cwd: dir,
      onOutput,
      ready: async () => {
        if (port === 0) return false;
        await harnessGet('ready');
        return true;
      },
    });
  } catch (err) {
    await dispatcher.close();
    await closeStorage();
    await temp.remove();
    throw err;
  }

  // The log line of a request can reach us after its response: ask once more and wait until that
  // marker shows up, since the registry writes a request's lines before it finishes answering it.
  const settle = async (): Promise<void> => {
    if (daemon.exited()) return;
    const mark = `settle-${++marks}`;
    await harnessGet(mark);
    const deadline = Date.now() + 5000;
    // Access lines come on stdout, the info lines on stderr: wait for the marker on both.
    while (!entries.some((e) => e.uri.endsWith(mark)) || !loggedMarks.has(mark)) {
      if (Date.now() > deadline)
        throw new Error(`access log did not show ${mark}:\n${daemon.output().slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  };
  const requests = async (filter?: RequestFilter): Promise<readonly AccessLogEntry[]> => {
    await settle();
    return entries.filter((e) => !e.uri.includes(HARNESS_MARK) && matchesFilter(e, filter));
  };

  return {
    host: `127.0.0.1:${port}`,
    url: base(),
    port,
    dir,
    pki,
    blobStorage: storage ? { url: storage.url, requests: () => storage.log } : undefined,
    dispatcher,
    authorization,
    requests,
    count: async (filter) => (await requests(filter)).length,
    clientAddresses: async (filter) => {
      await settle();
      return new Set(
        served
          .filter((s) => !s.entry.uri.includes(HARNESS_MARK) && matchesFilter(s.entry, filter))
          .map((s) => s.remote),
      );
    },
    daemon,
    stop: () => daemon.stop(),
    close: async () => {
      await daemon.stop();
      await closeStorage();
      await dispatcher.close();
      await temp.remove();
    },
  };
}
