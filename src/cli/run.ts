import { hostname } from 'node:os';
import { type ParseArgsOptionsConfig, parseArgs } from 'node:util';
import pkg from '../../package.json' with { type: 'json' };
import { parseDuration } from '../core/duration.ts';
import { type DecisionSettings, decisionSettings, parseCacheUpstreams } from '../core/mapping/index.ts';
import { type ListenAddress, parseListenAddress } from '../core/net.ts';
import { proxySettingsFromEnv } from '../core/proxy.ts';
import { printable } from '../core/text.ts';
import { cache, cacheLs } from './cache.ts';
import { check } from './check.ts';
import { UsageError } from './errors.ts';
import { existenceFromFlags, type RegistryFlags } from './existence.ts';
import { explain } from './explain.ts';
import type { CliIO } from './io.ts';
import { parseByteSize } from './maps.ts';
import { rewrite } from './rewrite.ts';

/** The one source of the version: package.json, bundled in at build time. */
const VERSION: string = pkg.version;

/** One flag: what parseArgs needs, plus its help line (arg: the value's placeholder). */
interface FlagSpec {
  readonly type: 'string' | 'boolean';
  readonly short?: string;
  readonly multiple?: boolean;
  readonly default?: string | boolean;
  readonly arg?: string;
  readonly help: string;
  /** What happens without the flag, when that is not a literal default. */
  readonly otherwise?: string;
}
type Flags = Readonly<Record<string, FlagSpec>>;

const MAX_INPUT_FLAG = {
  'max-input-bytes': {
    type: 'string',
    default: '16Mi',
    arg: 'SIZE',
    help: 'refuse a config, manifest or stdin input larger than this (bytes, or with Ki, Mi, Gi)',
  },
} as const satisfies Flags;

const REGISTRY_FLAGS = {
  'plain-http': {
    type: 'string',
    multiple: true,
    arg: 'HOST',
    help: 'talk plain HTTP to this registry (loopback registries); repeatable',
  },
  'registry-ca': {
    type: 'string',
    multiple: true,
    arg: 'FILE',
    help: 'also trust this CA (PEM) for registries; repeatable',
  },
  'docker-config': {
    type: 'string',
    arg: 'FILE',
    help: 'registry credentials from a docker config.json',
    otherwise: 'anonymous',
  },
  'probe-timeout': {
    type: 'string',
    default: '5s',
    arg: 'DUR',
    help: 'how long one decision waits for registries (when: IfExists)',
  },
} as const satisfies Flags;

/** copy and serve's fill loop upload blobs: an upload has no total time limit, only this one. */
const UPLOAD_FLAGS = {
  'upload-stall-timeout': {
    type: 'string',
    default: '60s',
    arg: 'DUR',
    help: 'fail a blob upload when the target takes no bytes, or gives no answer after the body, for this long (1s to 1h)',
  },
} as const satisfies Flags;

/** check warns with it; serve (cluster mode) writes the same warning into the maps' status. */
const CACHE_UPSTREAMS_FLAG = {
  'cache-upstreams': {
    type: 'string',
    arg: 'HOST,...',
    help: "the cache's upstream hosts (the chart's cache.config.upstreams): warn about maps with cache.enabled whose targets are not among them",
    otherwise: 'not checked',
  },
} as const satisfies Flags;

/** The settings every decision is made with: serve's, and explain, rewrite and copy take the same so they decide as the webhook does. */
const DECISION_FLAGS = {
  'cache-address': {
    type: 'string',
    default: 'localhost:7439',
    arg: 'HOST:PORT',
    help: "the pullmap cache as pods name it, for maps with cache.enabled (the webhook's --cache-address)",
  },
  'exclude-namespaces': {
    type: 'string',
    default: 'kube-system,pullmap-system',
    arg: 'NS,...',
    help: "namespaces whose pods are never changed (the webhook's --exclude-namespaces)",
  },
} as const satisfies Flags;

/** DecisionSettings from DECISION_FLAGS' values. */
function settingsFrom(values: { 'cache-address': string; 'exclude-namespaces': string }): DecisionSettings {
  return decisionSettings({
    cacheAddress: values['cache-address'],
    excludedNamespaces: values['exclude-namespaces']
      .split(',')
      .map((n) => n.trim())
      .filter(Boolean),
  });
}

const CONFIG_HELP =
  'map objects: a file, a directory (its .yaml, .yml and .json files, like kubectl -f DIR) or - for stdin; repeatable, read as one set';

const EXPLAIN_FLAGS = {
  config: {
    type: 'string',
    short: 'c',
    multiple: true,
    arg: 'PATH',
    help: CONFIG_HELP,
    otherwise: 'the embedded default maps, examples/default.yaml, which `npm start` serves; said on stderr',
  },
  namespace: { type: 'string', short: 'n', default: 'default', arg: 'NS', help: "the pod's namespace" },
  labels: {
    type: 'string',
    short: 'l',
    arg: 'k=v,...',
    help: "the POD's labels, for podSelector (the namespace's labels are --namespace-labels)",
  },
  'namespace-labels': {
    type: 'string',
    arg: 'k=v,...',
    help: "the NAMESPACE's labels, for a ClusterImageMap's namespaceSelector; kubernetes.io/metadata.name=NS is always set",
  },
  'pull-policy': {
    type: 'string',
    arg: 'Always|IfNotPresent|Never',
    help: "the container's imagePullPolicy",
    otherwise: "Kubernetes' default: Always for :latest or no tag, else IfNotPresent",
  },
  output: { type: 'string', short: 'o', default: 'text', arg: 'text|json|yaml', help: 'output format' },
  pod: {
    type: 'string',
    arg: 'NAMESPACE/NAME',
    help: "explain a live pod's images (reads the pod, and the cluster's maps unless --config is given)",
  },
  kubeconfig: {
    type: 'string',
    arg: 'FILE',
    help: "with --pod: the cluster's credentials",
    otherwise: "$KUBECONFIG, ~/.kube/config, else the pod's service account",
  },
  ...DECISION_FLAGS,
  ...MAX_INPUT_FLAG,
  ...REGISTRY_FLAGS,
} as const satisfies Flags;

const REWRITE_FLAGS = {
  file: {
    type: 'string',
    short: 'f',
    arg: 'FILE|-',
    help: 'the manifests (a YAML stream; - for stdin, as a Helm post-renderer); required',
  },
  config: {
    type: 'string',
    short: 'c',
    multiple: true,
    arg: 'PATH',
    help: `${CONFIG_HELP}; required (examples/default.yaml is the embedded default)`,
  },
  namespace: {
    type: 'string',
    short: 'n',
    default: 'default',
    arg: 'NS',
    help: 'namespace of the objects that name none (as `helm install -n NS` would place them)',
  },
  'namespace-labels': {
    type: 'string',
    arg: 'k=v,...',
    help: "the labels of the objects' namespace, for a ClusterImageMap's namespaceSelector; kubernetes.io/metadata.name is always set",
  },
  ...DECISION_FLAGS,
  ...MAX_INPUT_FLAG,
  ...REGISTRY_FLAGS,
} as const satisfies Flags;

const CHECK_FLAGS = {
  config: { type: 'string', short: 'c', multiple: true, arg: 'PATH', help: `${CONFIG_HELP}; required` },
  output: { type: 'string', short: 'o', default: 'text', arg: 'text|json', help: 'output format' },
  ...CACHE_UPSTREAMS_FLAG,
  ...MAX_INPUT_FLAG,
} as const satisfies Flags;

const COPY_FLAGS = {
  config: { type: 'string', short: 'c', multiple: true, arg: 'PATH', help: `${CONFIG_HELP}; required` },
  file: {
    type: 'string',
    short: 'f',
    arg: 'FILE|-',
    help: 'copy the images of these manifests too (- for stdin)',
    otherwise: 'only the IMAGE arguments',
  },
  namespace: { type: 'string', short: 'n', default: 'default', arg: 'NS', help: "the pods' namespace" },
  platform: {
    type: 'string',
    multiple: true,
    arg: 'OS/ARCH',
    help: 'copy only these platforms of a multi-platform image (its index and tag are then not pushed); repeatable',
    otherwise: 'every platform',
  },
  jobs: { type: 'string', default: '2', arg: 'N', help: 'images copied at once (1 to 16)' },
  ...DECISION_FLAGS,
  ...MAX_INPUT_FLAG,
  ...REGISTRY_FLAGS,
  ...UPLOAD_FLAGS,
} as const satisfies Flags;

const SERVE_FLAGS = {
  config: {
    type: 'string',
    short: 'c',
    multiple: true,
    arg: 'PATH',
    help: 'map objects (file mode): a file or a directory (its .yaml, .yml and .json files, like kubectl -f DIR); repeatable, read as one set and re-read when a file changes, is added or removed',
    otherwise: 'the embedded default maps, examples/default.yaml',
  },
  'maps-from': {
    type: 'string',
    default: 'file',
    arg: 'file|cluster',
    help: "file: --config or the embedded default; cluster: the cluster's ImageMap/ClusterImageMap objects",
  },
  kubeconfig: {
    type: 'string',
    arg: 'FILE',
    help: "the cluster's credentials: its maps (cluster mode) or namespace labels for namespaceSelector (file mode)",
    otherwise: 'in a pod: its service account; cluster mode also $KUBECONFIG, ~/.kube/config',
  },
  listen: { type: 'string', default: '0.0.0.0:8443', arg: 'HOST:PORT', help: 'address to serve on' },
  'tls-cert': { type: 'string', arg: 'FILE', help: 'serving certificate (PEM), re-read when it changes' },
  'tls-key': { type: 'string', arg: 'FILE', help: 'its private key (PEM)' },
  'no-tls': {
    type: 'boolean',
    default: false,
    help: 'serve plain HTTP instead (loopback addresses only: the apiserver needs HTTPS)',
  },
  deadline: {
    type: 'string',
    default: '3s',
    arg: 'DUR',
    help: "time for registry questions in one review; keep it below the webhook's timeoutSeconds",
  },
  'failure-policy': {
    type: 'string',
    default: 'Ignore',
    arg: 'Ignore|Fail',
    help: "on pullmap's own failure: admit the pod unchanged with a warning, or refuse it",
  },
  ...DECISION_FLAGS,
  'log-level': {
    type: 'string',
    default: 'info',
    arg: 'debug|info|warn|error',
    help: 'debug logs each decision',
  },
  'shutdown-delay': {
    type: 'string',
    default: '5s',
    arg: 'DUR',
    help: 'on SIGTERM, time between failing /readyz and closing the listener',
  },
  'shutdown-grace': {
    type: 'string',
    default: '25s',
    arg: 'DUR',
    help: 'time in-flight reviews get to finish after that',
  },
  'max-request-bytes': {
    type: 'string',
    default: String(3 * 1024 * 1024),
    arg: 'BYTES',
    help: "largest AdmissionReview body accepted (the apiserver's own request limit); larger ones are answered by the failure policy",
  },
  'max-inflight-bytes': {
    type: 'string',
    arg: 'BYTES',
    help: 'review bytes held at once across requests; reviews over it are answered at once by the failure policy',
    otherwise: '4 x --max-request-bytes',
  },
  'health-listen': {
    type: 'string',
    arg: 'HOST:PORT',
    help: 'also serve /healthz and /readyz over plain HTTP on a listener of their own, for the probes',
    otherwise: 'health answers only on --listen',
  },
  'reload-interval': {
    type: 'string',
    default: '10s',
    arg: 'DUR',
    help: 'how often --config and the TLS files are checked for changes',
  },
  'lease-namespace': {
    type: 'string',
    arg: 'NS',
    help: "cluster mode: namespace of the leader Lease and of ClusterImageMaps' pull secrets",
    otherwise: '$POD_NAMESPACE, else pullmap-system',
  },
  identity: {
    type: 'string',
    arg: 'NAME',
    help: "cluster mode: this replica's name in the Lease",
    otherwise: '$POD_NAME, else HOST-PID',
  },
  'no-leader-election': {
    type: 'boolean',
    default: false,
    help: 'cluster mode: write map status without holding the Lease (one replica only)',
  },
  'no-pull-secret-copy': {
    type: 'boolean',
    default: false,
    help: "cluster mode: never read or write Secrets (maps' pullSecret copies are off; their status says so)",
  },
  'recheck-interval': {
    type: 'string',
    default: '60s',
    arg: 'DUR',
    help: 'cluster mode: how often map status is re-analysed without a change',
  },
  'on-rejected-update': {
    type: 'string',
    default: 'KeepLastAccepted',
    arg: 'KeepLastAccepted|Undeploy',
    help: 'cluster mode: what an invalid edit of an accepted map does',
  },
  'cache-upstreams': {
    ...CACHE_UPSTREAMS_FLAG['cache-upstreams'],
    help: "cluster mode: the cache's upstream hosts (the chart passes cache.config.upstreams); maps with cache.enabled whose targets are not among them get CacheTargetsProxied=False in their status",
  },
  ...REGISTRY_FLAGS,
  'upload-stall-timeout': {
    ...UPLOAD_FLAGS['upload-stall-timeout'],
    help: `cluster mode (fill): ${UPLOAD_FLAGS['upload-stall-timeout'].help}`,
  },
} as const satisfies Flags;

const CACHE_FLAGS = {
  config: {
    type: 'string',
    short: 'c',
    arg: 'FILE',
    help: 'the cache config (every field: examples/cache/cache.yaml); required',
  },
  listen: { type: 'string', arg: 'HOST:PORT', help: 'address to serve on', otherwise: "the config's listen" },
  ...MAX_INPUT_FLAG,
} as const satisfies Flags;

/** `pullmap cache ls`: what a running cache holds. */
const CACHE_LS_FLAGS = {
  config: {
    type: 'string',
    short: 'c',
    arg: 'FILE',
    help: "the cache's config: its listen address is asked",
  },
  url: {
    type: 'string',
    arg: 'URL',
    help: 'the running cache to ask (http://HOST:PORT)',
    otherwise: '--config',
  },
  output: { type: 'string', short: 'o', arg: 'json', help: 'output format', otherwise: 'a table' },
} as const satisfies Flags;

/** Each command's synopsis, what it does, and its flags: `pullmap COMMAND --help` prints them. */
const COMMANDS = {
  explain: {
    synopsis: [
      'pullmap explain [IMAGE...] [--config PATH]... [-n NS] [--labels k=v,...] [--namespace-labels k=v,...]',
      'pullmap explain --pod NAMESPACE/NAME [--kubeconfig FILE] [--config PATH]...',
    ],
    about: `Where each image (arguments, or stdin one per line) is pulled from, and why: the webhook's own
decision. --pod: each image of a live pod (containers and image volumes): its original, what it was mapped
to and by which map entry, and what the maps decide now.`,
    flags: EXPLAIN_FLAGS,
  },
  rewrite: {
    synopsis: ['pullmap rewrite -f FILE|- --config PATH... [--namespace NS] [--namespace-labels k=v,...]'],
    about: `Rewrite the images of Kubernetes manifests (containers and image volumes of pods and pod
templates); every other byte is kept. As a Helm post-renderer: the plugin in deploy/helm-plugin (Helm 4:
--post-renderer pullmap --post-renderer-args --config=maps.yaml), or its render.sh (Helm 3).`,
    flags: REWRITE_FLAGS,
  },
  check: {
    synopsis: ['pullmap check --config PATH... [--output text|json] [--cache-upstreams HOST,...]'],
    about: `Validate map objects: every error and conflict, with the field and the fix (exit 1 if any, 2 when
the input cannot be read or parsed).`,
    flags: CHECK_FLAGS,
  },
  copy: {
    synopsis: ['pullmap copy [IMAGE...] [-f FILE|-] --config PATH... [--platform OS/ARCH]... [--jobs N]'],
    about: `Copy each image (arguments, or the images of the manifests in FILE) into the first target its mapping
names, by digest and byte for byte, the tag last; progress and a summary on stderr (exit 1 if any failed).`,
    flags: COPY_FLAGS,
  },
  serve: {
    synopsis: [
      'pullmap serve [--config PATH]... [--kubeconfig FILE] (--tls-cert FILE --tls-key FILE | --no-tls) ...',
      'pullmap serve --maps-from cluster [--kubeconfig FILE] (--tls-cert FILE --tls-key FILE | --no-tls) ...',
    ],
    about: `The admission webhook (POST /mutate-pods; /healthz, /readyz, /metrics). File mode: maps from --config
or the embedded default; a ClusterImageMap's namespaceSelector reads namespace labels from the cluster
(--kubeconfig, or in a pod its service account). Cluster mode: the cluster's map objects (list-watch; the
Lease holder writes their status and copies pull secrets; POST /validate-maps checks map objects).`,
    flags: SERVE_FLAGS,
  },
  cache: {
    synopsis: [
      'pullmap cache --config FILE [--listen HOST:PORT]',
      'pullmap cache ls (--config FILE | --url URL) [-o json]',
    ],
    about: `Run the OCI pull-through cache until SIGTERM; or (ls) list what a running one holds: repositories,
tags, sizes, last use, and the store's use against maxSize.`,
    flags: CACHE_FLAGS,
  },
} as const satisfies Record<string, { synopsis: readonly string[]; about: string; flags: Flags }>;
type Command = keyof typeof COMMANDS;

const HELP_WIDTH = 104;
const FLAG_COLUMN = 34;

/** Words of `text` in lines of at most `width` characters. */
function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (line !== '' && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line === '' ? word : `${line} ${word}`;
  }
  if (line !== '') lines.push(line);
  return lines;
}

function flagLines(flags: Flags): string {
  const out: string[] = [];
  for (const [name, spec] of Object.entries(flags)) {
    const left = `  ${spec.short ? `-${spec.short}, ` : '    '}--${name}${spec.arg ? ` ${spec.arg}` : ''}`;
    const fallback =
      spec.otherwise ?? (typeof spec.default === 'string' && spec.default !== '' ? spec.default : undefined);
    const help = `${spec.help}${fallback === undefined ? '' : ` (default: ${fallback})`}`;
    const text = wrap(help, HELP_WIDTH - FLAG_COLUMN);
    if (left.length < FLAG_COLUMN) out.push(`${left.padEnd(FLAG_COLUMN)}${text.shift()}`);
    else out.push(left);
    for (const l of text) out.push(`${' '.repeat(FLAG_COLUMN)}${l}`);
  }
  return out.join('\n');
}

const aboutLines = (about: string): string =>
  wrap(about, HELP_WIDTH - 2)
    .map((l) => `  ${l}`)
    .join('\n');

const usageLine = (command: Command): string => `Usage: ${COMMANDS[command].synopsis[0]}`;

function usageOf(command: Command): string {
  const { synopsis, about, flags } = COMMANDS[command];
  const lines = synopsis.map((s, i) => `${i === 0 ? 'Usage: ' : '       '}${s}`);
  const aboutText = aboutLines(about);
  return `${lines.join('\n')}\n${aboutText}\n\nFlags:\n${flagLines(flags)}\n`;
}

const HELP = `pullmap ${VERSION}: decides where every container image is pulled from

${(Object.keys(COMMANDS) as Command[])
  .map(
    (c) =>
      `${COMMANDS[c].synopsis.map((s, i) => `${i === 0 ? 'Usage: ' : '       '}${s}`).join('\n')}\n${aboutLines(COMMANDS[c].about)}\n`,
  )
  .join('\n')}
Run "pullmap COMMAND --help" for each command's flags, with their defaults. Exit codes: 0 ok, 1 problems
found (check), 2 usage or unusable input. pullmap prints no colour (NO_COLOR needs nothing).
`;

/**
 * parseArgs with the errors a user can act on: an unknown flag is named with the command's usage line,
 * found from parseArgs' tokens rather than its message.
 */
function parseFlags<O extends ParseArgsOptionsConfig>(
  command: Command,
  args: readonly string[],
  options: O,
  allowPositionals = false,
) {
  const usage = `${usageLine(command)}\n(pullmap ${command} --help lists every flag)`;
  const { tokens } = parseArgs({
    args: [...args],
    options,
    strict: false,
    allowPositionals: true,
    tokens: true,
  });
  for (const token of tokens) {
    if (token.kind === 'option' && !Object.hasOwn(options, token.name))
      throw new UsageError(`${command}: unknown flag ${token.rawName}\n${usage}`);
    if (token.kind === 'positional' && !allowPositionals)
      throw new UsageError(`${command}: unexpected argument ${JSON.stringify(token.value)}\n${usage}`);
  }
  try {
    return parseArgs({ args: [...args], options, allowPositionals, strict: true });
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS'))
      throw new UsageError(`${command}: ${(err as Error).message}\n${usage}`);
    throw err;
  }
}

/** `--help` or `-h` among a command's arguments (before a `--`). */
function wantsHelp(args: readonly string[]): boolean {
  for (const a of args) {
    if (a === '--') return false;
    if (a === '--help' || a === '-h') return true;
  }
  return false;
}

const isCommand = (c: string | undefined): c is Command => c !== undefined && Object.hasOwn(COMMANDS, c);

function labels(text: string | undefined, flag: string): Record<string, string> {
  const out: Record<string, string> = {};
  if (!text) return out;
  for (const pair of text.split(',')) {
    const eq = pair.indexOf('=');
    if (eq <= 0)
      throw new UsageError(
        `${flag}: ${JSON.stringify(pair)} is not key=value; write it like "app=web,tier=front"`,
      );
    out[pair.slice(0, eq).trim()] = pair.slice(eq + 1).trim();
  }
  return out;
}

function oneOf<T extends string>(
  value: string | undefined,
  allowed: readonly T[],
  flag: string,
): T | undefined {
  if (value === undefined) return undefined;
  if ((allowed as readonly string[]).includes(value)) return value as T;
  throw new UsageError(`${flag} must be one of ${allowed.join(', ')}, not ${JSON.stringify(value)}`);
}

function registryFlags(
  values: {
    'plain-http'?: string[];
    'registry-ca'?: string[];
    'docker-config'?: string;
    'probe-timeout': string;
    'upload-stall-timeout'?: string;
  },
  env: CliIO['env'],
): RegistryFlags {
  const stall = values['upload-stall-timeout'];
  return {
    proxy: proxySettingsFromEnv(env),
    plainHttp: values['plain-http'] ?? [],
    caFiles: values['registry-ca'] ?? [],
    dockerConfig: values['docker-config'],
    probeTimeout: values['probe-timeout'],
    uploadStallTimeoutMs: stall === undefined ? undefined : uploadStallTimeout(stall),
  };
}

function uploadStallTimeout(value: string): number {
  const ms = duration(value, '--upload-stall-timeout');
  if (ms < 1000 || ms > 3_600_000)
    throw new UsageError(`--upload-stall-timeout must be between 1s and 1h, not ${JSON.stringify(value)}`);
  return ms;
}

function duration(value: string, flag: string): number {
  const parsed = parseDuration(value);
  if (!parsed.ok) throw new UsageError(`${flag}: ${parsed.message}`);
  return parsed.ms;
}

/** Resolves with the signal's name on the first SIGTERM or SIGINT (servers then shut down gracefully). */
function stopSignal(): Promise<string> {
  return new Promise((resolve) => {
    const stop = (signal: string) => {
      process.off('SIGTERM', onTerm);
      process.off('SIGINT', onInt);
      resolve(signal);
    };
    const onTerm = () => stop('SIGTERM');
    const onInt = () => stop('SIGINT');
    process.on('SIGTERM', onTerm);
    process.on('SIGINT', onInt);
  });
}

function listenAddress(value: string, flag = '--listen'): ListenAddress {
  const address = parseListenAddress(value);
  if (!address)
    throw new UsageError(
      `${flag} ${JSON.stringify(value)} is not HOST:PORT; write it like 0.0.0.0:8443 or 127.0.0.1:8443`,
    );
  return address;
}

/** --cache-upstreams HOST,...: the hosts, or undefined (not checked) without the flag. */
function cacheUpstreams(value: string | undefined): readonly string[] | undefined {
  if (value === undefined) return undefined;
  const parsed = parseCacheUpstreams(value);
  if ('error' in parsed) throw new UsageError(`--cache-upstreams: ${parsed.error}`);
  return parsed.hosts;
}

/** --config given more than once, or a directory, may read stdin only once. */
function oneStdin(paths: readonly string[], file?: string): void {
  if (paths.filter((p) => p === '-').length + (file === '-' ? 1 : 0) > 1)
    throw new UsageError('only one of -f and the --config values can read stdin (-)');
}

type ServeValues = ReturnType<typeof parseFlags<typeof SERVE_FLAGS>>['values'];

/** --tls-cert and --tls-key, or --no-tls: exactly one of them. */
function serveTls(values: ServeValues): { certFile: string; keyFile: string } | undefined {
  const cert = values['tls-cert'];
  const key = values['tls-key'];
  if (values['no-tls'] && (cert !== undefined || key !== undefined))
    throw new UsageError('--no-tls and --tls-cert/--tls-key contradict each other; give one or the other');
  if (values['no-tls']) return undefined;
  if (cert === undefined || key === undefined)
    throw new UsageError(
      'serve needs --tls-cert FILE and --tls-key FILE (the apiserver calls webhooks over HTTPS), or --no-tls on a loopback address',
    );
  return { certFile: cert, keyFile: key };
}

/** --max-request-bytes and --max-inflight-bytes, checked against each other. */
function serveBodyLimits(values: ServeValues): { maxRequestBytes: number; maxInflightBytes: number } {
  const maxBytes = Number(values['max-request-bytes']);
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 64 * 1024)
    throw new UsageError('--max-request-bytes must be a whole number of bytes, at least 65536');
  // Four reviews of the largest size at once by default: far more than enough for real pods (KiBs each).
  const inflightBytes = Number(values['max-inflight-bytes'] ?? 4 * maxBytes);
  if (!Number.isSafeInteger(inflightBytes) || inflightBytes < maxBytes)
    throw new UsageError(
      `--max-inflight-bytes must be a whole number of bytes, at least --max-request-bytes (${maxBytes})`,
    );
  return { maxRequestBytes: maxBytes, maxInflightBytes: inflightBytes };
}

/** Where the maps come from: the cluster's settings with --maps-from cluster, else undefined (files). */
function serveCluster(values: ServeValues, env: NodeJS.ProcessEnv) {
  const mapsFrom = oneOf(values['maps-from'], ['file', 'cluster'], '--maps-from');
  if (mapsFrom === 'cluster' && values.config !== undefined)
    throw new UsageError('--config and --maps-from cluster contradict each other; maps come from one place');
  if (values.config?.includes('-'))
    throw new UsageError(
      'serve --config cannot read stdin (-): it re-reads its maps when they change; give a file or a directory',
    );
  if (mapsFrom !== 'cluster') {
    if (values['cache-upstreams'] !== undefined)
      throw new UsageError(
        '--cache-upstreams needs --maps-from cluster (the controller writes it into map status); in file mode run pullmap check --cache-upstreams on the file',
      );
    return undefined;
  }
  return {
    kubeconfig: values.kubeconfig,
    leaseNamespace: values['lease-namespace'] ?? env.POD_NAMESPACE ?? 'pullmap-system',
    identity: values.identity ?? env.POD_NAME ?? `${hostname()}-${process.pid}`,
    leaderElect: !values['no-leader-election'],
    recheckIntervalMs: duration(values['recheck-interval'], '--recheck-interval'),
    onRejectedUpdate:
      oneOf(values['on-rejected-update'], ['KeepLastAccepted', 'Undeploy'], '--on-rejected-update') ??
      'KeepLastAccepted',
    pullSecretCopy: !values['no-pull-secret-copy'],
    cacheUpstreams: cacheUpstreams(values['cache-upstreams']),
  };
}

async function serveCommand(rest: readonly string[], io: CliIO): Promise<number> {
  const { values } = parseFlags('serve', rest, SERVE_FLAGS);
  const tls = serveTls(values);
  const limits = serveBodyLimits(values);
  const deadlineMs = duration(values.deadline, '--deadline');
  if (deadlineMs < 100 || deadlineMs > 29_000)
    throw new UsageError('--deadline must be between 100ms and 29s, below the webhook timeoutSeconds');
  const cluster = serveCluster(values, io.env);
  const { serve } = await import('./serve.ts');
  return serve(
    {
      config: values.config,
      kubeconfig: values.kubeconfig,
      env: io.env,
      ...listenAddress(values.listen),
      tls,
      deadlineMs,
      failurePolicy: oneOf(values['failure-policy'], ['Ignore', 'Fail'], '--failure-policy') ?? 'Ignore',
      settings: settingsFrom(values),
      logLevel: oneOf(values['log-level'], ['debug', 'info', 'warn', 'error'], '--log-level') ?? 'info',
      shutdownDelayMs: duration(values['shutdown-delay'], '--shutdown-delay'),
      shutdownGraceMs: duration(values['shutdown-grace'], '--shutdown-grace'),
      ...limits,
      health:
        values['health-listen'] === undefined
          ? undefined
          : listenAddress(values['health-listen'], '--health-listen'),
      reloadIntervalMs: duration(values['reload-interval'], '--reload-interval'),
      registry: registryFlags(values, io.env),
      cluster,
    },
    { stderr: io.stderr, stopped: stopSignal() },
  );
}

async function explainCommand(rest: readonly string[], io: CliIO): Promise<number> {
  const { values, positionals } = parseFlags('explain', rest, EXPLAIN_FLAGS, true);
  const output = oneOf(values.output, ['text', 'json', 'yaml'], '--output') ?? 'text';
  const maxInputBytes = parseByteSize(values['max-input-bytes'], '--max-input-bytes');
  const config = values.config ?? [];
  oneStdin(config);
  if (values.pod !== undefined) {
    if (positionals.length > 0)
      throw new UsageError("explain --pod explains the pod's images; give no IMAGE arguments with it");
    const podExistence = await existenceFromFlags(registryFlags(values, io.env));
    const { explainPod } = await import('./explain-pod.ts');
    return await explainPod(
      {
        pod: values.pod,
        kubeconfig: values.kubeconfig,
        config: config.length > 0 ? config : undefined,
        output,
        maxInputBytes,
        existence: podExistence.source,
        settings: settingsFrom(values),
      },
      io,
    ).finally(() => podExistence.close());
  }
  if (values.kubeconfig !== undefined) throw new UsageError('--kubeconfig needs --pod NAMESPACE/NAME');
  if (config.includes('-') && positionals.length === 0)
    throw new UsageError('--config - reads stdin, so give the images as arguments');
  const existence = await existenceFromFlags(registryFlags(values, io.env));
  return await explain(
    {
      images: positionals,
      config,
      namespace: values.namespace,
      podLabels: labels(values.labels, '--labels'),
      namespaceLabels: labels(values['namespace-labels'], '--namespace-labels'),
      pullPolicy: oneOf(values['pull-policy'], ['Always', 'IfNotPresent', 'Never'], '--pull-policy'),
      output,
      maxInputBytes,
      existence: existence.source,
      settings: settingsFrom(values),
    },
    io,
  ).finally(() => existence.close());
}

async function rewriteCommand(rest: readonly string[], io: CliIO): Promise<number> {
  const { values } = parseFlags('rewrite', rest, REWRITE_FLAGS);
  if (values.file === undefined) throw new UsageError('rewrite needs -f FILE (or -f - for stdin)');
  // Without maps the manifests would go out unmapped (a post-renderer would ship the original images),
  // and the embedded default's made-up mirrors would send them nowhere: refuse instead.
  if (values.config === undefined)
    throw new UsageError(
      'rewrite needs --config PATH, the maps to apply (without them every image would stay as it is); the embedded default maps are examples/default.yaml',
    );
  oneStdin(values.config, values.file);
  const maxInputBytes = parseByteSize(values['max-input-bytes'], '--max-input-bytes');
  const existence = await existenceFromFlags(registryFlags(values, io.env));
  return await rewrite(
    {
      file: values.file,
      config: values.config,
      namespace: values.namespace,
      namespaceLabels: labels(values['namespace-labels'], '--namespace-labels'),
      maxInputBytes,
      existence: existence.source,
      settings: settingsFrom(values),
    },
    io,
  ).finally(() => existence.close());
}

async function checkCommand(rest: readonly string[], io: CliIO): Promise<number> {
  const { values } = parseFlags('check', rest, CHECK_FLAGS);
  if (values.config === undefined)
    throw new UsageError('check needs --config PATH (a file, a directory or -)');
  oneStdin(values.config);
  return await check(
    {
      config: values.config,
      output: oneOf(values.output, ['text', 'json'], '--output') ?? 'text',
      cacheUpstreams: cacheUpstreams(values['cache-upstreams']),
      maxInputBytes: parseByteSize(values['max-input-bytes'], '--max-input-bytes'),
    },
    io,
  );
}

async function copyCommand(rest: readonly string[], io: CliIO): Promise<number> {
  const { values, positionals } = parseFlags('copy', rest, COPY_FLAGS, true);
  if (values.config === undefined)
    throw new UsageError('copy needs --config PATH (a file, a directory or -)');
  oneStdin(values.config, values.file);
  const jobs = Number(values.jobs);
  if (!Number.isSafeInteger(jobs) || jobs < 1 || jobs > 16)
    throw new UsageError('--jobs must be a whole number from 1 to 16');
  const flags = registryFlags(values, io.env);
  const { copy } = await import('./copy.ts');
  return await copy(
    {
      images: positionals,
      config: values.config,
      file: values.file,
      namespace: values.namespace,
      platforms: values.platform ?? [],
      plainHttp: flags.plainHttp,
      caFiles: flags.caFiles,
      dockerConfig: flags.dockerConfig,
      proxy: flags.proxy,
      uploadStallTimeoutMs: flags.uploadStallTimeoutMs,
      jobs,
      maxInputBytes: parseByteSize(values['max-input-bytes'], '--max-input-bytes'),
      settings: settingsFrom(values),
    },
    io,
  );
}

async function cacheCommand(rest: readonly string[], io: CliIO): Promise<number> {
  if (rest[0] === 'ls') {
    const { values } = parseFlags('cache', rest.slice(1), CACHE_LS_FLAGS);
    return await cacheLs({ config: values.config, url: values.url, output: values.output }, io);
  }
  const { values } = parseFlags('cache', rest, CACHE_FLAGS);
  if (values.config === undefined)
    throw new UsageError('cache needs --config FILE (see examples/cache/cache.yaml)');
  const listen = values.listen === undefined ? undefined : listenAddress(values.listen);
  const maxInputBytes = parseByteSize(values['max-input-bytes'], '--max-input-bytes');
  return await cache({ config: values.config, listen, maxInputBytes }, io, stopSignal());
}

/** Runs one pullmap command and returns its exit code. User errors are messages, never stack traces. */
export async function run(argv: readonly string[], io: CliIO): Promise<number> {
  const [command, ...rest] = argv;
  if (isCommand(command) && wantsHelp(rest)) {
    io.stdout.write(usageOf(command));
    return 0;
  }
  try {
    switch (command) {
      case 'explain':
        return await explainCommand(rest, io);
      case 'rewrite':
        return await rewriteCommand(rest, io);
      case 'check':
        return await checkCommand(rest, io);
      case 'copy':
        return await copyCommand(rest, io);
      case 'serve':
        return await serveCommand(rest, io);
      case 'cache':
        return await cacheCommand(rest, io);
      case '--version':
      case 'version':
        io.stdout.write(`${VERSION}\n`);
        return 0;
      case 'help':
        if (isCommand(rest[0])) {
          io.stdout.write(usageOf(rest[0]));
          return 0;
        }
        io.stdout.write(HELP);
        return 0;
      case undefined:
      case '-h':
      case '--help':
        io.stdout.write(HELP);
        return command === undefined ? 2 : 0;
      default:
        throw new UsageError(`unknown command ${JSON.stringify(command)}; run "pullmap --help"`);
    }
  } catch (err) {
    // parseArgs reports unknown or malformed flags with a code; those and UsageError are the user's.
    const code = (err as { code?: unknown }).code;
    if (err instanceof UsageError || (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS'))) {
      // Messages may quote the input: each line is escaped, the lines stay lines.
      const message = (err as Error).message.split('\n').map(printable).join('\n');
      io.stderr.write(`pullmap: ${message}\n`);
      return 2;
    }
    throw err;
  }
}
