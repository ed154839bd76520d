import { constants, publicEncrypt } from 'node:crypto';
import type { RandomBytes } from './group.js';
import {
  bigIntToBytes,
  bytesToBigInt,
  derivedPublicKey,
  messagePrime,
  modInverse,
  SALT_BYTES,
  verifyWithKey,
  type RsaPublicKey,
} from './rsa-scheme.js';
import { emsaPssEncode, gcd, modulusBytes } from './rsa-pss.js';
import { SignatureError } from './scheme.js';

/**
 * The client's side of tickets v2 (docs/design.md §6.5): Blind and Finalize of
 * RSAPBSSA-SHA384-PSS-Deterministic (draft-amjad-cfrg-partially-blind-rsa-02), randomness
 * passed in so the draft's vectors and ours reproduce byte for byte.
 *
 * Why not the reference library's blind (`@cloudflare/blindrsa-ts`, still the cross-check in
 * the tests): it computes x = r^e' mod n with its pure-JS big integers, and e' is the day's
 * derived exponent of ~1,022 bits, not 65537, so one blind costs ~155 ms in Node. The same
 * modexp through OpenSSL (node:crypto `publicEncrypt` with RSA_NO_PADDING under the derived
 * public key) is a few milliseconds, which brings blind + finalize well under the 100 ms per
 * ticket the issue asks for. The rest is hashing and BigInt products. Finalize is ours too
 * (one BigInt product, then node:crypto's PSS verification, ~1 ms against the library's
 * ~8 ms), and the tests check it gives the library's bytes.
 */

/** Draws of r before giving up: each is in range with probability > 1/2 (n ≥ 2^(k·8−1)). */
const MAX_BLIND_DRAWS = 128;

export interface Blinded {
  /** Sent to the relay (ticket.issue). */
  blindedMsg: Uint8Array;
  /** r^-1 mod n, kept by the client until Finalize; never logged, never sent. */
  inv: Uint8Array;
}

/**
 * The draft's Blind: msg_prime = "msg" ‖ len(info) ‖ info ‖ msg, PSS-encoded with a fresh
 * 48-byte salt (emBits = modBits − 1); z = m · r^e' mod n for r uniform in [1, n) and coprime
 * to n, e' the exponent derived from (n, info). Draws, in order: the salt (48 bytes), then
 * k-byte candidates for r until one fits, as the reference library draws them.
 */
export function blindMessage(
  key: Pick<RsaPublicKey, 'n'>,
  info: Uint8Array,
  msg: Uint8Array,
  random: RandomBytes,
): Blinded {
  const { n } = key;
  const k = modulusBytes(n);
  const modBits = n.toString(2).length;
  const encoded = emsaPssEncode(messagePrime(info, msg), modBits - 1, random(SALT_BYTES));
  const m = bytesToBigInt(encoded);
  if (gcd(m, n) !== 1n) throw new RangeError('rsa: invalid input (message not coprime to n)');
  const derived = derivedPublicKey(n, info);
  for (let draw = 0; draw < MAX_BLIND_DRAWS; draw++) {
    const rBytes = random(k);
    const r = bytesToBigInt(rBytes);
    if (r === 0n || r >= n) continue;
    let inv: bigint;
    try {
      inv = modInverse(r, n);
    } catch {
      continue; // r shares a factor with n: draw again (never happens with a real key)
    }
    // x = r^e' mod n through OpenSSL: the one expensive step (e' has ~1,022 bits).
    const x = bytesToBigInt(
      publicEncrypt({ key: derived, padding: constants.RSA_NO_PADDING }, bigIntToBytes(r, k)),
    );
    return { blindedMsg: bigIntToBytes((m * x) % n, k), inv: bigIntToBytes(inv, k) };
  }
  throw new RangeError('rsa: no blinding factor in range (broken random source?)');
}

/**
 * The draft's Finalize: s = blind_sig · inv mod n, then RSASSA-PSS-VERIFY of msg_prime under
 * the derived public key. Throws SignatureError unless the result verifies: a ticket that does
 * not verify is never kept.
 */
export function finalizeSignature(
  key: Pick<RsaPublicKey, 'n'>,
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
  if (!verifyWithKey(derivedPublicKey(n, info), info, msg, signature)) {
    throw new SignatureError('issued ticket does not verify');
  }
  return signature;
}
