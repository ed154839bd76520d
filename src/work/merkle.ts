import { sha256d } from './hash.js';
import { concatBytes } from './hex.js';

/**
 * Merkle root from the coinbase hash and Stratum branches. Branches are used as given
 * (internal byte order, no reversal): the coinbase is always the leftmost leaf, so each step
 * hashes the running value on the left.
 */
export function merkleRootFromBranches(
  coinbaseHash: Uint8Array,
  branches: readonly Uint8Array[],
): Uint8Array {
  let root = coinbaseHash;
  for (const branch of branches) root = sha256d(concatBytes(root, branch));
  return root;
}

/**
 * The branches a pool sends in mining.notify for a block whose non-coinbase transactions have
 * these txids (internal byte order, block order). The coinbase slot is left open.
 */
export function merkleBranchesForCoinbase(txids: readonly Uint8Array[]): Uint8Array[] {
  const branches: Uint8Array[] = [];
  // level[0] stands for the (unknown) running hash that contains the coinbase.
  let level: (Uint8Array | null)[] = [null, ...txids];
  while (level.length > 1) {
    branches.push(level[1] as Uint8Array);
    if (level.length % 2 === 1) level.push(level[level.length - 1] as Uint8Array);
    const next: (Uint8Array | null)[] = [null];
    for (let i = 2; i < level.length; i += 2) {
      next.push(sha256d(concatBytes(level[i] as Uint8Array, level[i + 1] as Uint8Array)));
    }
    level = next;
  }
  return branches;
}

/** Full merkle root of a list of txids (internal order), Bitcoin's odd-level duplication rule. */
export function merkleRoot(txids: readonly Uint8Array[]): Uint8Array {
  if (txids.length === 0) throw new RangeError('merkleRoot: no transactions');
  let level = [...txids];
  while (level.length > 1) {
    if (level.length % 2 === 1) level.push(level[level.length - 1] as Uint8Array);
    const next: Uint8Array[] = [];
    for (let i = 0; i < level.length; i += 2) {
      next.push(sha256d(concatBytes(level[i] as Uint8Array, level[i + 1] as Uint8Array)));
    }
    level = next;
  }
  return level[0] as Uint8Array;
}
