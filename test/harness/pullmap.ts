// Runs the built `pullmap serve` (dist/pullmap.js) as a real process on a loopback port, and talks to it
// over HTTPS with the test CA, the way the apiserver does.

import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Daemon, freePort, startDaemon } from './process.ts';

export const PULLMAP = fileURLToPath(new URL('../../dist/pullmap.js', import.meta.url));

export interface ServeOptions {
  /** Extra flags after `serve` (e.g. --config FILE, --deadline 500ms). */
  args?: readonly string[];
  /** Serve HTTPS with these; omitted: --no-tls on 127.0.0.1. */
  tls?: { certPath: string; keyPath: string; caPem: string };
  /** Runs the command through this (e.g. a memory cgroup's `wrap`). */
  wrap?: (command: string, args: readonly string[]) => { command: string; args: string[] };
}

export interface Pullmap {
  readonly url: string;
  readonly port: number;
  readonly daemon: Daemon;
  /** JSON log lines so far. */
  logs(): Array<Record<string, unknown>>;
  /** Sends one HTTP request; resolves with status, headers and body text. */
  call(path: string, init?: CallInit): Promise<CallResult>;
  /** POSTs an AdmissionReview and returns the parsed response envelope. */
  review(body: unknown): Promise<{ status: number; json: Record<string, any> }>;
  /** The value of one metric series from /metrics (labels as written, e.g. `{result="mutated"}`). */
  metric(name: string): Promise<number | undefined>;
  stop(): Promise<void>;
}

export interface CallInit {
  method?: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  /** Trust this CA instead of the serving one (TLS rotation tests). */
  ca?: string;
}

export interface CallResult {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  /** PEM-less fingerprint of the certificate the server presented (HTTPS only). */
  fingerprint?: string;
}

export async function startPullmap(options: ServeOptions = {}): Promise<Pullmap> {
  const port = await freePort();
  const tlsArgs = options.tls
    ? ['--tls-cert', options.tls.certPath, '--tls-key', options.tls.keyPath]
    : ['--no-tls'];
  const scheme = options.tls ? 'https' : 'http';
  const url = `${scheme}://127.0.0.1:${port}`;
  const call = (path: string, init: CallInit = {}): Promise<CallResult> =>
    new Promise((resolve, reject) => {
      const send = options.tls ? httpsRequest : httpRequest;
      const req = send(
        `${url}${path}`,
        {
          method: init.method ?? 'GET',
          headers: init.headers,
          ...(options.tls ? { ca: init.ca ?? options.tls.caPem, agent: false } : { agent: false }),
          timeout: 30_000,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const socket = res.socket as unknown as {
              getPeerCertificate?: () => { fingerprint256?: string };
            };
            const fingerprint = socket.getPeerCertificate?.().fingerprint256;
            resolve({
              status: res.statusCode ?? 0,
              headers: res.headers,
              body: Buffer.concat(chunks).toString('utf8'),
              ...(fingerprint ? { fingerprint } : {}),
            });
          });
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`${path}: no answer in 30 s`)));
      req.on('error', reject);
      req.end(init.body);
    });

  const command = (options.wrap ?? ((c, a) => ({ command: c, args: [...a] })))(process.execPath, [
    PULLMAP,
    'serve',
    '--listen',
    `127.0.0.1:${port}`,
    ...tlsArgs,
    '--log-level',
    'debug',
    '--shutdown-delay',
    '0',
    ...(options.args ?? []),
  ]);
  const daemon = await startDaemon({
    name: 'pullmap serve',
    ...command,
    ready: async () => (await call('/readyz')).status === 200,
  });
  return {
    url,
    port,
    daemon,
    logs: () =>
      daemon
        .output()
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .flatMap((l) => {
          try {
            return [JSON.parse(l) as Record<string, unknown>];
          } catch {
            return [];
          }
        }),
    call,
    async review(body) {
      const res = await call('/mutate-pods', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      return { status: res.status, json: JSON.parse(res.body) };
    },
    async metric(name) {
      const text = (await call('/metrics')).body;
      for (const line of text.split('\n')) {
        if (line.startsWith('#')) continue;
        const space = line.lastIndexOf(' ');
        if (line.slice(0, space) === name) return Number(line.slice(space + 1));
      }
      return undefined;
    },
    stop: () => daemon.stop(),
  };
}

/** A Pod AdmissionReview for the given containers (name → image). */
export function podReview(
  containers: Record<string, string>,
  extra: {
    namespace?: string;
    uid?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  } = {},
): Record<string, unknown> {
  const namespace = extra.namespace ?? 'default';
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: extra.uid ?? `uid-${Math.random().toString(16).slice(2)}`,
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      namespace,
      operation: 'CREATE',
      object: {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: {
          name: 'p',
          namespace,
          ...(extra.labels ? { labels: extra.labels } : {}),
          ...(extra.annotations ? { annotations: extra.annotations } : {}),
        },
        spec: { containers: Object.entries(containers).map(([name, image]) => ({ name, image })) },
      },
    },
  };
}

/** Decodes a response's JSON Patch. */
export function patchOf(response: Record<string, any>): Array<{ op: string; path: string; value: unknown }> {
  return response.patch ? JSON.parse(Buffer.from(response.patch, 'base64').toString('utf8')) : [];
}

export const EXAMPLES = fileURLToPath(new URL('../../examples/', import.meta.url));
export const example = (name: string): string => join(EXAMPLES, name);

/**
 * The MutatingWebhookConfiguration that sends Pod creations (and, with `updates`, updates) to `pullmap`,
 * failing open, as the chart writes it.
 */
export function podWebhook(
  pullmap: Pullmap,
  caPem: string,
  options: { updates?: boolean; reinvoke?: boolean } = {},
): Record<string, unknown> {
  return {
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'MutatingWebhookConfiguration',
    metadata: { name: 'pullmap' },
    webhooks: [
      {
        name: 'pods.pullmap.dev',
        admissionReviewVersions: ['v1'],
        sideEffects: 'None',
        timeoutSeconds: 5,
        failurePolicy: 'Ignore',
        ...(options.reinvoke ? { reinvocationPolicy: 'IfNeeded' } : {}),
        clientConfig: { url: `${pullmap.url}/mutate-pods`, caBundle: Buffer.from(caPem).toString('base64') },
        rules: [
          {
            apiGroups: [''],
            apiVersions: ['v1'],
            operations: options.updates ? ['CREATE', 'UPDATE'] : ['CREATE'],
            resources: ['pods'],
          },
        ],
      },
    ],
  };
}
