import { generatePrime } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { MODULUS_BITS, type RsaPrivateKey, rsaPrivateKey } from './rsa-scheme.js';

/**
 * A fresh RSA master key for tickets v2 (docs/design.md §6.5) without blocking the event loop:
 * the two 1024-bit safe primes are found by node:crypto's asynchronous `generatePrime` on the
 * libuv thread pool, both at once. Finding a safe prime takes 0.1–10 s of CPU, and a running
 * relay makes its next key during its hourly upkeep while it serves circuits.
 */

export interface RsaKeygenProgress {
  /** Safe primes found so far for the key being made (0, 1 or 2). */
  found: number;
  /** Milliseconds since generation started. */
  elapsedMs: number;
}

export interface RsaKeygenOptions {
  /** Called when generation starts and whenever a prime is found (for a progress line). */
  onProgress?: (progress: RsaKeygenProgress) => void;
}

const PRIME_BITS = MODULUS_BITS / 2;

function safePrime(): Promise<bigint> {
  return new Promise((resolve, reject) => {
    generatePrime(PRIME_BITS, { safe: true, bigint: true }, (err, prime) => {
      if (err) reject(err);
      else resolve(prime);
    });
  });
}

function bitLength(x: bigint): number {
  return x.toString(2).length;
}

/**
 * Two distinct safe primes with a 2048-bit product, checked by rsaPrivateKey exactly as a key
 * file is checked on load (the same checks as rsa-scheme's synchronous generateRsaKey).
 */
export async function generateRsaKeyAsync(options: RsaKeygenOptions = {}): Promise<RsaPrivateKey> {
  const started = performance.now();
  const report = (found: number) =>
    options.onProgress?.({ found, elapsedMs: performance.now() - started });
  for (;;) {
    let found = 0;
    report(found);
    const [p, q] = await Promise.all(
      [safePrime(), safePrime()].map((prime) =>
        prime.then((value) => {
          report(++found);
          return value;
        }),
      ),
    );
    if (p === undefined || q === undefined) throw new Error('rsa: prime generation failed');
    // Two 1024-bit primes can make a 2047-bit modulus; draw again rather than shorten the key.
    if (p === q || bitLength(p * q) !== MODULUS_BITS) continue;
    return rsaPrivateKey(p, q);
  }
}
