// A real HTTP forward proxy (Debian tinyproxy) on loopback, for tests of HTTPS_PROXY / HTTP_PROXY.
// Clients never send loopback hosts through a proxy, so the test upstreams get made-up names that only
// the proxy can resolve: tinyproxy runs in a mount namespace of its own (unshare, as root) where
// /etc/hosts maps each name to 127.0.0.1. Outside it the names resolve to nothing, so a request that
// bypasses the proxy fails; and the proxy's log lists every request it forwarded.
import { readFile, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { type Daemon, freePort, requireCommand, startDaemon, type TempDir, tempDir } from './process.ts';

export interface TestProxy {
  /** "http://127.0.0.1:PORT" */
  readonly url: string;
  /** The requests the proxy received, as it logged them ("GET http://host:port/path", "CONNECT host:port"). */
  requests(): Promise<string[]>;
  close(): Promise<void>;
}

/** Starts tinyproxy; `names` resolve to 127.0.0.1 for it alone (each must be made up, e.g. under .test). */
export async function startProxy(names: readonly string[]): Promise<TestProxy> {
  const tinyproxy = requireCommand('tinyproxy');
  const unshare = requireCommand('unshare');
  if (process.getuid?.() !== 0)
    throw new Error('the proxy test runs tinyproxy in a mount namespace of its own, which needs root');
  const temp: TempDir = await tempDir('proxy');
  const port = await freePort();
  const log = join(temp.path, 'tinyproxy.log');
  const hosts = join(temp.path, 'hosts');
  await writeFile(hosts, ['127.0.0.1 localhost', ...names.map((n) => `127.0.0.1 ${n}`), ''].join('\n'));
  const config = join(temp.path, 'tinyproxy.conf');
  // No ConnectPort line: CONNECT is allowed to any port (the test registries listen on random ones).
  await writeFile(
    config,
    [
      `Port ${port}`,
      'Listen 127.0.0.1',
      'Timeout 60',
      `LogFile "${log}"`,
      'LogLevel Connect',
      'MaxClients 64',
      'Allow 127.0.0.1',
      'DisableViaHeader Yes',
      '',
    ].join('\n'),
  );
  let daemon: Daemon;
  try {
    daemon = await startDaemon({
      name: 'tinyproxy',
      command: unshare,
      // unshare and sh exec in turn, so the PID stopped at the end is tinyproxy's own.
      args: [
        '--mount',
        'sh',
        '-c',
        `mount --bind "$0" /etc/hosts && exec "$1" -d -c "$2"`,
        hosts,
        tinyproxy,
        config,
      ],
      ready: () =>
        new Promise((resolve) => {
          const socket = connect({ host: '127.0.0.1', port }, () => {
            socket.destroy();
            resolve(true);
          });
          socket.on('error', () => resolve(false));
        }),
    });
  } catch (err) {
    await temp.remove();
    throw err;
  }
  return {
    url: `http://127.0.0.1:${port}`,
    requests: async () => {
      const text = await readFile(log, 'utf8').catch(() => '');
      return [...text.matchAll(/Request \(file descriptor \d+\): (\S+ \S+) HTTP\/1\.[01]$/gm)].map(
        (m) => m[1] as string,
      );
    },
    close: async () => {
      await daemon.stop();
      await temp.remove();
    },
  };
}
