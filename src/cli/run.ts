import type { Readable, Writable } from 'node:stream';

export interface CliIO {
  stdin: Readable;
  stdout: Writable;
  stderr: Writable;
  env: NodeJS.ProcessEnv;
}

/** Runs one pullmap command and returns its exit code. */
export async function run(argv: readonly string[], io: CliIO): Promise<number> {
  io.stderr.write(`pullmap: no command yet (${argv.join(' ')})\n`);
  return 2;
}
