import { concatBytes } from '../work/hex.js';
import { compactSize } from './gbt-coinbase.js';

/**
 * A full block for submitblock: header ‖ CompactSize(tx count) ‖ coinbase ‖ the template's
 * transactions exactly as the node gave them (already in witness serialization when they
 * have witnesses). The coinbase must already be in the serialization the block needs
 * (see withCoinbaseWitness).
 */
export function serializeBlock(
  header: Uint8Array,
  coinbase: Uint8Array,
  transactions: readonly Uint8Array[],
): Uint8Array {
  if (header.length !== 80) throw new RangeError(`header must be 80 bytes, got ${header.length}`);
  return concatBytes(header, compactSize(1 + transactions.length), coinbase, ...transactions);
}
