// A cgroup v1 memory limit for one process (test-infra.md §9): the kernel OOM-kills it past the limit.
// Needs root and a mounted memory controller; `memoryCgroup` says why when it cannot make one.
import { mkdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

const ROOT = '/sys/fs/cgroup/memory';

export interface MemoryCgroup {
  readonly path: string;
  /**
   * A command and arguments that run `command args` inside the group from its first byte (a process
   * moved in later keeps what it holds charged outside: kernels without move_charge_at_immigrate).
   */
  wrap(command: string, args: readonly string[]): { command: string; args: string[] };
  /** Memory charged to the group now, in bytes. */
  usage(): Promise<number>;
  /** The highest memory use the kernel charged to the group, in bytes. */
  maxUsage(): Promise<number>;
  /** How many processes the kernel OOM-killed in the group. */
  oomKills(): Promise<number>;
  /** Removes the group (its processes must have exited). */
  remove(): Promise<void>;
}

export async function memoryCgroup(
  name: string,
  limitBytes: number,
): Promise<MemoryCgroup | { unavailable: string }> {
  const path = join(ROOT, `${name}-${process.pid}`);
  try {
    await mkdir(path);
    await writeFile(join(path, 'memory.limit_in_bytes'), String(limitBytes));
    // Swap would let the process outlive the limit instead of being killed at it.
    await writeFile(join(path, 'memory.swappiness'), '0').catch(() => {});
  } catch (err) {
    await rmdir(path).catch(() => {});
    return { unavailable: `cannot make a memory cgroup at ${path}: ${(err as Error).message}` };
  }
  return {
    path,
    wrap: (command, args) => ({
      command: '/bin/sh',
      args: ['-c', `echo $$ > ${join(path, 'cgroup.procs')} && exec "$@"`, 'sh', command, ...args],
    }),
    usage: async () => Number(await readFile(join(path, 'memory.usage_in_bytes'), 'utf8')),
    maxUsage: async () => Number(await readFile(join(path, 'memory.max_usage_in_bytes'), 'utf8')),
    oomKills: async () => {
      const text = await readFile(join(path, 'memory.oom_control'), 'utf8');
      return Number(/^oom_kill (\d+)$/m.exec(text)?.[1] ?? 0);
    },
    remove: async () => {
      for (let i = 0; ; i++) {
        try {
          return await rmdir(path);
        } catch (err) {
          // The kernel releases the group a moment after its last process exits.
          if (i >= 50 || (err as NodeJS.ErrnoException).code !== 'EBUSY') throw err;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    },
  };
}
