import { concatBytes } from '../work/hex.js';

/**
 * The coinbase transaction of a solo block, split Stratum-style around the extranonce:
 * coinb1 ends right before extranonce1 and coinb2 starts right after extranonce2, so
 * coinb1 ‖ en1 ‖ en2 ‖ coinb2 is the transaction in non-witness serialization (which is what
 * its txid, and so the merkle root, commits to).
 */

/** Consensus limit on a coinbase scriptSig (bad-cb-length above it). */
export const MAX_COINBASE_SCRIPTSIG = 100;
/** The longest BIP34 height push: opcode + 4 bytes covers every height below 2^31. */
export const MAX_HEIGHT_PUSH = 5;

export class CoinbaseError extends Error {
  override name = 'CoinbaseError';
}

export interface CoinbaseOutput {
  /** Satoshis (litoshis). */
  value: bigint;
  script: Uint8Array;
}

export interface CoinbaseSpec {
  height: number;
  /** Bytes reserved for extranonce1 ‖ extranonce2 inside the scriptSig. */
  extranonceSize: number;
  /** Free-form bytes after the extranonce (pool tag); may be empty. */
  tag: Uint8Array;
  outputs: readonly CoinbaseOutput[];
}

export interface CoinbaseParts {
  coinb1: Uint8Array;
  coinb2: Uint8Array;
}

/** Bitcoin's CompactSize ("varint") length prefix. */
export function compactSize(n: number): Uint8Array {
  if (!Number.isSafeInteger(n) || n < 0) throw new CoinbaseError(`compactSize: bad length ${n}`);
  if (n < 0xfd) return Uint8Array.of(n);
  const buf = Buffer.alloc(n <= 0xffff ? 3 : n <= 0xffffffff ? 5 : 9);
  if (n <= 0xffff) {
    buf[0] = 0xfd;
    buf.writeUInt16LE(n, 1);
  } else if (n <= 0xffffffff) {
    buf[0] = 0xfe;
    buf.writeUInt32LE(n, 1);
  } else {
    buf[0] = 0xff;
    buf.writeBigUInt64LE(BigInt(n), 1);
  }
  return new Uint8Array(buf);
}

/**
 * `CScript() << height` exactly as Litecoin/Bitcoin Core builds it, because BIP34 compares
 * the scriptSig's first bytes with that serialization: 0 is OP_0, 1..16 are OP_1..OP_16
 * (single opcodes, not pushes), anything else is a push of the minimal CScriptNum, which
 * needs an extra 0x00 byte when the top bit of the last byte is set (128 → 02 80 00).
 */
export function bip34HeightPush(height: number): Uint8Array {
  if (!Number.isSafeInteger(height) || height < 0 || height > 0x7fffffff) {
    throw new CoinbaseError(`height out of range: ${height}`);
  }
  if (height === 0) return Uint8Array.of(0x00);
  if (height <= 16) return Uint8Array.of(0x50 + height);
  const bytes: number[] = [];
  for (let v = height; v > 0; v = Math.floor(v / 256)) bytes.push(v % 256);
  if (((bytes[bytes.length - 1] as number) & 0x80) !== 0) bytes.push(0x00);
  return Uint8Array.of(bytes.length, ...bytes);
}

function u32le(value: number): Uint8Array {
  const buf = Buffer.alloc(4);
  buf.writeUInt32LE(value >>> 0, 0);
  return new Uint8Array(buf);
}

function u64le(value: bigint): Uint8Array {
  if (value < 0n || value > 0xffffffffffffffffn) throw new CoinbaseError('output value range');
  const buf = Buffer.alloc(8);
  buf.writeBigUInt64LE(value, 0);
  return new Uint8Array(buf);
}

const TX_VERSION = 2;
const NULL_PREVOUT = concatBytes(new Uint8Array(32), u32le(0xffffffff));
const FINAL_SEQUENCE = u32le(0xffffffff);
const LOCKTIME_ZERO = u32le(0);

/** Build coinb1/coinb2 for a template; throws CoinbaseError if the scriptSig would not fit. */
export function buildCoinbase(spec: CoinbaseSpec): CoinbaseParts {
  if (!Number.isInteger(spec.extranonceSize) || spec.extranonceSize < 0) {
    throw new CoinbaseError(`bad extranonce size ${spec.extranonceSize}`);
  }
  if (spec.outputs.length === 0) throw new CoinbaseError('a coinbase needs at least one output');
  const heightPush = bip34HeightPush(spec.height);
  const scriptSigLength = heightPush.length + spec.extranonceSize + spec.tag.length;
  if (scriptSigLength > MAX_COINBASE_SCRIPTSIG) {
    throw new CoinbaseError(
      `coinbase scriptSig would be ${scriptSigLength} bytes (max ${MAX_COINBASE_SCRIPTSIG}); shorten the coinbase tag`,
    );
  }
  const coinb1 = concatBytes(
    u32le(TX_VERSION),
    compactSize(1),
    NULL_PREVOUT,
    compactSize(scriptSigLength),
    heightPush,
  );
  const outputs = spec.outputs.flatMap((o) => [
    u64le(o.value),
    compactSize(o.script.length),
    o.script,
  ]);
  const coinb2 = concatBytes(
    spec.tag,
    FINAL_SEQUENCE,
    compactSize(spec.outputs.length),
    ...outputs,
    LOCKTIME_ZERO,
  );
  return { coinb1, coinb2 };
}

/**
 * The same coinbase in witness serialization: marker 0x00, flag 0x01, and a witness stack of
 * one 32-byte zero item (the witness reserved value that the block's witness commitment
 * hashes in). Without it the block is invalid (bad-witness-nonce-size) — and submitblock
 * would quietly add it, hiding the bug. Only valid for our one-input coinbase.
 */
export function withCoinbaseWitness(coinbase: Uint8Array): Uint8Array {
  if (coinbase.length < 10) throw new CoinbaseError('coinbase too short');
  if (coinbase[4] === 0x00) throw new CoinbaseError('coinbase already has witness serialization');
  const body = coinbase.subarray(4, coinbase.length - 4);
  return concatBytes(
    coinbase.subarray(0, 4),
    Uint8Array.of(0x00, 0x01),
    body,
    Uint8Array.of(0x01, 0x20),
    new Uint8Array(32),
    coinbase.subarray(coinbase.length - 4),
  );
}
