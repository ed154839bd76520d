import type { RandomBytes } from '../tickets/group.js';
import {
  emsaPssEncode,
  emsaPssVerify,
  gcd,
  modulusBits,
  modulusBytes,
} from '../tickets/rsa-pss.js';
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

const MAX_BLIND_DRAWS = 128;

export interface Blinded {
  blindedMsg: Uint8Array;
  /** r^-1 mod n: kept in the page until Finalize; never stored, never sent. */
  inv: Uint8Array;
}

type PublicKey = Pick<RsaPublicKey, 'n'>;

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
  return emsaPssVerify(messagePrime(info, msg), bigIntToBytes(m, emLen), emBits, SALT_BYTES);
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
