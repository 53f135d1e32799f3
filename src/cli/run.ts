import { hostname } from 'node:os';
import type { Readable, Writable } from 'node:stream';
import { parseArgs } from 'node:util';
import { parseDuration } from '../core/duration.ts';
import { type ListenAddress, parseListenAddress } from '../core/net.ts';
import { cache } from './cache.ts';
import { check } from './check.ts';
import { existenceFromFlags, type RegistryFlags } from './existence.ts';
import { explain } from './explain.ts';
import { UsageError } from './maps.ts';
import { rewrite } from './rewrite.ts';

export interface CliIO {
  stdin: Readable;
  stdout: Writable;
  stderr: Writable;
  env: NodeJS.ProcessEnv;
}

const VERSION = '0.1.0';

const HELP = `pullmap ${VERSION}: decides where every container image is pulled from

Usage:
  pullmap explain [IMAGE...] [--config FILE] [--namespace NS] [--labels k=v,...]
                  [--pull-policy Always|IfNotPresent|Never] [--output text|json]
      Parse images (arguments, or stdin one per line) and, with a config, show where each one goes and why.
  pullmap rewrite -f FILE|- [--config FILE] [--namespace NS]
      Rewrite the images of Kubernetes manifests; every other byte is kept (usable as a Helm post-renderer).

  Registry access for when: IfExists (explain and rewrite):
      --plain-http HOST     talk plain HTTP to HOST (loopback registries; repeatable)
      --registry-ca FILE    trust this CA (PEM) for registries (repeatable)
      --docker-config FILE  credentials from a docker config.json
      --probe-timeout DUR   how long one decision waits for registries (default 5s)
  pullmap check --config FILE
      Validate a config of ImageMap/ClusterImageMap objects; print every error and conflict.
  pullmap serve [--config FILE] [--listen HOST:PORT] (--tls-cert FILE --tls-key FILE | --no-tls)
                [--deadline DUR] [--failure-policy Ignore|Fail] [--log-level debug|info|warn|error]
      The admission webhook (POST /mutate-pods; /healthz, /readyz, /metrics). Maps come from FILE, or
      from the embedded default without --config. --no-tls is for loopback addresses only. More flags:
      --cache-address, --exclude-namespaces, --shutdown-delay, --shutdown-grace, --max-request-bytes,
      --reload-interval, and the registry flags above.
  pullmap serve --maps-from cluster [--kubeconfig FILE] [--lease-namespace NS] [--identity NAME]
                [--no-leader-election] [--recheck-interval DUR] [--on-rejected-update KeepLastAccepted|Undeploy]
      Maps from the cluster's ImageMap/ClusterImageMap objects (list-watch); the Lease holder writes
      their status. Adds POST /validate-maps, the validating webhook for map objects.
  pullmap cache --config FILE [--listen HOST:PORT]
      Run the OCI pull-through cache (see examples/cache/cache.yaml) until SIGTERM.

Exit codes: 0 ok, 1 problems found (check), 2 usage or unusable input.
`;

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

function registryFlags(values: {
  'plain-http'?: string[];
  'registry-ca'?: string[];
  'docker-config'?: string;
  'probe-timeout': string;
}): RegistryFlags {
  return {
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
  const { values } = parseArgs({
    args: [...rest],
    options: {
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
    },
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
      registry: registryFlags(values),
      cluster,
    },
    { stderr: io.stderr, stopped: stopSignal() },
  );
}

/** Runs one pullmap command and returns its exit code. User errors are messages, never stack traces. */
export async function run(argv: readonly string[], io: CliIO): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'explain': {
        const { values, positionals } = parseArgs({
          args: rest,
          allowPositionals: true,
          options: {
            config: { type: 'string', short: 'c' },
            namespace: { type: 'string', short: 'n', default: 'default' },
            labels: { type: 'string', short: 'l' },
            'namespace-labels': { type: 'string' },
            'pull-policy': { type: 'string' },
            output: { type: 'string', short: 'o', default: 'text' },
            ...REGISTRY_OPTIONS,
          },
        });
        const existence = await existenceFromFlags(registryFlags(values));
        return await explain(
          {
            images: positionals,
            config: values.config,
            namespace: values.namespace,
            podLabels: labels(values.labels, '--labels'),
            namespaceLabels: labels(values['namespace-labels'], '--namespace-labels'),
            pullPolicy: oneOf(values['pull-policy'], ['Always', 'IfNotPresent', 'Never'], '--pull-policy'),
            output: oneOf(values.output, ['text', 'json'], '--output') ?? 'text',
            existence: existence.source,
          },
          io,
        ).finally(() => existence.close());
      }
      case 'rewrite': {
        const { values } = parseArgs({
          args: rest,
          options: {
            file: { type: 'string', short: 'f' },
            config: { type: 'string', short: 'c' },
            namespace: { type: 'string', short: 'n', default: 'default' },
            ...REGISTRY_OPTIONS,
          },
        });
        if (values.file === undefined) throw new UsageError('rewrite needs -f FILE (or -f - for stdin)');
        if (values.file === '-' && values.config === '-')
          throw new UsageError('only one of -f and --config can read stdin');
        const existence = await existenceFromFlags(registryFlags(values));
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
        const { values } = parseArgs({ args: rest, options: { config: { type: 'string', short: 'c' } } });
        if (values.config === undefined) throw new UsageError('check needs --config FILE');
        return await check({ config: values.config }, io);
      }
      case 'serve':
        return await serveCommand(rest, io);
      case 'cache': {
        const { values } = parseArgs({
          args: rest,
          options: { config: { type: 'string', short: 'c' }, listen: { type: 'string' } },
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
      case undefined:
      case '-h':
      case '--help':
      case 'help':
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
