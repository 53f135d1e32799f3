// Mutation testing, on demand and not in CI (`npm run mutate`; CPU-heavy: one mutant at a time).
// Stryker changes one thing in src/core/reference or src/core/mapping at a time and runs the tests
// that cover that folder with node's test runner; a mutant the tests do not notice is a test missing.
// MUTATE=reference (or mapping) narrows the run to one folder, MUTATE_FILES=a.ts,b.ts to some of its
// files (an hour of mapping becomes half an hour for decide.ts and rule.ts). The linear-time tests are skipped: they
// measure CPU time, which Stryker's instrumentation changes for every mutant alike; property tests run a
// tenth of their cases, enough to catch a mutant and ten times faster.
const scopes = {
  reference: {
    files: 'src/core/reference/**/*.ts',
    // embed.ts's inverse is tested with the cache's policy.
    tests: ['test/core/reference/reference.test.ts', 'test/core/cache/policy.test.ts'],
  },
  mapping: {
    files: 'src/core/mapping/**/*.ts',
    tests: [
      'test/core/mapping/mapping.test.ts',
      'test/core/mapping/compile.test.ts',
      'test/core/mapping/decide-reasons.test.ts',
      'test/core/mapping/fill-target.test.ts',
      'test/core/mapping/consistency.test.ts',
      'test/core/mapping/snapshot-update.test.ts',
      'test/core/decision-memo.test.ts',
      'test/core/mapping/probe-requests.test.ts',
      'test/core/pod/pull-secrets.test.ts',
      'test/core/pod/image-volumes.test.ts',
    ],
  },
};
const chosen = (process.env.MUTATE ?? Object.keys(scopes).join(','))
  .split(',')
  .map((name) => scopes[name.trim()] ?? Object.values(scopes));
const picked = [...new Set(chosen.flat())];
const tests = [...new Set(picked.flatMap((s) => s.tests))];

export default {
  testRunner: 'command',
  commandRunner: {
    command: `PULLMAP_PROPERTY_SCALE=0.1 node --test --test-isolation=none --test-skip-pattern=linear --test-reporter=dot ${tests.join(' ')}`,
  },
  mutate: process.env.MUTATE_FILES ? process.env.MUTATE_FILES.split(',') : picked.map((s) => s.files),
  concurrency: 1,
  timeoutMS: 20_000,
  reporters: ['clear-text', 'progress', 'html', 'json'],
  htmlReporter: { fileName: 'reports/mutation/index.html' },
  jsonReporter: { fileName: 'reports/mutation/mutation.json' },
  tempDirName: '.stryker-tmp',
  // The sandbox needs no tsconfig rewriting (it extends nothing), and TypeScript 7 has no JS API that
  // Stryker's rewriter could call: point it at no file.
  tsconfigFile: 'no-tsconfig-rewrite.json',
  cleanTempDir: true,
};
