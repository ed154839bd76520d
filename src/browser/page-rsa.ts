import { sha384 } from '@noble/hashes/sha2.js';
import type { RandomBytes } from '../tickets/group.js';
import { SignatureError } from '../tickets/scheme.js';
import {
  bigIntToBytes,
  bytesToBigInt,
  derivePublicExponent,
  messagePrime,
  modInverse,
  modPow,
  type RsaPublicKey,
  SALT_BYTES,
} from './shims/rsa-scheme.js';

/**
 * The page's side of tickets v2 (docs/design.md §6.5): Blind, Finalize and Verify of
 * RSAPBSSA-SHA384-PSS-Deterministic, the same steps as the CLI's src/tickets/rsa-blind.ts,
 * with BigInt where the CLI calls OpenSSL. WebCrypto has RSA-PSS, but it refuses a public
 * exponent other than a small one, and the day's derived exponent e' has ~1,022 bits; so
 * r^e' and s^e' are BigInt modular powers (tens of milliseconds each) and PSS is done by
 * hand over @noble/hashes' SHA-384. Randomness is passed in, as in the shared code, so the
 * tests can check these bytes against the CLI's.
 */

const HASH_BYTES = 48;
const MAX_BLIND_DRAWS = 128;

export interface Blinded {
  blindedMsg: Uint8Array;
  /** r^-1 mod n: kept in the page until Finalize; never stored, never sent. */
  inv: Uint8Array;
}

type PublicKey = Pick<RsaPublicKey, 'n'>;

const modulusBits = (n: bigint): number => n.toString(2).length;
const modulusBytes = (n: bigint): number => Math.ceil(modulusBits(n) / 8);

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, p) => sum + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

function gcd(a: bigint, b: bigint): bigint {
  while (b !== 0n) [a, b] = [b, a % b];
  return a;
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

/** EMSA-PSS-ENCODE (RFC 8017 9.1.1), SHA-384, MGF1-SHA-384, the given salt. */
function emsaPssEncode(message: Uint8Array, emBits: number, salt: Uint8Array): Uint8Array {
  const emLen = Math.ceil(emBits / 8);
  if (emLen < HASH_BYTES + salt.length + 2) throw new RangeError('rsa: encoding error');
  const h = pssHash(message, salt);
  const dbLength = emLen - HASH_BYTES - 1;
  const db = new Uint8Array(dbLength);
  db[dbLength - salt.length - 1] = 0x01;
  db.set(salt, dbLength - salt.length);
  const mask = mgf1(h, dbLength);
  for (let i = 0; i < dbLength; i++) db[i] = (db[i] ?? 0) ^ (mask[i] ?? 0);
  db[0] = (db[0] ?? 0) & (0xff >> (8 * emLen - emBits));
  return concat(db, h, new Uint8Array([0xbc]));
}

/** EMSA-PSS-VERIFY (RFC 8017 9.1.2) with a 48-byte salt. */
function emsaPssVerify(message: Uint8Array, em: Uint8Array, emBits: number): boolean {
  const emLen = Math.ceil(emBits / 8);
  if (em.length !== emLen || emLen < HASH_BYTES + SALT_BYTES + 2) return false;
  if (em[emLen - 1] !== 0xbc) return false;
  const dbLength = emLen - HASH_BYTES - 1;
  const maskedDb = em.subarray(0, dbLength);
  const h = em.subarray(dbLength, dbLength + HASH_BYTES);
  const topBits = 0xff >> (8 * emLen - emBits);
  if (((maskedDb[0] ?? 0) & ~topBits) !== 0) return false;
  const mask = mgf1(h, dbLength);
  const db = maskedDb.map((byte, i) => byte ^ (mask[i] ?? 0));
  db[0] = (db[0] ?? 0) & topBits;
  const saltAt = dbLength - SALT_BYTES;
  for (let i = 0; i < saltAt - 1; i++) if (db[i] !== 0) return false;
  if (db[saltAt - 1] !== 0x01) return false;
  const expected = pssHash(message, db.subarray(saltAt));
  return expected.every((byte, i) => byte === h[i]);
}

/**
 * The draft's Blind: PSS-encode msg_prime with a fresh salt, then z = m · r^e' mod n for r
 * uniform in [1, n). Draws in the CLI's order (salt, then k-byte candidates for r), so the
 * same random bytes give the CLI's blinded message.
 */
export function blindMessage(
  key: PublicKey,
  info: Uint8Array,
  msg: Uint8Array,
  random: RandomBytes,
): Blinded {
  const { n } = key;
  const k = modulusBytes(n);
  const encoded = emsaPssEncode(messagePrime(info, msg), modulusBits(n) - 1, random(SALT_BYTES));
  const m = bytesToBigInt(encoded);
  if (gcd(m, n) !== 1n) throw new RangeError('rsa: invalid input (message not coprime to n)');
  const ePrime = derivePublicExponent(n, info);
  for (let draw = 0; draw < MAX_BLIND_DRAWS; draw++) {
    const r = bytesToBigInt(random(k));
    if (r === 0n || r >= n) continue;
    let inv: bigint;
    try {
      inv = modInverse(r, n);
    } catch {
      continue;
    }
    const x = modPow(r, ePrime, n);
    return { blindedMsg: bigIntToBytes((m * x) % n, k), inv: bigIntToBytes(inv, k) };
  }
  throw new RangeError('rsa: no blinding factor in range (broken random source?)');
}

/** RSASSA-PSS-VERIFY of msg_prime under the day's derived public key (n, e'). */
export function verifyTicketSignature(
  key: PublicKey,
  info: Uint8Array,
  msg: Uint8Array,
  signature: Uint8Array,
): boolean {
  const { n } = key;
  const k = modulusBytes(n);
  if (signature.length !== k) return false;
  const s = bytesToBigInt(signature);
  if (s >= n) return false;
  const m = modPow(s, derivePublicExponent(n, info), n);
  const emBits = modulusBits(n) - 1;
  const emLen = Math.ceil(emBits / 8);
  if (m >= 1n << BigInt(emLen * 8)) return false;
  return emsaPssVerify(messagePrime(info, msg), bigIntToBytes(m, emLen), emBits);
}

/**
 * The draft's Finalize: s = blind_sig · inv mod n, kept only if it verifies (a ticket that
 * does not verify is worth nothing and could be a relay's tag). Throws SignatureError.
 */
export function finalizeSignature(
  key: PublicKey,
  info: Uint8Array,
  msg: Uint8Array,
  blindSig: Uint8Array,
  inv: Uint8Array,
): Uint8Array {
  const { n } = key;
  const k = modulusBytes(n);
  if (blindSig.length !== k || inv.length !== k) {
    throw new SignatureError(`blind signature and inverse must be ${k} bytes`);
  }
  const z = bytesToBigInt(blindSig);
  const rInv = bytesToBigInt(inv);
  if (z >= n || rInv === 0n || rInv >= n) throw new SignatureError('blind signature out of range');
  const signature = bigIntToBytes((z * rInv) % n, k);
  if (!verifyTicketSignature(key, info, msg, signature)) {
    throw new SignatureError('issued ticket does not verify');
  }
  return signature;
}
