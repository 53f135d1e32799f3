// kube-controller-manager and kube-scheduler beside the apiserver of startKube(), so Deployments and
// DaemonSets become pods on a harness node (startNode) the way they do in a cluster. Both talk only to the
// apiserver on 127.0.0.1 (the admin kubeconfig), serve nothing themselves (--secure-port=0) and run
// without leader election. The controller-manager runs only the controllers an installed chart needs.
//
// Pods get ServiceAccount tokens only with the apiserver's ServiceAccount admission plugin on, which
// startKube() turns off by default: start it with startKube({ serviceAccounts: true }).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Kube, withParentDeathSignal } from './kube.ts';
import { type Daemon, execFileAsync, startDaemon } from './process.ts';

const scriptsDir = fileURLToPath(new URL('../../scripts/', import.meta.url));

/**
 * What an installed chart needs: Deployments → ReplicaSets → pods, DaemonSets → pods, the `default`
 * ServiceAccount in each namespace, the `kube-root-ca.crt` ConfigMap every token volume projects, and
 * garbage collection so deleting an owner removes what it owns (helm uninstall, rollouts), and the
 * node's not-ready taint removed.
 */
export const CONTROLLERS: readonly string[] = [
  'deployment-controller',
  'replicaset-controller',
  'daemonset-controller',
  'serviceaccount-controller',
  'serviceaccount-token-controller',
  'root-ca-certificate-publisher-controller',
  'garbage-collector-controller',
  // The kubelet registers its Node with the node.kubernetes.io/not-ready:NoSchedule taint; this
  // controller removes it once the node is Ready (the scheduler places nothing before).
  'node-lifecycle-controller',
];

export interface ControlPlaneTimings {
  /** Spawning both until the kube-root-ca.crt ConfigMap exists in `default` (controllers are running). */
  readyMs: number;
}

export interface ControlPlane {
  readonly timings: ControlPlaneTimings;
  /** The last `maxChars` of each daemon's output. */
  logs(maxChars?: number): string;
  /** Stops scheduler and controller-manager. Idempotent. */
  stop(): Promise<void>;
}

/** A binary of the apiserver's release, as cached by scripts/kube-binary.sh (never built from a test). */
export async function kubeBinary(
  name: 'kube-controller-manager' | 'kube-scheduler',
  env: string,
): Promise<string> {
  const fromEnv = process.env[env];
  if (fromEnv) {
    if (!existsSync(fromEnv)) throw new Error(`${env}=${fromEnv} does not exist`);
    return fromEnv;
  }
  try {
    const { stdout } = await execFileAsync('bash', [
      join(scriptsDir, 'kube-binary.sh'),
      name,
      '--cached-only',
    ]);
    return stdout.trim();
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? String(err);
    throw new Error(
      `no ${name} binary: set ${env} or run "bash scripts/kube-binary.sh ${name}" once\n${stderr}`,
    );
  }
}

/** Starts kube-controller-manager and kube-scheduler for `kube`; resolves once the controllers run. */
export async function startControlPlane(
  kube: Kube,
  options: { readyTimeoutMs?: number } = {},
): Promise<ControlPlane> {
  const readyTimeoutMs = options.readyTimeoutMs ?? 60_000;
  const [controllerManagerBinary, schedulerBinary] = await Promise.all([
    kubeBinary('kube-controller-manager', 'KUBE_CONTROLLER_MANAGER'),
    kubeBinary('kube-scheduler', 'KUBE_SCHEDULER'),
  ]);
  const started = performance.now();
  let controllerManager: Daemon | undefined;
  let scheduler: Daemon | undefined;
  const onExit = (): void => {
    for (const d of [scheduler, controllerManager]) {
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
  const stopAll = async (): Promise<void> => {
    await scheduler?.stop(3000);
    await controllerManager?.stop(3000);
    process.removeListener('exit', onExit);
  };
  try {
    const schedulerCmd = withParentDeathSignal(schedulerBinary, [
      `--kubeconfig=${kube.kubeconfigPath}`,
      '--leader-elect=false',
      '--secure-port=0',
      '--v=1',
    ]);
    // The scheduler has no endpoint to ask once it serves nothing: it is up when the process stays up;
    // pods it binds prove the rest.
    const schedulerStarting = startDaemon({
      name: 'kube-scheduler',
      command: schedulerCmd.command,
      args: schedulerCmd.args,
      readyTimeoutMs,
      ready: async () => true,
    }).then((d) => {
      scheduler = d;
    });
    const controllerManagerCmd = withParentDeathSignal(controllerManagerBinary, [
      `--kubeconfig=${kube.kubeconfigPath}`,
      '--leader-elect=false',
      '--secure-port=0',
      `--controllers=${CONTROLLERS.join(',')}`,
      // Published as kube-root-ca.crt in every namespace: what pods' token volumes trust the apiserver with.
      `--root-ca-file=${kube.pki.caCertPath}`,
      `--service-account-private-key-file=${join(kube.dir, 'sa.key')}`,
      '--use-service-account-credentials=false',
      '--v=1',
    ]);
    controllerManager = await startDaemon({
      name: 'kube-controller-manager',
      command: controllerManagerCmd.command,
      args: controllerManagerCmd.args,
      readyTimeoutMs,
      ready: async () => {
        const found = await kube
          .kubectl(['get', 'configmap', '-n', 'default', 'kube-root-ca.crt', '-o', 'name'])
          .catch(() => '');
        if (found.trim()) return true;
        await new Promise((r) => setTimeout(r, 200));
        return false;
      },
    });
    await schedulerStarting;
    const timings: ControlPlaneTimings = { readyMs: performance.now() - started };
    let stopped = false;
    return {
      timings,
      logs: (maxChars = 8000) =>
        `--- kube-controller-manager ---\n${controllerManager?.output().slice(-maxChars) ?? ''}\n--- kube-scheduler ---\n${scheduler?.output().slice(-maxChars) ?? ''}`,
      async stop() {
        if (stopped) return;
        stopped = true;
        await stopAll();
      },
    };
  } catch (err) {
    const output = `${controllerManager?.output().slice(-4000) ?? ''}${scheduler?.output().slice(-2000) ?? ''}`;
    await stopAll();
    if (output) (err as Error).message += `\n${output}`;
    throw err;
  }
}
