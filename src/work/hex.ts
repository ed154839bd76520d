/** Hex <-> bytes with strict validation: every external hex string goes through parseHex. */

const HEX_RE = /^(?:[0-9a-fA-F]{2})*$/;

export class HexError extends Error {
  override name = 'HexError';
}

/** True when `value` is a string of hex digit pairs, optionally of exactly `bytes` bytes. */
export function isHex(value: unknown, bytes?: number): value is string {
  if (typeof value !== 'string' || !HEX_RE.test(value)) return false;
  return bytes === undefined || value.length === bytes * 2;
}

/**
 * Parse a hex string. `what` names the field in the error message, so a caller can surface
 * "extranonce2: expected 4 bytes of hex, got 3" instead of a bare failure.
 */
export function parseHex(value: unknown, what: string, bytes?: number): Uint8Array {
  if (typeof value !== 'string') throw new HexError(`${what}: expected a hex string`);
  if (!HEX_RE.test(value)) throw new HexError(`${what}: not an even-length hex string`);
  if (bytes !== undefined && value.length !== bytes * 2) {
    throw new HexError(`${what}: expected ${bytes} bytes of hex, got ${value.length / 2}`);
  }
  return Uint8Array.from(Buffer.from(value, 'hex'));
}

export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

/** A reversed copy (display order <-> internal order of hashes). */
export function reversed(bytes: Uint8Array): Uint8Array {
  return Uint8Array.from(bytes).reverse();
}

export function concatBytes(...parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

/** uint32 as 8 hex digits, big-endian (the Stratum form of version, nbits, ntime, nonce). */
export function u32ToHex(value: number): string {
  return (value >>> 0).toString(16).padStart(8, '0');
}

/** Parse 8 hex digits big-endian into a uint32. */
export function parseU32Hex(value: unknown, what: string): number {
  return Buffer.from(parseHex(value, what, 4)).readUInt32BE(0);
}
