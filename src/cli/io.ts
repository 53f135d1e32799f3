// What a command reads and writes instead of the process's own streams and environment, so tests can
// run commands in-process; main.ts hands in the real ones.
import type { Readable, Writable } from 'node:stream';

export interface CliIO {
  stdin: Readable;
  stdout: Writable;
  stderr: Writable;
  env: NodeJS.ProcessEnv;
}
