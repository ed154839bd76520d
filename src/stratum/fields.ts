import { z } from 'zod';

/**
 * Field schemas shared by the Stratum params and results. Every schema names its field in
 * its error message, so a parse failure reads "mining.notify: ntime: expected 4 bytes of hex"
 * rather than a path into a positional array.
 */

const HEX_RE = /^(?:[0-9a-fA-F]{2})*$/;

/** Largest extranonce2 the bridge accepts from a pool or offers a miner. */
export const MAX_EXTRANONCE2_BYTES = 16;
/** Pools use 4–8 bytes; anything beyond this is not a real extranonce1. */
export const MAX_EXTRANONCE1_BYTES = 32;
/** A Merkle branch deeper than this would mean more than 2^32 transactions. */
const MAX_MERKLE_BRANCHES = 32;
/** Identifiers and names are echoed back and logged: keep them short. */
const MAX_NAME_CHARS = 256;

/** Lowercase hex of `min`..`max` bytes (lowercase so values compare and re-encode as-is). */
export function hexBytes(name: string, min: number, max: number) {
  const expected = min === max ? `${min} bytes of hex` : `${min}..${max} bytes of hex`;
  return z
    .string({ error: `${name}: expected a hex string` })
    .regex(HEX_RE, { error: `${name}: not an even-length hex string` })
    .refine((v) => v.length >= min * 2 && v.length <= max * 2, {
      error: `${name}: expected ${expected}`,
    })
    .transform((v) => v.toLowerCase());
}

/** Hex of any even length (coinbase parts). The line cap bounds the size. */
export function hexAny(name: string) {
  return z
    .string({ error: `${name}: expected a hex string` })
    .regex(HEX_RE, { error: `${name}: not an even-length hex string` })
    .transform((v) => v.toLowerCase());
}

/** A big-endian uint32 in its 8-hex-digit Stratum form, kept as lowercase hex. */
export function hex8(name: string) {
  return hexBytes(name, 4, 4);
}

/** A big-endian uint32 in its 8-hex-digit Stratum form, as a number (masks). */
export function hex8Number(name: string) {
  return hex8(name).transform((v) => Number.parseInt(v, 16) >>> 0);
}

export function name(field: string, min = 0) {
  return z
    .string({ error: `${field}: expected a string` })
    .min(min, { error: `${field}: must not be empty` })
    .max(MAX_NAME_CHARS, { error: `${field}: longer than ${MAX_NAME_CHARS} characters` });
}

export function extranonce2Size(field: string) {
  return z
    .number({ error: `${field}: expected a number` })
    .int({ error: `${field}: expected an integer` })
    .min(0, { error: `${field}: must be 0..${MAX_EXTRANONCE2_BYTES}` })
    .max(MAX_EXTRANONCE2_BYTES, { error: `${field}: must be 0..${MAX_EXTRANONCE2_BYTES}` });
}

export const merkleBranch = z
  .array(hexBytes('merkle branch', 32, 32), { error: 'merkle branch: expected an array' })
  .max(MAX_MERKLE_BRANCHES, { error: `merkle branch: more than ${MAX_MERKLE_BRANCHES} hashes` });

export const difficulty = z
  .number({ error: 'difficulty: expected a number' })
  .refine((v) => Number.isFinite(v) && v > 0, { error: 'difficulty: must be finite and > 0' });

/** A number that some peers send as a decimal string ("3333", port and wait fields). */
export function looseInt(field: string, min: number, max: number) {
  return z
    .union([z.number(), z.string().regex(/^\d{1,10}$/)], {
      error: `${field}: expected an integer`,
    })
    .transform((v) => Number(v))
    .refine((v) => Number.isInteger(v) && v >= min && v <= max, {
      error: `${field}: must be an integer in ${min}..${max}`,
    });
}
