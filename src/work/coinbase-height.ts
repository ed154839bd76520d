import { parseHex } from './hex.js';

/**
 * The block height a coinbase commits to (BIP34: the first push of its scriptSig), read from
 * Stratum's coinb1, the coinbase transaction up to the extranonce. Pools and our own
 * getblocktemplate coinbase (src/sources/gbt-coinbase.ts) push it as Core's
 * `CScript() << height` does. The height is only shown to operators, never trusted, so
 * anything that does not look like such a push gives null rather than an error.
 */

/** version (4) + input count (1) + prevout (32 + 4). */
const SCRIPT_SIG_LENGTH_AT = 4 + 1 + 36;
/** Heights below 2^31 take at most 4 bytes (5 with a sign byte). */
const MAX_HEIGHT_BYTES = 5;

export function coinbaseHeight(coinb1: string): number | null {
  let bytes: Uint8Array;
  try {
    bytes = parseHex(coinb1, 'coinb1');
  } catch {
    return null;
  }
  // A witness serialization (marker 0x00, flag 0x01) puts two bytes before the input count.
  const skip = bytes[4] === 0x00 && bytes[5] === 0x01 ? 2 : 0;
  if (bytes[4 + skip] !== 1) return null; // a coinbase has exactly one input
  const lengthAt = SCRIPT_SIG_LENGTH_AT + skip;
  const scriptSigLength = bytes[lengthAt];
  // A coinbase scriptSig is 2–100 bytes: its length is a one-byte compact size.
  if (scriptSigLength === undefined || scriptSigLength < 1 || scriptSigLength > 100) return null;
  const opcode = bytes[lengthAt + 1];
  if (opcode === undefined) return null;
  if (opcode === 0x00) return 0; // OP_0
  if (opcode >= 0x51 && opcode <= 0x60) return opcode - 0x50; // OP_1 … OP_16
  if (opcode > MAX_HEIGHT_BYTES || opcode > scriptSigLength - 1) return null;
  const push = bytes.subarray(lengthAt + 2, lengthAt + 2 + opcode);
  if (push.length !== opcode) return null;
  // Script numbers are little-endian with a sign bit in the top byte: a height is positive.
  const top = push[push.length - 1] ?? 0;
  if (top & 0x80) return null;
  let height = 0;
  for (let i = push.length - 1; i >= 0; i--) height = height * 256 + (push[i] ?? 0);
  return height;
}
