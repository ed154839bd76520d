import { Stratifier } from '../../src/relay/stratifier.js';
import type { WorkSource } from '../../src/sources/work-source.js';
import { createPowHasher, type PowHasher } from '../../src/work/pow.js';
import { MIN_DIFFICULTY } from '../../src/work/target.js';

/**
 * A started sha256d stratifier for relay tests. At the default difficulty (the floor) every
 * nonce is a valid share; `pinned` stops vardiff from moving the difficulty shares were
 * searched for.
 */
export async function startTestStratifier(
  source: WorkSource,
  options: { difficulty?: number; pinned?: boolean; hasher?: PowHasher; maxClients?: number } = {},
): Promise<Stratifier> {
  const difficulty = options.difficulty ?? MIN_DIFFICULTY;
  const stratifier = new Stratifier({
    source,
    algorithm: 'sha256d',
    hasher: options.hasher ?? (await createPowHasher('sha256d')),
    initialDifficulty: difficulty,
    ticketDifficulty: difficulty,
    ...(options.maxClients === undefined ? {} : { maxClients: options.maxClients }),
    vardiff: options.pinned
      ? { minDifficulty: difficulty, maxDifficulty: difficulty }
      : { minDifficulty: difficulty },
  });
  stratifier.start();
  return stratifier;
}
