import { describe, expect, it } from 'vitest';
import { buildCoinbase } from '../../src/sources/gbt-coinbase.js';
import { coinbaseHeight } from '../../src/work/coinbase-height.js';
import { toHex } from '../../src/work/hex.js';

/** coinb1 up to the scriptSig, as pools and getblocktemplate build it (one input, null prevout). */
const HEAD = `02000000` + `01` + '00'.repeat(32) + 'ffffffff';

describe('coinbaseHeight (BIP34)', () => {
  it('reads back the height our getblocktemplate coinbase pushes, small to large', () => {
    for (const height of [
      0,
      1,
      16,
      17,
      127,
      128,
      255,
      256,
      32_767,
      32_768,
      2_500_000,
      2 ** 31 - 1,
    ]) {
      const { coinb1 } = buildCoinbase({
        height,
        extranonceSize: 8,
        tag: new TextEncoder().encode('/powbridge/'),
        outputs: [{ value: 1n, script: Uint8Array.of(0x51) }],
      });
      expect(coinbaseHeight(toHex(coinb1)), String(height)).toBe(height);
    }
  });

  it('reads the push as Core writes it: OP_1…OP_16, then minimal little-endian numbers', () => {
    expect(coinbaseHeight(`${HEAD}0451`)).toBe(1); // OP_1
    expect(coinbaseHeight(`${HEAD}0460`)).toBe(16); // OP_16
    expect(coinbaseHeight(`${HEAD}050111`)).toBe(17);
    expect(coinbaseHeight(`${HEAD}06028000`)).toBe(128); // sign byte after 0x80
    expect(coinbaseHeight(`${HEAD}0703bb6c27`)).toBe(2_583_739);
    // A witness serialization: marker and flag before the input count.
    expect(coinbaseHeight(`020000000001${HEAD.slice(8)}0703bb6c27`)).toBe(2_583_739);
  });

  it('gives null for anything else instead of a made-up height', () => {
    for (const coinb1 of [
      '',
      'zz',
      '0200000001', // cut short
      `${HEAD}`, // no scriptSig length
      `${HEAD}20`, // no push (the test ManualSource's coinb1)
      `${HEAD}0503bb6c`, // push longer than what follows
      `${HEAD}020380`, // push longer than the scriptSig
      `${HEAD}080680000000000000`, // 6 bytes: above any height
      `${HEAD}050180`, // negative
      `${HEAD}0576`, // not a push
      `${HEAD}00`, // empty scriptSig
      `02000000` + `02` + HEAD.slice(10) + '0451', // two inputs: not a coinbase
    ]) {
      expect(coinbaseHeight(coinb1), coinb1).toBeNull();
    }
  });
});
