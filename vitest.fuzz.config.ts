import { defineConfig } from 'vitest/config';

/**
 * `npm run fuzz`: the fuzz suite of test/fuzz with FUZZ_RUNS cases per property (set by the
 * script), which `npm test` runs a hundred times each. Each property sets its own time limit
 * from its case count (test/helpers/fuzz.ts); the global setup adds up the cases run.
 */
export default defineConfig({
  test: {
    include: ['test/fuzz/**/*.test.ts'],
    globalSetup: ['test/helpers/fuzz-tally.ts'],
    hookTimeout: 60_000,
    maxWorkers: 2,
  },
});
