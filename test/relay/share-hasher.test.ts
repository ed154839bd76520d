import { describe, expect, it } from 'vitest';
import { createShareHasher } from '../../src/relay/share-hasher.js';
import { parseHex, reversed, toHex } from '../../src/work/hex.js';
import { headerVectors } from '../helpers/vectors.js';

describe('share hasher', () => {
  for (const v of headerVectors()) {
    it(`${v.algorithm}: reproduces ${v.chain} #${v.height} (scrypt through worker threads)`, async () => {
      const hasher = await createShareHasher(v.algorithm, { threads: 2 });
      try {
        const header = parseHex(v.header, 'header', 80);
        const hashes = await Promise.all(Array.from({ length: 40 }, () => hasher.hash(header)));
        for (const hash of hashes) expect(toHex(reversed(hash))).toBe(v.powHash);
        await expect(hasher.hash(new Uint8Array(79))).rejects.toThrow(/80 bytes/);
      } finally {
        await hasher.close();
      }
    });
  }
});
