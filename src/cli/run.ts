import { hostname } from 'node:os';
import { type ParseArgsOptionsConfig, parseArgs } from 'node:util';
import pkg from '../../package.json' with { type: 'json' };
import { parseDuration } from '../core/duration.ts';
import { type ListenAddress, parseListenAddress } from '../core/net.ts';
import { proxySettingsFromEnv } from '../core/proxy.ts';
import { cache } from './cache.ts';
import { check } from './check.ts';
import { existenceFromFlags, type RegistryFlags } from './existence.ts';
import { explain } from './explain.ts';
import type { CliIO } from './io.ts';
import { UsageError } from './maps.ts';
import { rewrite } from './rewrite.ts';

/** The one source of the version: package.json, bundled in at build time. */
export const VERSION: string = pkg.version;

/** Each command's usage, printed by `pullmap COMMAND --help` and named in its flag errors. */
const USAGE = {
  explain: `Usage: pullmap explain [IMAGE...] [--config FILE] [--namespace NS] [--labels k=v,...]
                       [--pull-policy Always|IfNotPresent|Never] [--output text|json]
       pullmap explain --pod NAMESPACE/NAME [--kubeconfig FILE] [--config FILE] [--output text|json]
  Parse images (arguments, or stdin one per line) and, with a config, show where each one goes and why.
  --pod: each image of a live pod (containers and image volumes): its original (from the pod's
  annotations), what it was mapped to and by which map entry, and what the maps decide now (the
  cluster's maps, or --config FILE).
`,
  rewrite: `Usage: pullmap rewrite -f FILE|- [--config FILE] [--namespace NS]
  Rewrite the images of Kubernetes manifests (containers and image volumes of pods and pod templates);
  every other byte is kept (usable as a Helm post-renderer).
`,
  check: `Usage: pullmap check --config FILE
  Validate a config of ImageMap/ClusterImageMap objects; print every error and conflict (exit 1 if any).
`,
  serve: `Usage: pullmap serve [--config FILE] [--listen HOST:PORT] (--tls-cert FILE --tls-key FILE | --no-tls)
                     [--deadline DUR] [--failure-policy Ignore|Fail] [--log-level debug|info|warn|error]
       pullmap serve --maps-from cluster [--kubeconfig FILE] [--lease-namespace NS] [--identity NAME]
                     [--no-leader-election] [--recheck-interval DUR] [--on-rejected-update KeepLastAccepted|Undeploy]
  The admission webhook (POST /mutate-pods; /healthz, /readyz, /metrics). Maps come from FILE, from the
  embedded default without --config, or from the cluster's map objects (list-watch; the Lease holder
  writes their status and copies ClusterImageMap pull secrets, and POST /validate-maps checks map
  objects). --no-tls is for loopback addresses only. More flags: --cache-address,
  --exclude-namespaces, --shutdown-delay, --shutdown-grace, --max-request-bytes, --reload-interval,
  and the registry flags.
`,
  cache: `Usage: pullmap cache --config FILE [--listen HOST:PORT]
  Run the OCI pull-through cache (see examples/cache/cache.yaml) until SIGTERM.
`,
} as const;
type Command = keyof typeof USAGE;

const REGISTRY_HELP = `
Registry access for when: IfExists (explain, rewrite and serve):
  --plain-http HOST     talk plain HTTP to HOST (loopback registries; repeatable)
  --registry-ca FILE    trust this CA (PEM) for registries (repeatable)
  --docker-config FILE  credentials from a docker config.json
  --probe-timeout DUR   how long one decision waits for registries (default 5s)
`;

const usageOf = (command: Command): string =>
  command === 'explain' || command === 'rewrite' || command === 'serve'
    ? `${USAGE[command]}${REGISTRY_HELP}`
    : USAGE[command];

const HELP = `pullmap ${VERSION}: decides where every container image is pulled from

${Object.values(USAGE).join('\n')}${REGISTRY_HELP}
Run "pullmap COMMAND --help" for one command. Exit codes: 0 ok, 1 problems found (check), 2 usage or
unusable input. pullmap prints no colour (NO_COLOR needs nothing).
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
  const usageLine = USAGE[command].split('\n')[0]!;
  const { tokens } = parseArgs({
    args: [...args],
    options,
    strict: false,
    allowPositionals: true,
    tokens: true,
  });
  for (const token of tokens) {
    if (token.kind === 'option' && !Object.hasOwn(options, token.name))
      throw new UsageError(`${command}: unknown flag ${token.rawName}\n${usageLine}`);
    if (token.kind === 'positional' && !allowPositionals)
      throw new UsageError(`${command}: unexpected argument ${JSON.stringify(token.value)}\n${usageLine}`);
  }
  try {
    return parseArgs({ args: [...args], options, allowPositionals, strict: true });
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS'))
      throw new UsageError(`${command}: ${(err as Error).message}\n${usageLine}`);
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

const isCommand = (c: string | undefined): c is Command => c !== undefined && Object.hasOwn(USAGE, c);

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

const REGISTRY_OPTIONS = {
  'plain-http': { type: 'string', multiple: true },
  'registry-ca': { type: 'string', multiple: true },
  'docker-config': { type: 'string' },
  'probe-timeout': { type: 'string', default: '5s' },
} as const;

function registryFlags(
  values: {
    'plain-http'?: string[];
    'registry-ca'?: string[];
    'docker-config'?: string;
    'probe-timeout': string;
  },
  env: CliIO['env'],
): RegistryFlags {
  return {
    proxy: proxySettingsFromEnv(env),
    plainHttp: values['plain-http'] ?? [],
    caFiles: values['registry-ca'] ?? [],
    dockerConfig: values['docker-config'],
    probeTimeout: values['probe-timeout'],
  };
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

function listenAddress(value: string): ListenAddress {
  const address = parseListenAddress(value);
  if (!address)
    throw new UsageError(
      `--listen ${JSON.stringify(value)} is not HOST:PORT; write it like 0.0.0.0:8443 or 127.0.0.1:8443`,
    );
  return address;
}

async function serveCommand(rest: readonly string[], io: CliIO): Promise<number> {
  const { values } = parseFlags('serve', rest, {
    config: { type: 'string', short: 'c' },
    listen: { type: 'string', default: '0.0.0.0:8443' },
    'tls-cert': { type: 'string' },
    'tls-key': { type: 'string' },
    'no-tls': { type: 'boolean', default: false },
    deadline: { type: 'string', default: '3s' },
    'failure-policy': { type: 'string', default: 'Ignore' },
    'cache-address': { type: 'string', default: 'localhost:7439' },
    'exclude-namespaces': { type: 'string', default: 'kube-system,pullmap-system' },
    'log-level': { type: 'string', default: 'info' },
    'shutdown-delay': { type: 'string', default: '5s' },
    'shutdown-grace': { type: 'string', default: '25s' },
    'max-request-bytes': { type: 'string', default: String(8 * 1024 * 1024) },
    'reload-interval': { type: 'string', default: '10s' },
    'maps-from': { type: 'string', default: 'file' },
    kubeconfig: { type: 'string' },
    'lease-namespace': { type: 'string' },
    identity: { type: 'string' },
    'no-leader-election': { type: 'boolean', default: false },
    'recheck-interval': { type: 'string', default: '60s' },
    'on-rejected-update': { type: 'string', default: 'KeepLastAccepted' },
    ...REGISTRY_OPTIONS,
  });
  const cert = values['tls-cert'];
  const key = values['tls-key'];
  if (values['no-tls'] && (cert !== undefined || key !== undefined))
    throw new UsageError('--no-tls and --tls-cert/--tls-key contradict each other; give one or the other');
  if (!values['no-tls'] && (cert === undefined || key === undefined))
    throw new UsageError(
      'serve needs --tls-cert FILE and --tls-key FILE (the apiserver calls webhooks over HTTPS), or --no-tls on a loopback address',
    );
  const maxBytes = Number(values['max-request-bytes']);
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 64 * 1024)
    throw new UsageError('--max-request-bytes must be a whole number of bytes, at least 65536');
  const deadlineMs = duration(values.deadline, '--deadline');
  if (deadlineMs < 100 || deadlineMs > 29_000)
    throw new UsageError('--deadline must be between 100ms and 29s, below the webhook timeoutSeconds');
  const mapsFrom = oneOf(values['maps-from'], ['file', 'cluster'], '--maps-from');
  if (mapsFrom === 'cluster' && values.config !== undefined)
    throw new UsageError('--config and --maps-from cluster contradict each other; maps come from one place');
  if (mapsFrom === 'file' && values.kubeconfig !== undefined)
    throw new UsageError('--kubeconfig needs --maps-from cluster');
  const cluster =
    mapsFrom === 'cluster'
      ? {
          kubeconfig: values.kubeconfig,
          leaseNamespace: values['lease-namespace'] ?? io.env.POD_NAMESPACE ?? 'pullmap-system',
          identity: values.identity ?? io.env.POD_NAME ?? `${hostname()}-${process.pid}`,
          leaderElect: !values['no-leader-election'],
          recheckIntervalMs: duration(values['recheck-interval'], '--recheck-interval'),
          onRejectedUpdate:
            oneOf(values['on-rejected-update'], ['KeepLastAccepted', 'Undeploy'], '--on-rejected-update') ??
            'KeepLastAccepted',
        }
      : undefined;
  const { serve } = await import('./serve.ts');
  return serve(
    {
      config: values.config,
      ...listenAddress(values.listen),
      tls: cert !== undefined && key !== undefined ? { certFile: cert, keyFile: key } : undefined,
      deadlineMs,
      failurePolicy: oneOf(values['failure-policy'], ['Ignore', 'Fail'], '--failure-policy') ?? 'Ignore',
      cacheAddress: values['cache-address'],
      excludedNamespaces: values['exclude-namespaces']
        .split(',')
        .map((n) => n.trim())
        .filter(Boolean),
      logLevel: oneOf(values['log-level'], ['debug', 'info', 'warn', 'error'], '--log-level') ?? 'info',
      shutdownDelayMs: duration(values['shutdown-delay'], '--shutdown-delay'),
      shutdownGraceMs: duration(values['shutdown-grace'], '--shutdown-grace'),
      maxRequestBytes: maxBytes,
      reloadIntervalMs: duration(values['reload-interval'], '--reload-interval'),
      registry: registryFlags(values, io.env),
      cluster,
    },
    { stderr: io.stderr, stopped: stopSignal() },
  );
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
      case 'explain': {
        const { values, positionals } = parseFlags(
          'explain',
          rest,
          {
            config: { type: 'string', short: 'c' },
            namespace: { type: 'string', short: 'n', default: 'default' },
            labels: { type: 'string', short: 'l' },
            'namespace-labels': { type: 'string' },
            'pull-policy': { type: 'string' },
            output: { type: 'string', short: 'o', default: 'text' },
            pod: { type: 'string' },
            kubeconfig: { type: 'string' },
            ...REGISTRY_OPTIONS,
          },
          true,
        );
        const output = oneOf(values.output, ['text', 'json'], '--output') ?? 'text';
        if (values.pod !== undefined) {
          if (positionals.length > 0)
            throw new UsageError("explain --pod explains the pod's images; give no IMAGE arguments with it");
          const podExistence = await existenceFromFlags(registryFlags(values, io.env));
          const { explainPod } = await import('./explain-pod.ts');
          return await explainPod(
            {
              pod: values.pod,
              kubeconfig: values.kubeconfig,
              config: values.config,
              output,
              existence: podExistence.source,
            },
            io,
          ).finally(() => podExistence.close());
        }
        if (values.kubeconfig !== undefined) throw new UsageError('--kubeconfig needs --pod NAMESPACE/NAME');
        const existence = await existenceFromFlags(registryFlags(values, io.env));
        return await explain(
          {
            images: positionals,
            config: values.config,
            namespace: values.namespace,
            podLabels: labels(values.labels, '--labels'),
            namespaceLabels: labels(values['namespace-labels'], '--namespace-labels'),
            pullPolicy: oneOf(values['pull-policy'], ['Always', 'IfNotPresent', 'Never'], '--pull-policy'),
            output,
            existence: existence.source,
          },
          io,
        ).finally(() => existence.close());
      }
      case 'rewrite': {
        const { values } = parseFlags('rewrite', rest, {
          file: { type: 'string', short: 'f' },
          config: { type: 'string', short: 'c' },
          namespace: { type: 'string', short: 'n', default: 'default' },
          ...REGISTRY_OPTIONS,
        });
        if (values.file === undefined) throw new UsageError('rewrite needs -f FILE (or -f - for stdin)');
        if (values.file === '-' && values.config === '-')
          throw new UsageError('only one of -f and --config can read stdin');
        const existence = await existenceFromFlags(registryFlags(values, io.env));
        return await rewrite(
          {
            file: values.file,
            config: values.config,
            namespace: values.namespace,
            existence: existence.source,
          },
          io,
        ).finally(() => existence.close());
      }
      case 'check': {
        const { values } = parseFlags('check', rest, { config: { type: 'string', short: 'c' } });
        if (values.config === undefined) throw new UsageError('check needs --config FILE');
        return await check({ config: values.config }, io);
      }
      case 'serve':
        return await serveCommand(rest, io);
      case 'cache': {
        const { values } = parseFlags('cache', rest, {
          config: { type: 'string', short: 'c' },
          listen: { type: 'string' },
        });
        if (values.config === undefined)
          throw new UsageError('cache needs --config FILE (see examples/cache/cache.yaml)');
        const listen = values.listen === undefined ? undefined : listenAddress(values.listen);
        return await cache({ config: values.config, listen }, io, stopSignal());
      }
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
      io.stderr.write(`pullmap: ${(err as Error).message}\n`);
      return 2;
    }
    throw err;
  }
}
