import { describe, expect, it } from 'vitest';
import { generateRsaKeyAsync, type RsaKeygenProgress } from '../../src/tickets/rsa-keygen.js';
import { MODULUS_BITS, rsaPrivateKey } from '../../src/tickets/rsa-scheme.js';

/** One real generation: the relay's hourly upkeep makes keys this way while it serves. */
describe('RSA key generation', () => {
  it('finds two safe primes off the event loop, reporting progress', async () => {
    const progress: RsaKeygenProgress[] = [];
    let turns = 0;
    // If the primes were searched on the event loop, this timer could not fire until the end.
    const timer = setInterval(() => turns++, 1);
    let key;
    try {
      key = await generateRsaKeyAsync({ onProgress: (p) => progress.push(p) });
    } finally {
      clearInterval(timer);
    }
    expect(turns).toBeGreaterThan(0);
    expect(progress.map((p) => p.found)).toEqual([0, 1, 2]);
    const elapsed = progress.map((p) => p.elapsedMs);
    expect(elapsed).toEqual([...elapsed].sort((a, b) => a - b));

    expect(key.p).not.toBe(key.q);
    expect((key.p * key.q).toString(2)).toHaveLength(MODULUS_BITS);
    // The same checks a key file gets on load (safe primes, modulus, exponent, encoding).
    expect(rsaPrivateKey(key.p, key.q)).toEqual(key);
  }, 120_000);
});
