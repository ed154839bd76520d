import type { Algorithm } from './algorithm.js';
import { sha256d } from './hash.js';
import { parseHeader } from './header.js';
import { parseHex, reversed, toHex } from './hex.js';
import { createPowHasher } from './pow.js';
import { hashDifficulty, hashMeetsTarget, nbitsToTarget, targetToDifficulty } from './target.js';

/** Everything worth knowing about one 80-byte header, for debugging and the `hash` command. */
export interface HeaderReport {
  algorithm: Algorithm;
  /** Display order (byte-reversed), as block explorers show hashes. */
  powHash: string;
  blockHash: string;
  nbits: string;
  /** Network difficulty from nbits, in Stratum units of the algorithm. */
  networkDifficulty: number;
  /** Difficulty this hash achieved. */
  shareDifficulty: number;
  meetsTarget: boolean;
}

/** Throws HexError on anything but exactly 80 bytes of hex. */
export async function inspectHeader(
  algorithm: Algorithm,
  headerHex: string,
): Promise<HeaderReport> {
  const header = parseHex(headerHex.trim(), '--header', 80);
  const pow = await (await createPowHasher(algorithm))(header);
  const { nbits } = parseHeader(header);
  const target = nbitsToTarget(nbits);
  return {
    algorithm,
    powHash: toHex(reversed(pow)),
    blockHash: toHex(reversed(sha256d(header))),
    nbits: nbits.toString(16).padStart(8, '0'),
    networkDifficulty:
      target === 0n ? Number.POSITIVE_INFINITY : targetToDifficulty(target, algorithm),
    shareDifficulty: hashDifficulty(pow, algorithm),
    meetsTarget: hashMeetsTarget(pow, target),
  };
}
