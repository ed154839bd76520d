import { createHash } from 'node:crypto';
import type { RandomBytes } from '../../src/tickets/group.js';

/** A deterministic byte stream (SHA-256 of seed ‖ counter) for exact, reproducible vectors. */
export function fixedRandom(seed: string): RandomBytes {
  let counter = 0;
  let pool = Buffer.alloc(0);
  return (length) => {
    while (pool.length < length) {
      const block = createHash('sha256').update(`${seed}/${counter++}`).digest();
      pool = Buffer.concat([pool, block]);
    }
    const out = pool.subarray(0, length);
    pool = pool.subarray(length);
    return new Uint8Array(out);
  };
}
