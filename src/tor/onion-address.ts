import { ed25519 } from '@noble/curves/ed25519.js';
import { sha3_256 } from '@noble/hashes/sha3.js';

/**
 * Version 3 onion addresses (rend-spec-v3 §6): base32(PUBKEY ‖ CHECKSUM ‖ VERSION), 56
 * characters, where CHECKSUM = SHA3-256(".onion checksum" ‖ PUBKEY ‖ VERSION)[:2] and
 * VERSION = 3. Used to check what Tor returns, and to know the address a stored key gives
 * before Tor says it.
 */

export class OnionAddressError extends Error {
  override name = 'OnionAddressError';
}

const VERSION = 3;
const ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567';
const SERVICE_ID = /^[a-z2-7]{56}$/;
/** ADD_ONION's ED25519-V3 key blob: base64 of secret scalar (32) ‖ PRF secret (32). */
const KEY_BLOB = /^ED25519-V3:([A-Za-z0-9+/]{86}==)$/;

function base32(bytes: Uint8Array): string {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const byte of bytes) {
    value = ((value << 8) | byte) & 0xffff;
    bits += 8;
    while (bits >= 5) {
      out += ALPHABET[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += ALPHABET[(value << (5 - bits)) & 31];
  return out;
}

function unbase32(text: string): Uint8Array {
  const out: number[] = [];
  let bits = 0;
  let value = 0;
  for (const char of text) {
    value = ((value << 5) | ALPHABET.indexOf(char)) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Uint8Array.from(out);
}

function checksum(publicKey: Uint8Array): Uint8Array {
  const input = new Uint8Array([
    ...new TextEncoder().encode('.onion checksum'),
    ...publicKey,
    VERSION,
  ]);
  return sha3_256(input).subarray(0, 2);
}

/** The service id (address without ".onion") of an Ed25519 public key. */
export function serviceIdOf(publicKey: Uint8Array): string {
  if (publicKey.length !== 32) throw new OnionAddressError('expected a 32-byte public key');
  return base32(new Uint8Array([...publicKey, ...checksum(publicKey), VERSION]));
}

/** Check a v3 service id (56 base32 characters, version 3, checksum); returns its key. */
export function parseServiceId(serviceId: string): Uint8Array {
  if (!SERVICE_ID.test(serviceId)) {
    throw new OnionAddressError('not a v3 onion service id (56 characters a-z, 2-7)');
  }
  const bytes = unbase32(serviceId);
  const publicKey = bytes.subarray(0, 32);
  const sum = bytes.subarray(32, 34);
  if (bytes[34] !== VERSION) throw new OnionAddressError('onion service id is not version 3');
  const expected = checksum(publicKey);
  if (sum[0] !== expected[0] || sum[1] !== expected[1]) {
    throw new OnionAddressError('onion service id has a bad checksum');
  }
  return publicKey;
}

/** Check the form of an ED25519-V3 key blob; returns its 64 bytes. */
export function parseKeyBlob(blob: string): Uint8Array {
  const match = KEY_BLOB.exec(blob);
  const bytes = match ? Buffer.from(match[1] as string, 'base64') : null;
  if (!bytes || bytes.length !== 64) {
    throw new OnionAddressError('not an ED25519-V3 onion key (ED25519-V3:<base64 of 64 bytes>)');
  }
  return new Uint8Array(bytes);
}

/** The service id an ED25519-V3 key blob publishes under: A = a·B for its secret scalar a. */
export function serviceIdOfKeyBlob(blob: string): string {
  const key = parseKeyBlob(blob);
  let scalar = 0n;
  for (let i = 31; i >= 0; i--) scalar = (scalar << 8n) | BigInt(key[i] as number);
  const order = ed25519.Point.Fn.ORDER;
  const reduced = scalar % order;
  if (reduced === 0n) throw new OnionAddressError('onion key has a zero secret scalar');
  return serviceIdOf(ed25519.Point.BASE.multiply(reduced).toBytes());
}
