// Where the API server is and how to authenticate to it: the in-cluster service account, or a
// kubeconfig whose user is a token or a client certificate, read here; anything else (exec plugins,
// auth providers, proxies, several files in $KUBECONFIG) goes to client-node's KubeConfig.
//
// Why not client-node's KubeConfig always: importing it costs about 80 MiB of RSS (docs/decisions.md,
// "Kubernetes API"). Only what is fully understood is read here; every other kubeconfig falls back to
// client-node, loaded then.

import { access, readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';
import { parse } from 'yaml';
import { KubeConfigError } from './errors.ts';

/** What the API client needs: a client-node KubeConfig satisfies it, and so does loadKubeConfig's. */
export interface KubeCredentials {
  getCurrentCluster(): { readonly server: string; readonly skipTLSVerify?: boolean } | null;
  /** Sets headers (Authorization), ca, cert and key on the options, as for https.request. */
  applyToHTTPSOptions(options: object): Promise<void>;
}

export { KubeConfigError };

export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';
/** A rotated service-account token is picked up within this long. */
const TOKEN_REREAD_MS = 60_000;

interface LoadOptions {
  /** A kubeconfig file; undefined: $KUBECONFIG, else ~/.kube/config, else the service account. */
  readonly path?: string | undefined;
  readonly env?: NodeJS.ProcessEnv;
  readonly serviceAccountDir?: string;
  readonly now?: () => number;
}

/** Which reader served: "kubeconfig" and "in-cluster" are this file's, "client-node" the fallback. */
type LoadedKubeConfig = KubeCredentials & {
  readonly loadedBy: 'kubeconfig' | 'in-cluster' | 'client-node';
};

interface Connection {
  readonly server: string;
  readonly skipTLSVerify: boolean;
  readonly ca: string | undefined;
  readonly cert: string | undefined;
  readonly key: string | undefined;
  /** The bearer token now (re-read from a file when it names one). */
  readonly token: (() => Promise<string | undefined>) | undefined;
}

function credentials(c: Connection, loadedBy: LoadedKubeConfig['loadedBy']): LoadedKubeConfig {
  const cluster = { server: c.server, skipTLSVerify: c.skipTLSVerify };
  return {
    loadedBy,
    getCurrentCluster: () => cluster,
    async applyToHTTPSOptions(options) {
      const o = options as { headers?: Record<string, unknown>; ca?: string; cert?: string; key?: string };
      if (c.ca !== undefined) o.ca = c.ca;
      if (c.cert !== undefined) o.cert = c.cert;
      if (c.key !== undefined) o.key = c.key;
      const token = await c.token?.();
      if (token !== undefined) o.headers = { ...o.headers, Authorization: `Bearer ${token}` };
    },
  };
}

/** A token file read at most once per TOKEN_REREAD_MS (kubelet rotates projected tokens). */
function tokenFile(path: string, now: () => number): () => Promise<string> {
  let cached: { token: string; at: number } | undefined;
  return async () => {
    if (cached && now() - cached.at < TOKEN_REREAD_MS) return cached.token;
    const token = (await readFile(path, 'utf8')).trim();
    cached = { token, at: now() };
    return token;
  };
}

type Fields = Record<string, unknown>;
const isFields = (v: unknown): v is Fields => v !== null && typeof v === 'object' && !Array.isArray(v);

const CLUSTER_FIELDS = new Set([
  'server',
  'certificate-authority',
  'certificate-authority-data',
  'insecure-skip-tls-verify',
]);
const USER_FIELDS = new Set([
  'token',
  'tokenFile',
  'client-certificate',
  'client-certificate-data',
  'client-key',
  'client-key-data',
]);

/** The named entry of a kubeconfig list (clusters, users, contexts), or undefined. */
function entry(doc: Fields, list: string, name: unknown, field: string): Fields | undefined {
  const items = doc[list];
  if (!Array.isArray(items)) return undefined;
  const found = items.find((i) => isFields(i) && i.name === name);
  return isFields(found) && isFields(found[field]) ? found[field] : undefined;
}

async function readKubeconfig(path: string): Promise<Fields> {
  let doc: unknown;
  try {
    doc = parse(await readFile(path, 'utf8'));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new KubeConfigError(`cannot read ${path}: ${code ?? (err as Error).message}`, { cause: err });
  }
  if (!isFields(doc)) throw new KubeConfigError(`${path} is not a kubeconfig (a YAML mapping)`);
  return doc;
}

/**
 * The current context's cluster and user when this file can serve them, undefined when client-node must
 * (preferences, a missing user, fields this reader does not know); throws naming what is broken.
 */
function currentEntries(doc: Fields, path: string): { cluster: Fields; user: Fields } | undefined {
  if (
    doc.preferences !== undefined &&
    !(isFields(doc.preferences) && Object.keys(doc.preferences).length === 0)
  )
    return undefined;
  const contextName = doc['current-context'];
  if (typeof contextName !== 'string' || contextName === '')
    throw new KubeConfigError(`${path}: current-context is not set; run kubectl config use-context NAME`);
  const context = entry(doc, 'contexts', contextName, 'context');
  if (!context)
    throw new KubeConfigError(`${path}: current-context ${contextName} names no entry in contexts`);
  const cluster = entry(doc, 'clusters', context.cluster, 'cluster');
  if (!cluster)
    throw new KubeConfigError(
      `${path}: context ${contextName} names cluster ${String(context.cluster)}, which is not in clusters`,
    );
  const user = context.user === undefined ? {} : entry(doc, 'users', context.user, 'user');
  if (!user) return undefined; // client-node decides what a missing user means
  if (Object.keys(cluster).some((k) => !CLUSTER_FIELDS.has(k))) return undefined;
  if (Object.keys(user).some((k) => !USER_FIELDS.has(k))) return undefined;
  if (typeof cluster.server !== 'string' || cluster.server === '')
    throw new KubeConfigError(`${path}: cluster ${String(context.cluster)} has no server`);
  return { cluster, user };
}

/** A kubeconfig this file can serve, or undefined when client-node must read it. */
async function fromKubeconfig(path: string, now: () => number): Promise<Connection | undefined> {
  const entries = currentEntries(await readKubeconfig(path), path);
  if (!entries) return undefined;
  const { cluster, user } = entries;
  const base = dirname(path);
  const file = (p: unknown) => (typeof p === 'string' ? (isAbsolute(p) ? p : join(base, p)) : undefined);
  const pem = async (data: unknown, fileField: unknown): Promise<string | undefined> => {
    if (typeof data === 'string') return Buffer.from(data, 'base64').toString('utf8');
    const f = file(fileField);
    if (f === undefined) return undefined;
    try {
      return await readFile(f, 'utf8');
    } catch (err) {
      throw new KubeConfigError(`${path}: cannot read ${f}: ${(err as NodeJS.ErrnoException).code ?? err}`, {
        cause: err,
      });
    }
  };
  const tokenPath = file(user.tokenFile);
  const token =
    typeof user.token === 'string'
      ? async () => user.token as string
      : tokenPath !== undefined
        ? tokenFile(tokenPath, now)
        : undefined;
  return {
    server: cluster.server as string,
    skipTLSVerify: cluster['insecure-skip-tls-verify'] === true,
    ca: await pem(cluster['certificate-authority-data'], cluster['certificate-authority']),
    cert: await pem(user['client-certificate-data'], user['client-certificate']),
    key: await pem(user['client-key-data'], user['client-key']),
    token,
  };
}

const exists = (path: string): Promise<boolean> =>
  access(path).then(
    () => true,
    () => false,
  );

async function clientNode(path: string | undefined): Promise<LoadedKubeConfig> {
  const { KubeConfig } = await import('@kubernetes/client-node');
  const kc = new KubeConfig();
  try {
    if (path !== undefined) kc.loadFromFile(path);
    else kc.loadFromDefault();
  } catch (err) {
    throw new KubeConfigError((err as Error).message, { cause: err });
  }
  if (!kc.getCurrentCluster()) throw new KubeConfigError('it names no current cluster');
  return Object.assign(kc, { loadedBy: 'client-node' as const });
}

/**
 * The credentials `kubectl` would use: the given file, else $KUBECONFIG (one file), else
 * ~/.kube/config, else the pod's service account. Throws KubeConfigError naming the problem.
 */
export async function loadKubeConfig(options: LoadOptions = {}): Promise<LoadedKubeConfig> {
  const env = options.env ?? process.env;
  const now = options.now ?? Date.now;
  const path = await kubeconfigPath(options.path, env);
  if (path === MERGED) return clientNode(undefined);
  if (path !== undefined) {
    const connection = await fromKubeconfig(path, now);
    return connection ? credentials(connection, 'kubeconfig') : clientNode(path);
  }
  const connection = await inCluster(options.serviceAccountDir ?? SERVICE_ACCOUNT_DIR, env, now);
  return connection ? credentials(connection, 'in-cluster') : clientNode(undefined);
}

/** $KUBECONFIG naming several files, which client-node merges. */
const MERGED = Symbol('merged');

/** The kubeconfig file to read: the given one, else $KUBECONFIG, else ~/.kube/config if it exists. */
async function kubeconfigPath(
  given: string | undefined,
  env: NodeJS.ProcessEnv,
): Promise<string | typeof MERGED | undefined> {
  if (given !== undefined) return given;
  if (env.KUBECONFIG) return env.KUBECONFIG.includes(':') ? MERGED : env.KUBECONFIG;
  const home = join(env.HOME || homedir(), '.kube', 'config');
  return (await exists(home)) ? home : undefined;
}

/** The pod's service account, when running in a cluster. */
async function inCluster(
  dir: string,
  env: NodeJS.ProcessEnv,
  now: () => number,
): Promise<Connection | undefined> {
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT;
  if (!host || !port || !(await exists(join(dir, 'token')))) return undefined;
  return {
    server: `https://${host.includes(':') ? `[${host}]` : host}:${port}`,
    skipTLSVerify: false,
    ca: await readFile(join(dir, 'ca.crt'), 'utf8').catch(() => undefined),
    cert: undefined,
    key: undefined,
    token: tokenFile(join(dir, 'token'), now),
  };
}
