// A real etcd + kube-apiserver on loopback for webhook and controller tests (../shared/test-infra.md §4-5).
// No scheduler, kubelet or controller-manager: pods stay Pending, namespaces never finish deleting.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { type Daemon, execFileAsync, freePort, requireCommand, startDaemon, tempDir } from './process.ts';
import { makePki, type TestPki } from './tls.ts';

export interface KubeOptions {
  /** kube-apiserver binary; default: env KUBE_APISERVER, else the one scripts/kube-apiserver.sh cached. */
  apiserverBinary?: string;
  /** etcd binary; default: env ETCD, else `etcd` on PATH. */
  etcdBinary?: string;
  /** Extra kube-apiserver flags (e.g. --feature-gates=...); later flags override earlier ones. */
  apiserverArgs?: readonly string[];
  /**
   * Keep the ServiceAccount admission plugin on (pods get token volumes). Off by default: without a
   * controller-manager nobody creates the `default` accounts it requires (see control-plane.ts).
   */
  serviceAccounts?: boolean;
  readyTimeoutMs?: number;
}

export interface KubeTimings {
  /** From startKube() to etcd's /health. */
  etcdMs: number;
  /** From spawning kube-apiserver to its /readyz (the last start or restart). */
  apiserverMs: number;
  /** Whole startKube(), PKI and key generation included. */
  totalMs: number;
}

export interface CreateNamespaceOptions {
  /** Name prefix; a counter and random suffix follow. */
  prefix?: string;
  labels?: Record<string, string>;
}

export interface Kube {
  /** https://127.0.0.1:PORT; the port stays the same across restart(). */
  readonly apiserverUrl: string;
  /** PEM of the CA that signed the apiserver's serving certificate (also usable to sign webhook certs). */
  readonly caPem: string;
  readonly pki: TestPki;
  /** Kubeconfig for kubectl and client-node: cluster-admin via a static token in system:masters. */
  readonly kubeconfigPath: string;
  readonly token: string;
  readonly etcdUrl: string;
  /** The temporary directory holding etcd data, certificates, keys and the kubeconfig. */
  readonly dir: string;
  readonly timings: KubeTimings;
  /** Current PIDs (the apiserver's changes on restart). */
  pids(): { etcd: number; apiserver: number };
  /** A fresh client-node KubeConfig loaded from kubeconfigPath. */
  kubeConfig(): KubeConfig;
  /** Creates a uniquely named namespace and returns its name (fresh one per test: deletion never completes). */
  createNamespace(options?: CreateNamespaceOptions): Promise<string>;
  /** Stops and restarts the apiserver only (same etcd, port and flags); resolves once /readyz is OK again. */
  restart(options?: { kill?: boolean }): Promise<void>;
  /** Runs kubectl against this cluster; resolves with stdout, rejects with stderr on failure. */
  kubectl(args: readonly string[], input?: string): Promise<string>;
  /** The last `maxChars` (default 16,000) of each daemon's output, for failure messages. */
  logs(maxChars?: number): string;
  /** Stops apiserver, then etcd, and removes the temporary directory. Idempotent. */
  stop(): Promise<void>;
}

const TOKEN = 'pullmap-test-admin-token';
const scriptPath = fileURLToPath(new URL('../../scripts/kube-apiserver.sh', import.meta.url));

/** The kube-apiserver binary: env KUBE_APISERVER, else the cached build (never builds from a test). */
export async function kubeApiserverBinary(): Promise<string> {
  const fromEnv = process.env.KUBE_APISERVER;
  if (fromEnv) {
    if (!existsSync(fromEnv)) throw new Error(`KUBE_APISERVER=${fromEnv} does not exist`);
    return fromEnv;
  }
  try {
    const { stdout } = await execFileAsync('bash', [scriptPath, '--cached-only']);
    return stdout.trim();
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? String(err);
    throw new Error(
      `no kube-apiserver binary: set KUBE_APISERVER or run "bash scripts/kube-apiserver.sh" once\n${stderr}`,
    );
  }
}

// setpriv makes the kernel kill a daemon when the test process dies, even by SIGKILL, so crashed test
// runs leave no orphans; it execs in place, so the PID stays the daemon's.
export function withParentDeathSignal(
  command: string,
  args: readonly string[],
): { command: string; args: string[] } {
  try {
    const setpriv = requireCommand('setpriv');
    return { command: setpriv, args: ['--pdeathsig', 'KILL', '--', command, ...args] };
  } catch {
    return { command, args: [...args] };
  }
}

/** GET over HTTPS trusting only `ca`; resolves with status and body (bounded by a short timeout). */
function httpsGet(url: string, ca: string, token: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { ca, headers: { authorization: `Bearer ${token}` }, timeout: 2000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        body += chunk;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

let namespaceCounter = 0;

/** Starts etcd and kube-apiserver on free loopback ports; call stop() in an after() hook. */
const CRDS = fileURLToPath(new URL('../../deploy/crds/', import.meta.url));

/** Applies pullmap's CRDs (deploy/crds) and waits until the apiserver serves both kinds. */
export async function installCrds(kube: Kube): Promise<void> {
  await kube.kubectl(['apply', '-k', CRDS]);
  await kube.kubectl([
    'wait',
    '--for=condition=Established',
    '--timeout=60s',
    'crd/imagemaps.pullmap.dev',
    'crd/clusterimagemaps.pullmap.dev',
  ]);
}

export async function startKube(options: KubeOptions = {}): Promise<Kube> {
  // freePort() releases its port before the daemon binds it, so a parallel test can win the race: retry.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startKubeOnce(options);
    } catch (err) {
      if (attempt >= 3 || !/address already in use/i.test(String(err))) throw err;
    }
  }
}

async function startKubeOnce(options: KubeOptions): Promise<Kube> {
  const started = performance.now();
  const readyTimeoutMs = options.readyTimeoutMs ?? 60_000;
  const etcdBinary = options.etcdBinary ?? process.env.ETCD ?? requireCommand('etcd');
  const apiserverBinary = options.apiserverBinary ?? (await kubeApiserverBinary());
  const [tmp, clientPort, peerPort, metricsPort, apiPort] = await Promise.all([
    tempDir('kube'),
    freePort(),
    freePort(),
    freePort(),
    freePort(),
  ]);
  const dir = tmp.path;
  const p = (name: string): string => join(dir, name);
  let etcd: Daemon | undefined;
  let apiserver: Daemon | undefined;
  const stopAll = async (): Promise<void> => {
    await apiserver?.stop(2000);
    await etcd?.stop(2000);
  };
  // Backstop for a test file that ends without calling stop(): the daemons must not outlive it.
  const onExit = (): void => {
    for (const d of [apiserver, etcd]) {
      if (d && !d.exited()) {
        try {
          process.kill(d.pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
  };
  process.once('exit', onExit);
  let etcdStarting: Promise<number> | undefined;

  try {
    const etcdUrl = `http://127.0.0.1:${clientPort}`;
    const peerUrl = `http://127.0.0.1:${peerPort}`;
    const etcdCmd = withParentDeathSignal(etcdBinary, [
      '--name=test',
      `--data-dir=${p('etcd')}`,
      `--listen-client-urls=${etcdUrl}`,
      `--advertise-client-urls=${etcdUrl}`,
      `--listen-peer-urls=${peerUrl}`,
      `--initial-advertise-peer-urls=${peerUrl}`,
      `--initial-cluster=test=${peerUrl}`,
      `--listen-metrics-urls=http://127.0.0.1:${metricsPort}`,
      '--unsafe-no-fsync',
      // A single member cannot lose an election: short timers make it leader in ~80 ms instead of ~300.
      '--heartbeat-interval=10',
      '--election-timeout=100',
      '--logger=zap',
      '--log-level=warn',
    ]);
    // etcd starts while openssl makes the PKI and service-account key.
    etcdStarting = startDaemon({
      name: 'etcd',
      command: etcdCmd.command,
      args: etcdCmd.args,
      readyTimeoutMs,
      ready: async () => {
        const res = await fetch(`${etcdUrl}/health`, { signal: AbortSignal.timeout(1000) });
        return res.ok && ((await res.json()) as { health?: string }).health === 'true';
      },
    }).then((d) => {
      etcd = d;
      return performance.now() - started;
    });
    const openssl = requireCommand('openssl');
    const [pki, etcdMs] = await Promise.all([
      makePki(dir),
      etcdStarting,
      // Service-account token signing key pair: EC is generated in milliseconds, RSA takes longer.
      execFileAsync(openssl, [
        'genpkey',
        '-algorithm',
        'EC',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-out',
        p('sa.key'),
      ]).then(() => execFileAsync(openssl, ['pkey', '-in', p('sa.key'), '-pubout', '-out', p('sa.pub')])),
      writeFile(p('tokens.csv'), `${TOKEN},admin,admin-uid,"system:masters"\n`),
    ]);

    const apiserverUrl = `https://127.0.0.1:${apiPort}`;
    const apiserverArgs = [
      `--etcd-servers=${etcdUrl}`,
      // A fresh prefix per run, so nothing can leak between runs even on a shared etcd.
      `--etcd-prefix=/pullmap-${randomBytes(6).toString('hex')}`,
      '--bind-address=127.0.0.1',
      '--advertise-address=127.0.0.1',
      `--secure-port=${apiPort}`,
      `--cert-dir=${p('apiserver-certs')}`,
      `--tls-cert-file=${pki.certPath}`,
      `--tls-private-key-file=${pki.keyPath}`,
      `--client-ca-file=${pki.caCertPath}`,
      `--service-account-issuer=${apiserverUrl}`,
      `--api-audiences=${apiserverUrl}`,
      `--service-account-key-file=${p('sa.pub')}`,
      `--service-account-signing-key-file=${p('sa.key')}`,
      '--service-cluster-ip-range=10.0.0.0/24',
      '--authorization-mode=RBAC',
      `--token-auth-file=${p('tokens.csv')}`,
      // No controller-manager creates service accounts, so pods would be refused without this.
      ...(options.serviceAccounts ? [] : ['--disable-admission-plugins=ServiceAccount']),
      '--allow-privileged=true',
      '--profiling=false',
      '--endpoint-reconciler-type=none',
      ...(options.apiserverArgs ?? []),
    ];
    const apiserverCmd = withParentDeathSignal(apiserverBinary, apiserverArgs);
    const timings: KubeTimings = { etcdMs, apiserverMs: 0, totalMs: 0 };
    const startApiserver = async (): Promise<void> => {
      const t0 = performance.now();
      apiserver = await startDaemon({
        name: 'kube-apiserver',
        command: apiserverCmd.command,
        args: apiserverCmd.args,
        readyTimeoutMs,
        ready: async () => (await httpsGet(`${apiserverUrl}/readyz`, pki.caPem, TOKEN)).status === 200,
      });
      timings.apiserverMs = performance.now() - t0;
    };
    await startApiserver();

    const kubeconfigPath = p('kubeconfig');
    // Embedded CA data and token: one self-contained file that kubectl and client-node both read.
    await writeFile(
      kubeconfigPath,
      stringify({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [
          {
            name: 'pullmap-test',
            cluster: {
              server: apiserverUrl,
              'certificate-authority-data': Buffer.from(pki.caPem).toString('base64'),
            },
          },
        ],
        users: [{ name: 'admin', user: { token: TOKEN } }],
        contexts: [{ name: 'pullmap-test', context: { cluster: 'pullmap-test', user: 'admin' } }],
        'current-context': 'pullmap-test',
      }),
    );
    timings.totalMs = performance.now() - started;

    const kubeConfig = (): KubeConfig => {
      const kc = new KubeConfig();
      kc.loadFromFile(kubeconfigPath);
      return kc;
    };
    let core: CoreV1Api | undefined;
    let stopped = false;
    const kube: Kube = {
      apiserverUrl,
      caPem: pki.caPem,
      pki,
      kubeconfigPath,
      token: TOKEN,
      etcdUrl,
      dir,
      timings,
      pids: () => ({ etcd: etcd?.pid ?? -1, apiserver: apiserver?.pid ?? -1 }),
      kubeConfig,
      async createNamespace(nsOptions = {}) {
        core ??= kubeConfig().makeApiClient(CoreV1Api);
        namespaceCounter += 1;
        const name = `${nsOptions.prefix ?? 'test'}-${namespaceCounter}-${randomBytes(3).toString('hex')}`;
        await core.createNamespace({
          body: { metadata: { name, ...(nsOptions.labels ? { labels: nsOptions.labels } : {}) } },
        });
        return name;
      },
      async restart(restartOptions = {}) {
        if (stopped) throw new Error('restart() after stop()');
        // kill: an abrupt crash (SIGKILL) instead of a graceful SIGTERM shutdown.
        if (restartOptions.kill && apiserver && !apiserver.exited()) process.kill(apiserver.pid, 'SIGKILL');
        await apiserver?.stop(5000);
        await startApiserver();
      },
      kubectl(args, input) {
        const kubectl = requireCommand('kubectl');
        return new Promise((resolve, reject) => {
          const child = execFile(
            kubectl,
            // A per-cluster discovery cache: ~/.kube/cache is keyed by host:port, which later runs reuse.
            [`--kubeconfig=${kubeconfigPath}`, `--cache-dir=${p('kubectl-cache')}`, ...args],
            { maxBuffer: 64 * 1024 * 1024 },
            (err, stdout, stderr) =>
              err
                ? reject(new Error(`kubectl ${args.join(' ')} failed: ${stderr || err.message}`))
                : resolve(stdout),
          );
          child.stdin?.end(input ?? '');
        });
      },
      logs: (maxChars = 16_000) =>
        `--- kube-apiserver ---\n${apiserver?.output().slice(-maxChars) ?? ''}\n--- etcd ---\n${etcd?.output().slice(-maxChars) ?? ''}`,
      async stop() {
        if (stopped) return;
        stopped = true;
        await stopAll();
        process.removeListener('exit', onExit);
        await tmp.remove();
      },
    };
    return kube;
  } catch (err) {
    // If openssl failed first, etcd may still be starting: let it finish so stopAll() can stop it.
    await etcdStarting?.catch(() => undefined);
    await stopAll();
    process.removeListener('exit', onExit);
    await tmp.remove();
    throw err;
  }
}
