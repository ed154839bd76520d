import { describe, expect, it } from 'vitest';
import { RpcError, RpcErrorCode } from '../../src/protocol/errors.js';
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

  it('scrypt: a share beyond threads + maxQueue is refused 38 at once; the queue does not grow', async () => {
    const v = headerVectors().find((x) => x.algorithm === 'scrypt');
    if (!v) throw new Error('no scrypt vector');
    const hasher = await createShareHasher('scrypt', { threads: 1, maxQueue: 2 });
    try {
      const header = parseHex(v.header, 'header', 80);
      const outcomes = await Promise.allSettled(
        Array.from({ length: 10 }, () => hasher.hash(header)),
      );
      const done = outcomes.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []));
      const refused = outcomes.flatMap((o): unknown[] =>
        o.status === 'rejected' ? [o.reason] : [],
      );
      // All ten were asked in one turn: one running and two waiting, the rest refused.
      expect(done).toHaveLength(3);
      for (const hash of done) expect(toHex(reversed(hash))).toBe(v.powHash);
      expect(refused).toHaveLength(7);
      for (const err of refused) {
        expect(err).toBeInstanceOf(RpcError);
        expect(err).toMatchObject({ code: RpcErrorCode.relayOverloaded, data: { retryAfter: 1 } });
      }
      expect(hasher.overloaded()).toBe(7);
      // Room again once they are done.
      expect(toHex(reversed(await hasher.hash(header)))).toBe(v.powHash);
    } finally {
      await hasher.close();
    }
  });
});
