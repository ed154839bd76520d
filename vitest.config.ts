import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // A hang limit, not a speed check: CLI tests start several node processes (~1 s each
    // alone, 4 s on a loaded 2-core machine).
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Integration tests start real daemons; keep the 2-core machine from thrashing.
    maxWorkers: 2,
    // The second names files whose worker died before they finished (scripts/test.mjs).
    reporters: ['default', './test/reporters/run-report.ts'],
  },
});
