// A real S3 server for tests: SeaweedFS (`weed server -s3`) on loopback, in a temp directory, with one
// identity whose keys go into an AWS shared credentials file the cache's config can name. The binary
// is built by scripts/go-tool.sh and only looked up here (--cached-only): tests never build it.
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  CreateBucketCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  S3Client,
} from '@aws-sdk/client-s3';
import { type Daemon, execFileAsync, freePort, startDaemon, type TempDir, tempDir } from './process.ts';

const script = fileURLToPath(new URL('../../scripts/go-tool.sh', import.meta.url));

/** The weed binary: env WEED, else the cached build (never builds from a test). */
export async function weedBinary(): Promise<string> {
  const fromEnv = process.env['WEED'];
  if (fromEnv) {
    if (!existsSync(fromEnv)) throw new Error(`WEED=${fromEnv} does not exist`);
    return fromEnv;
  }
  try {
    const { stdout } = await execFileAsync('bash', [script, 'weed', '--cached-only']);
    return stdout.trim();
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? String(err);
    throw new Error(`no SeaweedFS binary: set WEED or run "bash scripts/go-tool.sh weed" once\n${stderr}`);
  }
}

export interface TestS3 {
  /** "http://127.0.0.1:PORT" */
  readonly endpoint: string;
  readonly region: string;
  /** The server's one identity, for clients configured without a credentials file (docker-registry). */
  readonly accessKey: string;
  readonly secretKey: string;
  /** An AWS shared credentials file with the server's one identity ([default]). */
  readonly credentialsFile: string;
  /** A client of the server, for tests that look at the bucket directly. */
  readonly client: S3Client;
  /** Creates a fresh bucket and returns its name. */
  bucket(): Promise<string>;
  /** Keys (with sizes) under `prefix`. */
  list(bucket: string, prefix?: string): Promise<{ key: string; size: number }[]>;
  /** Multipart uploads not completed nor aborted under `prefix`. */
  pendingUploads(bucket: string, prefix?: string): Promise<number>;
  /** The `storage.s3` config block for `bucket`. */
  storage(bucket: string, extra?: Record<string, unknown>): Record<string, unknown>;
  /** Stops the server (the data stays); `start` brings it back on the same ports. */
  stop(): Promise<void>;
  start(): Promise<void>;
  close(): Promise<void>;
}

const ACCESS_KEY = 'pullmaptestaccesskey';
const SECRET_KEY = 'pullmap-test-secret-key-0123456789';

/** A distinct free port p such that p + 10000 (SeaweedFS's default gRPC offset) is free too. */
async function portPair(taken: Set<number>): Promise<number> {
  for (;;) {
    const p = await freePort();
    if (p + 10_000 > 65_535 || taken.has(p) || taken.has(p + 10_000)) continue;
    taken.add(p);
    taken.add(p + 10_000);
    return p;
  }
}

export async function startS3(): Promise<TestS3> {
  const binary = await weedBinary();
  const temp: TempDir = await tempDir('s3');
  const taken = new Set<number>();
  const ports = {
    master: await portPair(taken),
    volume: await portPair(taken),
    filer: await portPair(taken),
    s3: await portPair(taken),
  };
  const configPath = join(temp.path, 's3.json');
  await writeFile(
    configPath,
    JSON.stringify({
      identities: [
        {
          name: 'pullmap',
          credentials: [{ accessKey: ACCESS_KEY, secretKey: SECRET_KEY }],
          actions: ['Admin', 'Read', 'List', 'Tagging', 'Write'],
        },
      ],
    }),
  );
  const credentialsFile = join(temp.path, 'credentials');
  await writeFile(
    credentialsFile,
    `[default]\naws_access_key_id = ${ACCESS_KEY}\naws_secret_access_key = ${SECRET_KEY}\n`,
  );
  const endpoint = `http://127.0.0.1:${ports.s3}`;
  const region = 'us-east-1';
  const args = [
    'server',
    `-dir=${join(temp.path, 'data')}`,
    '-ip=127.0.0.1',
    '-ip.bind=127.0.0.1',
    `-master.port=${ports.master}`,
    `-master.port.grpc=${ports.master + 10_000}`,
    '-master.volumeSizeLimitMB=256',
    `-volume.port=${ports.volume}`,
    `-volume.port.grpc=${ports.volume + 10_000}`,
    '-volume.max=32',
    '-filer',
    `-filer.port=${ports.filer}`,
    `-filer.port.grpc=${ports.filer + 10_000}`,
    '-s3',
    `-s3.port=${ports.s3}`,
    `-s3.port.grpc=${ports.s3 + 10_000}`,
    `-s3.config=${configPath}`,
    // Loopback only: no usage report to the project's telemetry server, no Iceberg or Lance endpoints.
    '-master.telemetry=false',
    '-s3.port.iceberg=0',
    '-s3.port.lance=0',
    '-volume.preStopSeconds=0',
    `-filer.localSocket=${join(temp.path, 'filer.sock')}`,
    `-s3.localSocket=${join(temp.path, 's3.sock')}`,
  ];
  await mkdir(join(temp.path, 'data'), { recursive: true });
  const client = new S3Client({
    endpoint,
    region,
    forcePathStyle: true,
    credentials: { accessKeyId: ACCESS_KEY, secretAccessKey: SECRET_KEY },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  let daemon: Daemon | undefined;
  const start = async (): Promise<void> => {
    daemon = await startDaemon({
      name: 'weed server',
      command: binary,
      args,
      readyTimeoutMs: 90_000,
      // Ready once S3 answers an authenticated request (the filer and a volume are up behind it).
      ready: async () => {
        await client
          .send(new ListObjectsV2Command({ Bucket: 'pullmap-ready-probe', MaxKeys: 1 }))
          .catch((err: unknown) => {
            const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
            if (status !== 404) throw err;
          });
        return true;
      },
    });
  };
  await start().catch(async (err: unknown) => {
    await temp.remove();
    throw err;
  });
  let n = 0;
  return {
    endpoint,
    region,
    accessKey: ACCESS_KEY,
    secretKey: SECRET_KEY,
    credentialsFile,
    client,
    async bucket() {
      const name = `pullmap-${process.pid}-${++n}-${Math.random().toString(36).slice(2, 8)}`;
      await client.send(new CreateBucketCommand({ Bucket: name }));
      return name;
    },
    async list(bucket, prefix = '') {
      const out: { key: string; size: number }[] = [];
      let token: string | undefined;
      do {
        const page = await client.send(
          new ListObjectsV2Command({
            Bucket: bucket,
            Prefix: prefix,
            ...(token ? { ContinuationToken: token } : {}),
          }),
        );
        for (const o of page.Contents ?? []) out.push({ key: o.Key ?? '', size: o.Size ?? 0 });
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token);
      return out;
    },
    async pendingUploads(bucket, prefix = '') {
      const page = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: prefix }));
      return page.Uploads?.length ?? 0;
    },
    storage: (bucket, extra = {}) => ({
      bucket,
      endpoint,
      region,
      forcePathStyle: true,
      credentialsFile,
      ...extra,
    }),
    stop: async () => {
      await daemon?.stop();
      daemon = undefined;
    },
    start,
    close: async () => {
      await daemon?.stop();
      client.destroy();
      await temp.remove();
    },
  };
}
