import { concatBytes } from './hex.js';

/** Coinbase = coinb1 ‖ extranonce1 ‖ extranonce2 ‖ coinb2 (all raw bytes). */
export function assembleCoinbase(
  coinb1: Uint8Array,
  extranonce1: Uint8Array,
  extranonce2: Uint8Array,
  coinb2: Uint8Array,
): Uint8Array {
  return concatBytes(coinb1, extranonce1, extranonce2, coinb2);
}
