import type { Readable, Writable } from 'node:stream';
import { parseArgs } from 'node:util';
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
      case 'cache': {
        const { values } = parseArgs({
          args: rest,
          options: { config: { type: 'string', short: 'c' }, listen: { type: 'string' } },
        });
        if (values.config === undefined)
          throw new UsageError('cache needs --config FILE (see examples/cache/cache.yaml)');
        return await cache({ config: values.config, listen: values.listen }, io);
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
