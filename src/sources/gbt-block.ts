import { concatBytes } from '../work/hex.js';
import { compactSize } from './gbt-coinbase.js';

/**
 * Litecoin Core writes the MWEB extension block as an optional pointer: 0x01 then the block
 * (0x00 would say "none", which a block ending in the HogEx never has).
 */
const MWEB_BLOCK_PRESENT = Uint8Array.of(0x01);

/**
 * A full block for submitblock: header ‖ CompactSize(tx count) ‖ coinbase ‖ the template's
 * transactions exactly as the node gave them (already in witness serialization when they
 * have witnesses), then, once MWEB is active, 0x01 ‖ the template's `mweb` bytes, as Litecoin
 * Core's own miner serializes it. The coinbase must already be in the serialization the block
 * needs (see withCoinbaseWitness); with an extension block the last transaction must be the
 * template's HogEx (checkTemplateSupported makes sure).
 */
export function serializeBlock(
  header: Uint8Array,
  coinbase: Uint8Array,
  transactions: readonly Uint8Array[],
  mwebBlock: Uint8Array | null = null,
): Uint8Array {
  if (header.length !== 80) throw new RangeError(`header must be 80 bytes, got ${header.length}`);
  if (mwebBlock !== null && transactions.length === 0) {
    throw new RangeError('an MWEB block needs the HogEx transaction before it');
  }
  const extension = mwebBlock === null ? [] : [MWEB_BLOCK_PRESENT, mwebBlock];
  return concatBytes(
    header,
    compactSize(1 + transactions.length),
    coinbase,
    ...transactions,
    ...extension,
  );
}
