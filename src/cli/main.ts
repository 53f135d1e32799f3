// Entry point of the `pullmap` executable; the only module that reads argv and the environment. It
// stays tiny and checks the Node.js version before loading anything else: the commands need Node 24
// (package.json engines), and an older Node must get one line, not a stack trace from deep inside.
const REQUIRED_MAJOR = 24;
const major = Number(process.versions.node.split('.')[0]);
if (!(major >= REQUIRED_MAJOR)) {
  process.stderr.write(
    `pullmap: needs Node.js ${REQUIRED_MAJOR} or newer, but runs on ${process.version}; install Node.js ${REQUIRED_MAJOR} (npm install puts it in node_modules/.bin)\n`,
  );
  process.exit(2);
}
const { run } = await import('./run.ts');
process.exitCode = await run(process.argv.slice(2), {
  stdin: process.stdin,
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
});
