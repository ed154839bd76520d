import { sha384 } from '@noble/hashes/sha2.js';

/**
 * RSASSA-PSS's encoding (RFC 8017 §9.1) with SHA-384 and MGF1-SHA-384, as tickets v2 use it
 * (docs/design.md §6.5): pure functions over bytes, shared by the CLI's blind and finalize
 * (src/tickets/rsa-blind.ts, which does the modular powers through OpenSSL) and the miner
 * page's (src/browser/page-rsa.ts, BigInt), so both encode the same bytes by the same code.
 * No node: import: the page's bundle takes this file as it is.
 */

export const HASH_BYTES = 48;

export function gcd(a: bigint, b: bigint): bigint {
  while (b !== 0n) [a, b] = [b, a % b];
  return a;
}

export function modulusBits(n: bigint): number {
  return n.toString(2).length;
}

export function modulusBytes(n: bigint): number {
  return Math.ceil(modulusBits(n) / 8);
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, p) => sum + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** MGF1 (RFC 8017 B.2.1) with SHA-384. */
function mgf1(seed: Uint8Array, length: number): Uint8Array {
  const out = new Uint8Array(length);
  const counter = new Uint8Array(4);
  for (let at = 0, i = 0; at < length; at += HASH_BYTES, i++) {
    new DataView(counter.buffer).setUint32(0, i, false);
    out.set(sha384(concat(seed, counter)).subarray(0, Math.min(HASH_BYTES, length - at)), at);
  }
  return out;
}

/** H = SHA-384(0^8 ‖ SHA-384(message) ‖ salt), what both encoding and verification compare. */
function pssHash(message: Uint8Array, salt: Uint8Array): Uint8Array {
  return sha384(concat(new Uint8Array(8), sha384(message), salt));
}

/** EMSA-PSS-ENCODE (RFC 8017 9.1.1) with the given salt. */
export function emsaPssEncode(message: Uint8Array, emBits: number, salt: Uint8Array): Uint8Array {
  const emLen = Math.ceil(emBits / 8);
  if (emLen < HASH_BYTES + salt.length + 2) throw new RangeError('rsa: encoding error');
  const h = pssHash(message, salt);
  const dbLength = emLen - HASH_BYTES - 1;
  // DB = PS (zeros) ‖ 0x01 ‖ salt, masked by MGF1(H).
  const db = new Uint8Array(dbLength);
  db[dbLength - salt.length - 1] = 0x01;
  db.set(salt, dbLength - salt.length);
  const mask = mgf1(h, dbLength);
  for (let i = 0; i < dbLength; i++) db[i] = (db[i] ?? 0) ^ (mask[i] ?? 0);
  db[0] = (db[0] ?? 0) & (0xff >> (8 * emLen - emBits));
  return concat(db, h, new Uint8Array([0xbc]));
}

/** EMSA-PSS-VERIFY (RFC 8017 9.1.2) with a salt of `saltLength` bytes. */
export function emsaPssVerify(
  message: Uint8Array,
  em: Uint8Array,
  emBits: number,
  saltLength: number,
): boolean {
  const emLen = Math.ceil(emBits / 8);
  if (em.length !== emLen || emLen < HASH_BYTES + saltLength + 2) return false;
  if (em[emLen - 1] !== 0xbc) return false;
  const dbLength = emLen - HASH_BYTES - 1;
  const maskedDb = em.subarray(0, dbLength);
  const h = em.subarray(dbLength, dbLength + HASH_BYTES);
  const topBits = 0xff >> (8 * emLen - emBits);
  if (((maskedDb[0] ?? 0) & ~topBits) !== 0) return false;
  const mask = mgf1(h, dbLength);
  const db = maskedDb.map((byte, i) => byte ^ (mask[i] ?? 0));
  db[0] = (db[0] ?? 0) & topBits;
  const saltAt = dbLength - saltLength;
  for (let i = 0; i < saltAt - 1; i++) if (db[i] !== 0) return false;
  if (db[saltAt - 1] !== 0x01) return false;
  const expected = pssHash(message, db.subarray(saltAt));
  return expected.every((byte, i) => byte === h[i]);
}
