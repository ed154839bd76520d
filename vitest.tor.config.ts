import { defineConfig } from 'vitest/config';

/**
 * The opt-in real-Tor suite (`npm run test:tor`): a private Tor network, litecoind regtest
 * and the built CLI. Its files end in .tor-test.ts, which the default suite's include
 * pattern (*.test.ts under test/) does not match.
 */
export default defineConfig({
  test: {
    include: ['test/tor/**/*.tor-test.ts'],
    // The test bounds itself at 8 minutes; these are the backstops.
    testTimeout: 9 * 60_000,
    hookTimeout: 9 * 60_000,
    maxWorkers: 1,
  },
});
