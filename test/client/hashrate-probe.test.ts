import { describe, expect, it } from 'vitest';
import { measureHashrate } from '../../src/client/hashrate-probe.js';
import type { MinePool } from '../../src/client/miner-pool.js';

/**
 * `powbridge terms` measures this machine with the miner's own threads and kernels (dist/:
 * run `npm run build` first). Whatever the speed, the figures must agree with each other; no
 * test here asserts a rate.
 */
describe('measureHashrate', () => {
  for (const algorithm of ['sha256d', 'scrypt'] as const) {
    it(`counts ${algorithm} hashes of every thread through the miner's control block`, async () => {
      const result = await measureHashrate({ algorithm, threads: 2, seconds: 0.3 });
      expect(result.algorithm).toBe(algorithm);
      expect(result.threads).toBe(2);
      expect(result.hashes).toBeGreaterThan(0);
      // Counted for the time asked (a timer never fires early; a margin for clock reads).
      expect(result.seconds).toBeGreaterThan(0.25);
      expect(result.hps).toBeCloseTo(result.hashes / result.seconds, 6);
      expect(result.load.cpus).toBeGreaterThanOrEqual(1);
      expect(result.load.average).toBeGreaterThanOrEqual(0);
    });
  }

  it('ends with the error of a thread that fails, and closes the pool', async () => {
    let closed = false;
    const failing: MinePool = {
      run: () => Promise.reject(new Error('dist/workers/mine.js is missing')),
      threads: 1,
      close: () => {
        closed = true;
        return Promise.resolve();
      },
    };
    await expect(
      measureHashrate({ algorithm: 'scrypt', threads: 1, createPool: () => failing }),
    ).rejects.toThrow(/mine\.js is missing/);
    expect(closed).toBe(true);
  });

  it('refuses a thread count that is not a whole number >= 1', async () => {
    await expect(measureHashrate({ algorithm: 'scrypt', threads: 0 })).rejects.toThrow(/threads/);
  });
});
