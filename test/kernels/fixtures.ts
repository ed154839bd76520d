import { createHash, scryptSync } from 'node:crypto';
import { parseHex } from '../../src/work/hex.js';
import { nbitsToTarget } from '../../src/work/target.js';
import type { HeaderVector } from '../helpers/vectors.js';
import { headerVectors } from '../helpers/vectors.js';

/** Deterministic random headers (xorshift32), so a failure reproduces. */
export function randomHeaders(count: number, seed: number): Uint8Array[] {
  let x = seed >>> 0 || 1;
  const next = (): number => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return x >>> 0;
  };
  return Array.from({ length: count }, () => {
    const header = new Uint8Array(80);
    for (let i = 0; i < 80; i += 4) new DataView(header.buffer).setUint32(i, next());
    return header;
  });
}

/** The reference: two node:crypto SHA-256 hashes, raw digest (internal) order. */
export function nodeSha256d(header: Uint8Array): Uint8Array {
  const first = createHash('sha256').update(header).digest();
  return new Uint8Array(createHash('sha256').update(first).digest());
}

export function nodeScrypt(header: Uint8Array): Uint8Array {
  return new Uint8Array(scryptSync(header, header, 32, { N: 1024, r: 1, p: 1 }));
}

export function withNonce(header76: Uint8Array, nonce: number): Uint8Array {
  const header = new Uint8Array(80);
  header.set(header76.subarray(0, 76));
  new DataView(header.buffer).setUint32(76, nonce, true);
  return header;
}

/** Most significant 32 bits of a hash read as a little-endian 256-bit integer. */
export function topWord(hash: Uint8Array): number {
  return new DataView(hash.buffer, hash.byteOffset, 32).getUint32(28, true);
}

export function vectorOf(algorithm: 'sha256d' | 'scrypt'): {
  vector: HeaderVector;
  header: Uint8Array;
  target: bigint;
} {
  const vector = headerVectors().find((v) => v.algorithm === algorithm);
  if (vector === undefined) throw new Error(`no ${algorithm} header vector`);
  return {
    vector,
    header: parseHex(vector.header, 'header', 80),
    target: nbitsToTarget(Number.parseInt(vector.bits, 16)),
  };
}
