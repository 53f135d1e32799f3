// A slow network path on loopback: socat relays to an upstream under trickle (Debian's userspace
// bandwidth shaper, an LD_PRELOAD on socat's reads and writes), so a client sees an edge site's link.
// The relay can be paused (SIGSTOP to its process group): it stops reading, as a stuck peer would.
import { type ChildProcess, spawn } from 'node:child_process';
import { connect } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort, requireCommand } from './process.ts';

export interface ThrottledPath {
  /** "127.0.0.1:PORT": the registry host to give clients instead of the upstream's. */
  readonly host: string;
  /** Stops relaying in both directions (bytes already sent wait in the kernel's buffers). */
  pause(): void;
  resume(): void;
  close(): Promise<void>;
}

/** Relays 127.0.0.1:PORT to `upstream` ("127.0.0.1:5000") at `kibPerSecond` in each direction. */
export async function startThrottle(upstream: string, kibPerSecond: number): Promise<ThrottledPath> {
  const trickle = requireCommand('trickle');
  const socat = requireCommand('socat');
  const port = await freePort();
  const rate = String(kibPerSecond);
  // Its own process group: socat forks a child per connection, and pausing must reach them all.
  const child: ChildProcess = spawn(
    trickle,
    [
      '-s',
      '-u',
      rate,
      '-d',
      rate,
      socat,
      `TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr,fork`,
      `TCP:${upstream}`,
    ],
    { detached: true, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let output = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    output = (output + chunk.toString('utf8')).slice(-4000);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const pid = child.pid;
  if (pid === undefined) throw new Error('trickle/socat did not start');
  const group = (signal: NodeJS.Signals): void => {
    try {
      process.kill(-pid, signal);
    } catch {
      // The group is gone already.
    }
  };
  const close = async (): Promise<void> => {
    group('SIGCONT');
    group('SIGTERM');
    const killer = setTimeout(() => group('SIGKILL'), 3000);
    await exited;
    clearTimeout(killer);
  };
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`socat under trickle exited: ${output}`);
    if (await accepts(port)) break;
    if (i >= 100) {
      await close();
      throw new Error(`socat under trickle did not listen on ${port}: ${output}`);
    }
    await sleep(50);
  }
  return {
    host: `127.0.0.1:${port}`,
    pause: () => group('SIGSTOP'),
    resume: () => group('SIGCONT'),
    close,
  };
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}
