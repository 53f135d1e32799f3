// A real Kubernetes node beside the apiserver of startKube(): containerd with its CRI plugin and a kubelet
// registered through the admin kubeconfig, so pods bound to it (spec.nodeName; no scheduler runs) are
// really pulled and started. Everything lives in one temporary directory; what a kubelet and containerd
// change outside it (cgroups, a bridge, sysctls, iptables chains are switched off) is undone by stop().
// Kubelet and containerd are machine-wide enough that one node runs at a time: a file lock spans its life.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { endianness, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { type BuiltImage, buildImage, ociArchive } from './images.ts';
import { type Kube, withParentDeathSignal } from './kube.ts';
import { type Daemon, execFileAsync, freePort, requireCommand, startDaemon, tempDir } from './process.ts';

/** The sandbox ("pause") image every pod's sandbox runs; imported at start, never pulled. */
export const PAUSE_IMAGE = 'localhost/pullmap-test/pause:1';

// kubelet refuses a loopback node IP ("failed to validate nodeIP: nodeIP can't be loopback address"), so
// the node's address is on a bridge the harness creates, with no uplink: traffic to it never leaves the
// machine. The same bridge carries pods that have their own network namespace.
const SUBNET = '10.251.0.0/24';
const NODE_IP = '10.251.0.1';
// The network rule of these tests: processes of this machine's network namespace connect to 127.0.0.0/8
// only (or to pods inside their own namespaces), never to the node's address nor to a Service ClusterIP
// (startKube's --service-cluster-ip-range; no kube-proxy runs). offLimitsConnections() checks it.
const OFF_LIMITS = /^(10\.251\.0\.1|10\.0\.0\.\d+)$/;
const LOCK_PATH = join(tmpdir(), 'pullmap-node.lock');
/** Survives a crashed run, so the next node restores what this one changed outside its directory. */
const HOST_STATE_PATH = join(tmpdir(), 'pullmap-node.host-state.json');
const DIR_PREFIX = 'pullmap-node-';
const BRIDGE_PREFIX = 'pmbr-';
const CGROUP_ROOT = '/sys/fs/cgroup';
// kubelet sets these unless protectKernelDefaults refuses to start instead; they are put back at stop().
const KERNEL_TUNABLES = [
  'vm/overcommit_memory',
  'vm/panic_on_oom',
  'kernel/panic',
  'kernel/panic_on_oops',
  'kernel/keys/root_maxkeys',
  'kernel/keys/root_maxbytes',
];
// Paths kubelet and the CNI library write to whatever their configuration says.
const HOST_DIRS = ['/var/lib/kubelet', '/var/lib/cni'];

const scriptsDir = fileURLToPath(new URL('../../scripts/', import.meta.url));

export interface NodeOptions {
  /** Until the node reports Ready (default 120 s). */
  readyTimeoutMs?: number;
  /** How long to wait for another test's node to finish (default 15 min). */
  lockTimeoutMs?: number;
}

export interface NodeTimings {
  /** Waiting for the node lock (another test file's node). */
  lockWaitMs: number;
  /** Spawning containerd until it answers, sandbox image imported. */
  containerdMs: number;
  /** Spawning kubelet until the Node object is Ready. */
  kubeletMs: number;
  totalMs: number;
}

export interface TestNode {
  /** The Node object's name (unique per run); bind pods with spec.nodeName. */
  readonly name: string;
  /** The node's InternalIP (on the harness bridge). */
  readonly ip: string;
  readonly dir: string;
  /** containerd's socket (for ctr and crictl). */
  readonly containerdAddress: string;
  readonly timings: NodeTimings;
  /** Runs ctr in the CRI namespace (k8s.io); resolves with its output. */
  ctr(args: readonly string[]): Promise<string>;
  /** Runs crictl against this node's containerd, or undefined when crictl is not built. */
  readonly crictl: ((args: readonly string[]) => Promise<string>) | undefined;
  /** Lets the runtime pull from `host` ("127.0.0.1:PORT", "localhost:PORT") over plain HTTP. */
  plainHttp(host: string): Promise<void>;
  /** Sends pulls that name `host` to a closed loopback port: a name used only in specs never resolves. */
  unreachable(host: string): Promise<void>;
  /**
   * Imports an OCI (or docker) archive into the CRI namespace, as `ctr images import` does; with
   * `baseName`, an archive whose ref names only a tag (build-image.sh's "0.1.0") is named baseName:tag.
   */
  loadImage(archive: string | Buffer, options?: { baseName?: string }): Promise<void>;
  /** Removes every name of the image `ref` (tag, digest and ID) and waits for containerd to collect it. */
  removeImage(ref: string): Promise<readonly string[]>;
  /** Whether the runtime holds an image under `ref`. */
  hasImage(ref: string): Promise<boolean>;
  /**
   * What a container printed, read from the kubelet's pod log files on the node (no kubectl logs: that
   * would make the apiserver connect to the kubelet, which listens on 127.0.0.1 only). The newest pod of
   * that name; the container's latest run.
   */
  containerLog(namespace: string, pod: string, container: string): Promise<string>;
  /**
   * TCP connections of this network namespace with the node's address or a ClusterIP of this cluster's
   * Services at one end, seen since the node started ("local -> remote"); [] while the network rule
   * holds. Only this cluster's ClusterIPs count: other test files' clusters use the same range.
   */
  offLimitsConnections(): Promise<string[]>;
  /** The last `maxChars` of kubelet's and containerd's output. */
  logs(maxChars?: number): string;
  /** Stops kubelet, every pod process and containerd; unmounts and removes everything. Idempotent. */
  stop(): Promise<void>;
}

/** The kubelet binary of the apiserver's release, as cached by scripts/kube-binary.sh (never built here). */
export async function kubeletBinary(): Promise<string> {
  const fromEnv = process.env['KUBELET'];
  if (fromEnv) {
    if (!existsSync(fromEnv)) throw new Error(`KUBELET=${fromEnv} does not exist`);
    return fromEnv;
  }
  try {
    const { stdout } = await execFileAsync('bash', [
      join(scriptsDir, 'kube-binary.sh'),
      'kubelet',
      '--cached-only',
    ]);
    return stdout.trim();
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? String(err);
    throw new Error(
      `no kubelet binary: set KUBELET or run "bash scripts/kube-binary.sh kubelet" once\n${stderr}`,
    );
  }
}

/** crictl if scripts/go-tool.sh has built it, else undefined (the harness then uses ctr only). */
export async function crictlBinary(): Promise<string | undefined> {
  try {
    const { stdout } = await execFileAsync('bash', [
      join(scriptsDir, 'go-tool.sh'),
      'crictl',
      '--cached-only',
    ]);
    return stdout.trim();
  } catch {
    return undefined;
  }
}

// The one program in every test image: the sandbox's pause (waits for a signal), or a container that
// prints the marker file its image carries and then waits. Static, so the image needs nothing else.
const PROGRAM_SOURCE = `#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
static void stop(int sig) { (void)sig; _exit(0); }
int main(int argc, char **argv) {
  signal(SIGTERM, stop);
  signal(SIGINT, stop);
  if (argc < 2 || strcmp(argv[1], "pause") != 0) {
    char marker[256];
    FILE *f = fopen("/marker", "r");
    size_t n = f ? fread(marker, 1, sizeof marker - 1, f) : 0;
    marker[n] = 0;
    printf("marker: %s\\n", n ? marker : "(none)");
    fflush(stdout);
  }
  for (;;) pause();
}
`;

let program: Promise<Buffer> | undefined;

/** The static test program (compiled once per process with gcc -static). */
export function testProgram(): Promise<Buffer> {
  program ??= (async () => {
    const gcc = requireCommand('gcc');
    const dir = await tempDir('program');
    try {
      await writeFile(join(dir.path, 'pm.c'), PROGRAM_SOURCE);
      await execFileAsync(gcc, ['-static', '-Os', '-s', '-o', join(dir.path, 'pm'), join(dir.path, 'pm.c')]);
      return await readFile(join(dir.path, 'pm'));
    } catch (err) {
      throw new Error(`gcc -static failed (the node tests need gcc and libc6-dev): ${String(err)}`);
    } finally {
      await dir.remove();
    }
  })();
  return program;
}

/** An image whose container prints `marker: <marker>` and then runs until stopped. */
export async function markerImage(marker: string): Promise<BuiltImage> {
  const pm = await testProgram();
  return buildImage({ files: { pm: { content: pm, mode: 0o755 }, marker }, run: { Entrypoint: ['/pm'] } });
}

async function pauseImage(): Promise<BuiltImage> {
  const pm = await testProgram();
  return buildImage({ files: { pm: { content: pm, mode: 0o755 } }, run: { Entrypoint: ['/pm', 'pause'] } });
}

interface NodeLock {
  readonly waitedMs: number;
  release(): Promise<void>;
}

// flock(1) holds the lock for as long as its child (cat) lives; cat ends when this process's end of the
// pipe closes, also when the test process dies, so a crashed run never keeps the lock.
async function takeNodeLock(timeoutMs: number): Promise<NodeLock> {
  const started = performance.now();
  const flock = requireCommand('flock');
  const cmd = withParentDeathSignal(flock, [
    '--exclusive',
    '--close',
    `--timeout=${Math.ceil(timeoutMs / 1000)}`,
    LOCK_PATH,
    'sh',
    '-c',
    'echo locked; exec cat',
  ]);
  const child: ChildProcess = spawn(cmd.command, cmd.args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => {
    stderr += c.toString();
  });
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    child.stdout?.on('data', (c: Buffer) => {
      if (c.toString().includes('locked')) resolve();
    });
    child.on('exit', (code) =>
      reject(
        new Error(`no node lock on ${LOCK_PATH} within ${timeoutMs} ms (flock exit ${code}): ${stderr}`),
      ),
    );
  });
  return {
    waitedMs: performance.now() - started,
    async release() {
      child.stdin?.end();
      await exited;
    },
  };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function killPids(pids: Iterable<number>): Promise<void> {
  const list = [...new Set(pids)].filter((pid) => pid > 1 && pid !== process.pid);
  for (const pid of list) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  for (let i = 0; i < 100 && list.some(alive); i++) await new Promise((r) => setTimeout(r, 20));
}

/** Processes whose command line names `needle` (containerd shims carry their containerd's socket path). */
async function pidsMentioning(needle: string): Promise<number[]> {
  const found: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8');
      if (cmdline.includes(needle)) found.push(Number(entry));
    } catch {
      // exited meanwhile
    }
  }
  return found.filter((pid) => pid !== process.pid);
}

/**
 * The mounted cgroup hierarchies: /sys/fs/cgroup itself on a cgroup v2 machine, else one directory per v1
 * hierarchy (cpu, memory, ..., and the v2 `unified` mount of a hybrid setup like this sandbox's).
 */
async function cgroupHierarchies(): Promise<string[]> {
  if (existsSync(join(CGROUP_ROOT, 'cgroup.controllers'))) return [CGROUP_ROOT];
  const entries = await readdir(CGROUP_ROOT, { withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isDirectory()).map((e) => join(CGROUP_ROOT, e.name));
}

/** Every cgroup directory at or below `relative` in each mounted hierarchy, deepest first. */
async function cgroupDirs(relative: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    let entries: import('node:fs').Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) if (e.isDirectory()) await walk(join(dir, e.name));
    out.push(dir);
  };
  for (const hierarchy of await cgroupHierarchies()) {
    const top = join(hierarchy, relative);
    if (existsSync(top)) await walk(top);
  }
  return out;
}

async function cgroupPids(relative: string): Promise<number[]> {
  const pids: number[] = [];
  for (const dir of await cgroupDirs(relative)) {
    try {
      const text = await readFile(join(dir, 'cgroup.procs'), 'utf8');
      for (const line of text.split('\n')) if (line.trim()) pids.push(Number(line));
    } catch {
      // removed meanwhile
    }
  }
  return pids;
}

/** Kills what is left in the cgroup subtree and removes its directories. */
async function removeCgroups(relative: string): Promise<void> {
  for (let attempt = 0; attempt < 50; attempt++) {
    await killPids(await cgroupPids(relative));
    let left = 0;
    for (const dir of await cgroupDirs(relative)) {
      try {
        await rmdir(dir);
      } catch {
        left++;
      }
    }
    if (left === 0) return;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Mount points at or below `prefix`, deepest (latest) first. */
async function mountsUnder(prefix: string): Promise<string[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  const points: string[] = [];
  for (const line of text.split('\n')) {
    // Field 5 is the mount point, with spaces and such written as octal escapes.
    const point = line
      .split(' ')[4]
      ?.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
    if (point !== undefined && (point === prefix || point.startsWith(prefix))) points.push(point);
  }
  return points.reverse();
}

async function unmountAll(prefix: string): Promise<void> {
  const umount = requireCommand('umount');
  for (let round = 0; round < 5; round++) {
    const points = await mountsUnder(prefix);
    if (points.length === 0) return;
    for (const point of points) {
      try {
        await execFileAsync(umount, [point]);
      } catch {
        await execFileAsync(umount, ['--lazy', point]).catch(() => undefined);
      }
    }
  }
}

interface HostState {
  /** Kernel tunables as they were before the first node changed them. */
  tunables: Record<string, string>;
  /** Host directories that did not exist before (removed again at stop). */
  createdDirs: string[];
}

async function readHostState(): Promise<HostState | undefined> {
  try {
    return JSON.parse(await readFile(HOST_STATE_PATH, 'utf8')) as HostState;
  } catch {
    return undefined;
  }
}

/** Puts back what a node changed outside its directory (this run's or a crashed one's). */
async function restoreHost(state: HostState): Promise<void> {
  for (const [key, value] of Object.entries(state.tunables)) {
    await writeFile(`/proc/sys/${key}`, value).catch(() => undefined);
  }
  for (const dir of state.createdDirs) await rm(dir, { recursive: true, force: true });
  await rm(HOST_STATE_PATH, { force: true });
}

/** CNI result caches (in /var/lib/cni, whatever the config says) that name a node directory. */
async function removeCniResults(mentioning: string): Promise<void> {
  const dir = '/var/lib/cni/results';
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return;
  }
  for (const name of names) {
    const path = join(dir, name);
    const text = await readFile(path, 'utf8').catch(() => '');
    if (text.includes(mentioning)) await rm(path, { force: true });
  }
}

/** Leftovers of a node whose test process died before stop(): safe to remove while holding the lock. */
async function sweepStaleNodes(): Promise<void> {
  const ip = requireCommand('ip');
  const stalePrefix = join(tmpdir(), DIR_PREFIX);
  await killPids(await pidsMentioning(stalePrefix));
  for (const hierarchy of await cgroupHierarchies()) {
    for (const entry of await readdir(hierarchy).catch(() => [] as string[])) {
      if (entry.startsWith(DIR_PREFIX)) await removeCgroups(entry);
    }
  }
  await unmountAll(stalePrefix);
  const { stdout } = await execFileAsync(ip, ['-o', 'link', 'show', 'type', 'bridge']);
  for (const match of stdout.matchAll(/^\d+: ([^:@\s]+)/gm)) {
    if (match[1]?.startsWith(BRIDGE_PREFIX))
      await execFileAsync(ip, ['link', 'del', match[1]]).catch(() => undefined);
  }
  await removeCniResults(stalePrefix);
  for (const entry of await readdir(tmpdir())) {
    if (entry.startsWith(DIR_PREFIX)) await rm(join(tmpdir(), entry), { recursive: true, force: true });
  }
  const state = await readHostState();
  if (state) await restoreHost(state);
}

function containerdConfig(dir: string, hostsDir: string, cniDir: string): string {
  return `version = 2
root = "${dir}/containerd/root"
state = "${dir}/containerd/state"
[grpc]
  address = "${dir}/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${PAUSE_IMAGE}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  # Pod network namespaces are bind-mounted here instead of /var/run/netns.
  netns_mounts_under_state_dir = true
  # The sandbox lacks CAP_SYS_RESOURCE: runc may not lower a container's oom_score_adj below containerd's
  # ("failed to update /proc/self/oom_score_adj: Permission denied" otherwise).
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "${dir}/runc"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "${hostsDir}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "${cniDir}"
`;
}

const ipv4 = (hex: string): string => {
  // /proc/net/tcp prints each address as the 32-bit value in host byte order, in hex.
  const order = endianness() === 'LE' ? [3, 2, 1, 0] : [0, 1, 2, 3];
  return order.map((i) => Number.parseInt(hex.slice(i * 2, i * 2 + 2), 16)).join('.');
};

/**
 * Samples /proc/net/tcp (this process's network namespace, the one kubelet, containerd, the apiserver and
 * host-network pods share) a few times a second for sockets with an off-limits address at either end (a
 * connection to a local address may take it as its source too). Both ends of a connection routed
 * through loopback are in the table and the closing end stays in TIME_WAIT for a minute, so even short
 * connections are seen; a SYN to a ClusterIP that nobody answers sits in SYN_SENT for seconds. Sockets
 * present at the start (an earlier node's TIME_WAIT) are not counted.
 */
function watchOffLimits(): { sample(): Promise<void>; found(): string[]; stop(): void } {
  const seen = new Set<string>();
  const before = new Set<string>();
  let first = true;
  const sample = async (): Promise<void> => {
    const text = await readFile('/proc/net/tcp', 'utf8').catch(() => '');
    for (const line of text.split('\n').slice(1)) {
      const [, local, remote, state] = line.trim().split(/\s+/);
      if (!local || !remote || state === '0A') continue; // 0A: LISTEN
      const [localIp = '', localPort = ''] = local.split(':');
      const [remoteIp = '', remotePort = ''] = remote.split(':');
      if (!OFF_LIMITS.test(ipv4(localIp)) && !OFF_LIMITS.test(ipv4(remoteIp))) continue;
      const key = `${ipv4(localIp)}:${Number.parseInt(localPort, 16)} -> ${ipv4(remoteIp)}:${Number.parseInt(remotePort, 16)}`;
      (first ? before : seen).add(key);
    }
    first = false;
  };
  void sample();
  const timer = setInterval(() => void sample(), 200);
  timer.unref();
  return {
    sample,
    found: () => [...seen].filter((c) => !before.has(c)),
    stop: () => clearInterval(timer),
  };
}

/** Starts containerd (CRI on) and a kubelet registered with `kube`; resolves once the Node is Ready. */
export async function startNode(kube: Kube, options: NodeOptions = {}): Promise<TestNode> {
  const started = performance.now();
  const readyTimeoutMs = options.readyTimeoutMs ?? 120_000;
  const kubelet = await kubeletBinary();
  const crictl = await crictlBinary();
  const containerdBinary = requireCommand('containerd');
  const ctrBinary = requireCommand('ctr');
  const ip = requireCommand('ip');
  requireCommand('runc');
  const pause = await pauseImage();

  const lock = await takeNodeLock(options.lockTimeoutMs ?? 15 * 60_000);
  const id = randomBytes(3).toString('hex');
  const name = `${DIR_PREFIX}${id}`;
  const bridge = `${BRIDGE_PREFIX}${id}`;
  const cgroupRoot = `/${name}`;
  let dir = '';
  let containerd: Daemon | undefined;
  let kubeletDaemon: Daemon | undefined;
  let stopped = false;

  const onExit = (): void => {
    for (const d of [kubeletDaemon, containerd]) {
      if (d && !d.exited()) {
        try {
          process.kill(d.pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
  };

  const run = (command: string, args: readonly string[], timeout = 60_000): Promise<string> =>
    new Promise((resolve, reject) => {
      execFile(command, args, { timeout, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) =>
        err
          ? reject(new Error(`${command} ${args.join(' ')} failed: ${err.message}\n${stdout}${stderr}`))
          : resolve(stdout + stderr),
      );
    });
  const address = (): string => join(dir, 'containerd.sock');
  const ctr = (args: readonly string[]): Promise<string> =>
    run(ctrBinary, ['--address', address(), '--namespace', 'k8s.io', ...args]);
  const crictlRun = crictl
    ? (args: readonly string[]): Promise<string> =>
        run(crictl, [
          `--runtime-endpoint=unix://${address()}`,
          `--image-endpoint=unix://${address()}`,
          '--timeout=30s',
          ...args,
        ])
    : undefined;

  const teardown = async (): Promise<void> => {
    await kubeletDaemon?.stop(5000);
    if (containerd && !containerd.exited()) {
      // CRI teardown first: it runs CNI DEL and unmounts; the steps after it catch what is left.
      if (crictlRun) await crictlRun(['rmp', '--all', '--force']).catch(() => undefined);
      else {
        const ids = (await ctr(['tasks', 'list', '--quiet']).catch(() => '')).split('\n').filter(Boolean);
        for (const task of ids) await ctr(['tasks', 'delete', '--force', task]).catch(() => undefined);
      }
    }
    await killPids(await cgroupPids(cgroupRoot));
    await containerd?.stop(5000);
    if (dir) await killPids(await pidsMentioning(address()));
    if (dir) await unmountAll(dir);
    await removeCgroups(cgroupRoot);
    await execFileAsync(ip, ['link', 'del', bridge]).catch(() => undefined);
    if (dir) await removeCniResults(dir);
    const state = await readHostState();
    if (state) await restoreHost(state);
    process.removeListener('exit', onExit);
    offLimits.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  };

  const offLimits = watchOffLimits();
  try {
    await sweepStaleNodes();
    const tmp = await tempDir(`node-${id}`);
    dir = tmp.path;
    process.once('exit', onExit);

    // What the kubelet changes outside its directory, recorded before it starts.
    const tunables: Record<string, string> = {};
    for (const key of KERNEL_TUNABLES) {
      const value = (await readFile(`/proc/sys/${key}`, 'utf8').catch(() => '')).trim();
      if (value) tunables[key] = value;
    }
    const state: HostState = { tunables, createdDirs: HOST_DIRS.filter((d) => !existsSync(d)) };
    await writeFile(HOST_STATE_PATH, JSON.stringify(state));

    const hostsDir = join(dir, 'hosts');
    const cniDir = join(dir, 'cni');
    await Promise.all([mkdir(hostsDir), mkdir(cniDir), mkdir(join(dir, 'kubelet'))]);

    // The bridge holds the node IP and is the pods' network (no gateway, no masquerading: nothing routed).
    await execFileAsync(ip, ['link', 'add', bridge, 'type', 'bridge']);
    await execFileAsync(ip, ['addr', 'add', `${NODE_IP}/24`, 'dev', bridge]);
    await execFileAsync(ip, ['link', 'set', bridge, 'up']);
    await writeFile(
      join(cniDir, '10-pullmap.conflist'),
      JSON.stringify({
        cniVersion: '1.0.0',
        name,
        plugins: [
          {
            type: 'bridge',
            bridge,
            isGateway: false,
            ipMasq: false,
            ipam: {
              type: 'host-local',
              ranges: [[{ subnet: SUBNET, rangeStart: '10.251.0.10' }]],
              dataDir: join(dir, 'cni-ipam'),
            },
          },
        ],
      }),
    );

    const configPath = join(dir, 'containerd.toml');
    await writeFile(configPath, containerdConfig(dir, hostsDir, cniDir));
    const t0 = performance.now();
    const containerdCmd = withParentDeathSignal(containerdBinary, ['--config', configPath]);
    containerd = await startDaemon({
      name: 'containerd',
      command: containerdCmd.command,
      args: containerdCmd.args,
      readyTimeoutMs: 30_000,
      ready: async () => {
        await execFileAsync(ctrBinary, ['--address', address(), 'version'], { timeout: 5000 });
        return true;
      },
    });
    const archive = join(dir, 'pause.tar');
    await writeFile(archive, ociArchive(pause, PAUSE_IMAGE));
    await ctr(['images', 'import', archive]);
    const containerdMs = performance.now() - t0;

    // kubelet's pods go below a cgroup of their own in every hierarchy, removed as a whole at stop().
    for (const hierarchy of await cgroupHierarchies()) {
      const cg = join(hierarchy, cgroupRoot);
      await mkdir(cg, { recursive: true });
      if (hierarchy === join(CGROUP_ROOT, 'cpuset')) {
        // A new v1 cpuset starts with no CPUs and no memory nodes: copy the parent's.
        for (const file of ['cpuset.cpus', 'cpuset.mems']) {
          await writeFile(join(cg, file), await readFile(join(hierarchy, file), 'utf8'));
        }
      }
    }

    const [port, healthzPort] = await Promise.all([freePort(), freePort()]);
    const kubeletConfig = join(dir, 'kubelet.yaml');
    await writeFile(
      kubeletConfig,
      stringify({
        apiVersion: 'kubelet.config.k8s.io/v1beta1',
        kind: 'KubeletConfiguration',
        // The kubelet's API (logs, exec, metrics) on loopback only, and for nobody: no test needs the
        // apiserver to call the kubelet, so it never connects to the node's address.
        address: '127.0.0.1',
        port,
        readOnlyPort: 0,
        healthzBindAddress: '127.0.0.1',
        healthzPort,
        containerRuntimeEndpoint: `unix://${address()}`,
        // cgroup v1 with a unified mount here: cgroupfs, and v1 explicitly allowed (1.35 refuses it by default).
        cgroupDriver: 'cgroupfs',
        cgroupRoot,
        failCgroupV1: false,
        failSwapOn: false,
        podLogsDir: join(dir, 'pod-logs'),
        // Serving certificate: kubelet signs its own (in --root-dir). No client is authenticated (no
        // anonymous access, no client CA, no webhook), so every request to its API is refused.
        authentication: { anonymous: { enabled: false }, webhook: { enabled: false } },
        authorization: { mode: 'AlwaysAllow' },
        // The disk may be fuller than the defaults like: no evictions, no image garbage collection.
        evictionHard: { 'nodefs.available': '0%', 'nodefs.inodesFree': '0%', 'imagefs.available': '0%' },
        imageGCHighThresholdPercent: 100,
        localStorageCapacityIsolation: false,
        enforceNodeAllocatable: [],
        // No KUBE-FIREWALL and canary chains in the machine's iptables.
        makeIPTablesUtilChains: false,
        protectKernelDefaults: false,
        syncFrequency: '10s',
        fileCheckFrequency: '10s',
        nodeStatusUpdateFrequency: '2s',
        resolvConf: '/etc/resolv.conf',
      }),
    );
    const t1 = performance.now();
    const kubeletCmd = withParentDeathSignal(kubelet, [
      `--config=${kubeletConfig}`,
      `--kubeconfig=${kube.kubeconfigPath}`,
      `--root-dir=${join(dir, 'kubelet')}`,
      `--hostname-override=${name}`,
      `--node-ip=${NODE_IP}`,
      '--v=2',
    ]);
    kubeletDaemon = await startDaemon({
      name: 'kubelet',
      command: kubeletCmd.command,
      args: kubeletCmd.args,
      readyTimeoutMs,
      ready: async () => {
        const ready = await kube
          .kubectl(['get', 'node', name, '-o', 'jsonpath={.status.conditions[?(@.type=="Ready")].status}'])
          .catch(() => '');
        if (ready === 'True') return true;
        await new Promise((r) => setTimeout(r, 200));
        return false;
      },
    });
    const kubeletMs = performance.now() - t1;

    const node: TestNode = {
      name,
      ip: NODE_IP,
      dir,
      containerdAddress: address(),
      timings: { lockWaitMs: lock.waitedMs, containerdMs, kubeletMs, totalMs: performance.now() - started },
      ctr,
      crictl: crictlRun,
      async plainHttp(host) {
        await mkdir(join(hostsDir, host), { recursive: true });
        await writeFile(
          join(hostsDir, host, 'hosts.toml'),
          `server = "http://${host}"\n\n[host."http://${host}"]\n  capabilities = ["pull", "resolve"]\n`,
        );
      },
      async unreachable(host) {
        await mkdir(join(hostsDir, host), { recursive: true });
        await writeFile(join(hostsDir, host, 'hosts.toml'), 'server = "http://127.0.0.1:1"\n');
      },
      async loadImage(input, loadOptions = {}) {
        let path = input as string;
        if (Buffer.isBuffer(input)) {
          path = join(dir, `image-${randomBytes(4).toString('hex')}.tar`);
          await writeFile(path, input);
        }
        const baseName = loadOptions.baseName ? ['--base-name', loadOptions.baseName] : [];
        await ctr(['images', 'import', ...baseName, path]);
      },
      containerLog: (namespace, podName, container) =>
        readContainerLog(join(dir, 'pod-logs'), namespace, podName, container),
      async removeImage(ref) {
        const rows = (await ctr(['images', 'list']))
          .split('\n')
          .slice(1)
          .map((l) => l.split(/\s+/));
        const digest = rows.find((r) => r[0] === ref)?.[2];
        if (!digest) return [];
        const names = rows.filter((r) => r[2] === digest).map((r) => r[0] ?? '');
        await ctr(['images', 'remove', '--sync', ...names]);
        return names;
      },
      async hasImage(ref) {
        return (await ctr(['images', 'list', '--quiet'])).split('\n').includes(ref);
      },
      async offLimitsConnections() {
        await offLimits.sample();
        const clusterIps = new Set(
          (await kube.kubectl(['get', 'services', '-A', '-o', 'jsonpath={.items[*].spec.clusterIPs[*]}']))
            .split(/\s+/)
            .filter(Boolean),
        );
        return offLimits.found().filter((c) => {
          const ends = c.split(' -> ').map((end) => end.slice(0, end.lastIndexOf(':')));
          return ends.some((ip) => ip === NODE_IP || clusterIps.has(ip));
        });
      },
      logs: (maxChars = 16_000) =>
        `--- kubelet ---\n${kubeletDaemon?.output().slice(-maxChars) ?? ''}\n--- containerd ---\n${containerd?.output().slice(-maxChars) ?? ''}`,
      async stop() {
        if (stopped) return;
        stopped = true;
        await kube.kubectl(['delete', 'node', name, '--wait=false']).catch(() => undefined);
        try {
          await teardown();
        } finally {
          await lock.release();
        }
      },
    };
    return node;
  } catch (err) {
    const output = `${kubeletDaemon?.output().slice(-6000) ?? ''}${containerd?.output().slice(-3000) ?? ''}`;
    await teardown().catch(() => undefined);
    await lock.release();
    if (output && !String(err).includes(output.slice(-200))) (err as Error).message += `\n${output}`;
    throw err;
  }
}

/**
 * A container's output from the kubelet's log files (`<podLogsDir>/<ns>_<pod>_<uid>/<container>/<n>.log`,
 * CRI format: `<time> <stream> <P|F> <text>`, P a partial line continued by the next entry).
 */
async function readContainerLog(
  podLogsDir: string,
  namespace: string,
  pod: string,
  container: string,
): Promise<string> {
  const prefix = `${namespace}_${pod}_`;
  const candidates: { path: string; mtime: number }[] = [];
  for (const entry of await readdir(podLogsDir).catch(() => [] as string[])) {
    if (!entry.startsWith(prefix)) continue;
    const containerDir = join(podLogsDir, entry, container);
    for (const file of await readdir(containerDir).catch(() => [] as string[])) {
      if (!file.endsWith('.log')) continue;
      const path = join(containerDir, file);
      candidates.push({ path, mtime: (await stat(path)).mtimeMs });
    }
  }
  const newest = candidates.sort((a, b) => b.mtime - a.mtime)[0];
  if (!newest) return '';
  let out = '';
  for (const line of (await readFile(newest.path, 'utf8')).split('\n')) {
    const match = /^\S+ (?:stdout|stderr) ([PF]) (.*)$/.exec(line);
    if (!match) continue;
    out += match[1] === 'F' ? `${match[2]}\n` : match[2];
  }
  return out;
}

/** A pod's events as "Reason: message" lines, oldest first (what `kubectl describe pod` shows). */
export async function podEvents(kube: Kube, namespace: string, pod: string): Promise<string[]> {
  const json = JSON.parse(
    await kube.kubectl([
      'get',
      'events',
      '-n',
      namespace,
      '--field-selector',
      `involvedObject.kind=Pod,involvedObject.name=${pod}`,
      '-o',
      'json',
    ]),
  ) as {
    items: Array<{
      reason?: string;
      message?: string;
      count?: number;
      firstTimestamp?: string;
      eventTime?: string;
    }>;
  };
  return json.items
    .sort((a, b) =>
      String(a.firstTimestamp ?? a.eventTime).localeCompare(String(b.firstTimestamp ?? b.eventTime)),
    )
    .map((e) => `${e.reason}: ${e.message}${e.count && e.count > 1 ? ` (x${e.count})` : ''}`);
}

export interface RunningPod {
  /** The pod as the apiserver stores it once its container runs. */
  readonly pod: Record<string, any>;
  /** From the call until the container was reported running. */
  readonly startMs: number;
}

// Waiting reasons that will not turn into a running container on their own within a test's time.
const FAILED_WAITING =
  /^(ErrImagePull|ImagePullBackOff|ErrImageNeverPull|InvalidImageName|CreateContainerConfigError|CreateContainerError|CrashLoopBackOff|RunContainerError)$/;

/**
 * Waits until every container of the pod runs; fails at once when one cannot (a failed pull, a crash),
 * with the container states and the pod's events.
 */
export async function waitForPodRunning(
  kube: Kube,
  namespace: string,
  name: string,
  timeoutMs = 90_000,
): Promise<RunningPod> {
  const started = performance.now();
  let last: Record<string, any> | undefined;
  const failure = (why: string): Promise<Error> =>
    podEvents(kube, namespace, name)
      .catch(() => [] as string[])
      .then(
        (events) =>
          new Error(
            `pod ${namespace}/${name} ${why}: ${JSON.stringify(last?.['status']?.containerStatuses ?? last?.['status'])}\nevents:\n${events.join('\n')}`,
          ),
      );
  while (performance.now() - started < timeoutMs) {
    last = JSON.parse(await kube.kubectl(['get', 'pod', '-n', namespace, name, '-o', 'json'])) as Record<
      string,
      any
    >;
    const statuses = (last['status']?.containerStatuses ?? []) as Array<Record<string, any>>;
    if (
      last['status']?.phase === 'Running' &&
      statuses.length > 0 &&
      statuses.every((s) => s['state']?.running)
    ) {
      return { pod: last, startMs: performance.now() - started };
    }
    const stuck = statuses.find((s) => FAILED_WAITING.test(String(s['state']?.waiting?.reason ?? '')));
    if (stuck) throw await failure(`cannot run (${stuck['state'].waiting.reason})`);
    await new Promise((r) => setTimeout(r, 250));
  }
  throw await failure(`not running after ${timeoutMs} ms`);
}
