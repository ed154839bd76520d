import { createSHA256, scrypt } from 'hash-wasm';
import type { Algorithm } from './algorithm.js';

/**
 * Proof-of-work hash of an 80-byte header, in internal (little-endian) byte order; compare it
 * with hashMeetsTarget. Asynchronous because hash-wasm's scrypt is; the miner's own kernels
 * (wasm/) replace these for throughput.
 */
export type PowHasher = (header: Uint8Array) => Promise<Uint8Array>;

export const SCRYPT_PARAMS = { costFactor: 1024, blockSize: 1, parallelism: 1, hashLength: 32 };

function checkHeader(header: Uint8Array): void {
  if (header.length !== 80) throw new RangeError(`header must be 80 bytes, got ${header.length}`);
}

export async function createPowHasher(algorithm: Algorithm): Promise<PowHasher> {
  if (algorithm === 'sha256d') {
    const hasher = await createSHA256();
    // Bad input rejects (never throws synchronously): callers treat every hasher alike.
    return (header) => {
      try {
        checkHeader(header);
        const first = hasher.init().update(header).digest('binary');
        return Promise.resolve(hasher.init().update(first).digest('binary'));
      } catch (err) {
        return Promise.reject(err instanceof Error ? err : new Error(String(err)));
      }
    };
  }
  return async (header) => {
    checkHeader(header); // inside async: becomes a rejection
    return scrypt({ password: header, salt: header, ...SCRYPT_PARAMS, outputType: 'binary' });
  };
}
