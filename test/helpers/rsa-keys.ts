import { mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type RsaPrivateKey, rsaPrivateKey } from '../../src/tickets/rsa-scheme.js';
import { openTicketKeys } from '../../src/tickets/ticket-desk.js';

/**
 * Pre-generated RSA ticket master keys (test/fixtures/rsa-keys.json), because finding two
 * 1024-bit safe primes takes 0.1–10 s per key. Each key is checked by rsaPrivateKey, like a key
 * file on load.
 */

interface FixtureFile {
  keys: { keyId: string; p: string; q: string }[];
}

const file = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'rsa-keys.json');
let parsed: RsaPrivateKey[] | undefined;

/** Every fixture key, parsed once per test file. */
export function rsaFixtureKeys(): RsaPrivateKey[] {
  if (!parsed) {
    const data = JSON.parse(readFileSync(file, 'utf8')) as FixtureFile;
    parsed = data.keys.map((k) => {
      const key = rsaPrivateKey(BigInt(`0x${k.p}`), BigInt(`0x${k.q}`));
      if (Buffer.from(key.keyId).toString('hex') !== k.keyId) {
        throw new Error(`rsa-keys.json: key ${k.keyId} does not match its primes`);
      }
      return key;
    });
  }
  return parsed;
}

/**
 * A stand-in for the key store's RSA generator: each call gives the next fixture key, from
 * `start`, cycling (so a store that makes more keys than there are fixtures sees a repeat).
 */
export function fixtureRsaKeys(start = 0): () => Promise<RsaPrivateKey> {
  const keys = rsaFixtureKeys();
  let next = start;
  return () => {
    const key = keys[next % keys.length];
    next++;
    return key ? Promise.resolve(key) : Promise.reject(new Error('rsa-keys.json has no keys'));
  };
}

/**
 * A relay data directory's keys made with the fixture RSA keys (finding safe primes takes
 * seconds, tens on a loaded machine), and today's issuing key, for tests that sign tickets
 * themselves instead of mining them.
 */
export async function fixtureRelayKeys(
  dataDir: string,
): Promise<{ day: number; issuing: RsaPrivateKey }> {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const keys = await openTicketKeys(dataDir, {
    lifetimeDays: 30,
    now: () => Date.now() / 1000,
    scheme: 'rsa',
    generateRsaKey: fixtureRsaKeys(),
  });
  const day = keys.today();
  const issuing = keys.issuingRsaKey(day);
  if (!issuing) throw new Error('no issuing RSA key for today');
  return { day, issuing: issuing.key };
}
