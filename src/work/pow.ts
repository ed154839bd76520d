import type { Algorithm } from './algorithm.js';
import { hashScrypt } from './kernels/scrypt-kernel.js';
import { hashSha256d } from './kernels/sha256d-kernel.js';

/**
 * Proof-of-work hash of an 80-byte header, in internal (little-endian) byte order; compare it
 * with hashMeetsTarget. Computed by the project's WebAssembly kernels (wasm/): sha256d, and
 * scrypt N=1024 r=1 p=1 with password = salt = header.
 */
export function powHash(algorithm: Algorithm, header: Uint8Array): Uint8Array {
  if (header.length !== 80) throw new RangeError(`header must be 80 bytes, got ${header.length}`);
  return algorithm === 'sha256d' ? hashSha256d(header) : hashScrypt(header);
}

/**
 * The asynchronous form the relay verifies shares with: inline here, or a worker pool
 * (src/relay/share-hasher.ts) for scrypt. Bad input rejects, never throws synchronously.
 */
export type PowHasher = (header: Uint8Array) => Promise<Uint8Array>;

export function createPowHasher(algorithm: Algorithm): Promise<PowHasher> {
  return Promise.resolve((header: Uint8Array) => {
    try {
      return Promise.resolve(powHash(algorithm, header));
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
  });
}
