// nginx as the reverse proxy many registries sit behind (an ingress): its client_max_body_size answers
// 413 to a request body over the limit, as ingress-nginx's default of 1m does, so a test can show
// what a copy does with a target that refuses large uploads.

import { mkdir, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { type Daemon, freePort, requireCommand, startDaemon, type TempDir, tempDir } from './process.ts';

export interface BodyLimitProxy {
  /** "127.0.0.1:PORT" */
  readonly host: string;
  readonly daemon: Daemon;
  close(): Promise<void>;
}

/** nginx on a loopback port proxying everything to `upstream` ("127.0.0.1:PORT"), bodies up to `limit`. */
export async function startBodyLimitProxy(upstream: string, limit: string): Promise<BodyLimitProxy> {
  const nginx = requireCommand('nginx');
  const dir: TempDir = await tempDir('nginx');
  const port = await freePort();
  for (const sub of ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) await mkdir(join(dir.path, sub));
  const config = join(dir.path, 'nginx.conf');
  await writeFile(
    config,
    `daemon off;
master_process off;
worker_processes 1;
pid ${join(dir.path, 'nginx.pid')};
error_log stderr warn;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path ${join(dir.path, 'body')};
  proxy_temp_path ${join(dir.path, 'proxy')};
  fastcgi_temp_path ${join(dir.path, 'fastcgi')};
  uwsgi_temp_path ${join(dir.path, 'uwsgi')};
  scgi_temp_path ${join(dir.path, 'scgi')};
  server {
    listen 127.0.0.1:${port};
    client_max_body_size ${limit};
    location / {
      proxy_pass http://${upstream};
      proxy_set_header Host $http_host;
      proxy_http_version 1.1;
      proxy_request_buffering off;
    }
  }
}
`,
  );
  const daemon = await startDaemon({
    name: 'nginx',
    command: nginx,
    args: ['-p', dir.path, '-c', config, '-e', 'stderr'],
    ready: () =>
      new Promise((resolve) => {
        const req = request({ host: '127.0.0.1', port, path: '/v2/', timeout: 1000 }, (res) => {
          res.resume();
          resolve(res.statusCode === 200);
        });
        req.on('error', () => resolve(false));
        req.end();
      }),
  });
  return {
    host: `127.0.0.1:${port}`,
    daemon,
    close: async () => {
      await daemon.stop();
      await dir.remove();
    },
  };
}
