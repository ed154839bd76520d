import { join } from 'node:path';
import { Piscina } from 'piscina';
import type { Algorithm } from '../work/algorithm.js';
import { packageRoot } from '../work/package-root.js';
import { createPowHasher, type PowHasher } from '../work/pow.js';

export interface ShareHasher {
  hash: PowHasher;
  close(): Promise<void>;
}

/**
 * The PoW hasher the stratifier verifies shares with. sha256d costs about a microsecond and
 * runs inline; scrypt costs ~100 µs+ per hash and would stall every circuit, so it runs in
 * a pool of worker threads (the compiled dist/workers/verify-share.js).
 */
export async function createShareHasher(
  algorithm: Algorithm,
  options: { threads?: number; maxQueue?: number } = {},
): Promise<ShareHasher> {
  if (algorithm === 'sha256d') {
    return { hash: await createPowHasher(algorithm), close: () => Promise.resolve() };
  }
  const threads = options.threads ?? 1;
  const pool = new Piscina({
    filename: join(packageRoot(import.meta.url), 'dist', 'workers', 'verify-share.js'),
    minThreads: threads,
    maxThreads: threads,
    // Bounded: a flood of shares waits here instead of growing memory without limit.
    maxQueue: options.maxQueue ?? 4096,
    env: { ...process.env, POWBRIDGE_VERIFY_ALGORITHM: algorithm },
  });
  return {
    hash: (header) => pool.run(header) as Promise<Uint8Array>,
    close: () => pool.destroy(),
  };
}
