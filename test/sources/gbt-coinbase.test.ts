import { describe, expect, it } from 'vitest';
import { serializeBlock } from '../../src/sources/gbt-block.js';
import {
  bip34HeightPush,
  buildCoinbase,
  CoinbaseError,
  compactSize,
  withCoinbaseWitness,
} from '../../src/sources/gbt-coinbase.js';
import { concatBytes, toHex } from '../../src/work/hex.js';

/** A small, independent transaction reader, so the builder is not checked against itself. */
function readTx(tx: Uint8Array) {
  const buf = Buffer.from(tx);
  let at = 0;
  const take = (n: number): Buffer => {
    if (at + n > buf.length) throw new Error('read past end');
    const out = buf.subarray(at, at + n);
    at += n;
    return out;
  };
  const varint = (): number => {
    const first = take(1)[0] as number;
    if (first < 0xfd) return first;
    if (first === 0xfd) return take(2).readUInt16LE(0);
    if (first === 0xfe) return take(4).readUInt32LE(0);
    return Number(take(8).readBigUInt64LE(0));
  };
  const version = take(4).readUInt32LE(0);
  let witness = false;
  if (buf[at] === 0x00) {
    expect(buf[at + 1]).toBe(0x01);
    at += 2;
    witness = true;
  }
  const inputs = Array.from({ length: varint() }, () => ({
    prevout: toHex(take(36)),
    scriptSig: toHex(take(varint())),
    sequence: take(4).readUInt32LE(0),
  }));
  const outputs = Array.from({ length: varint() }, () => ({
    value: take(8).readBigUInt64LE(0),
    script: toHex(take(varint())),
  }));
  const witnesses = witness
    ? inputs.map(() => Array.from({ length: varint() }, () => toHex(take(varint()))))
    : [];
  const locktime = take(4).readUInt32LE(0);
  expect(at).toBe(buf.length);
  return { version, inputs, outputs, witnesses, locktime };
}

const payout = {
  value: 5_000_000_000n,
  script: Uint8Array.from(Buffer.from('0014' + 'ab'.repeat(20), 'hex')),
};
const commitment = {
  value: 0n,
  script: Uint8Array.from(Buffer.from('6a24aa21a9ed' + 'cd'.repeat(32), 'hex')),
};

describe('bip34HeightPush', () => {
  // CScript() << n, as Litecoin Core checks it (BIP34): OP_0, OP_1..OP_16, else minimal
  // CScriptNum push with a 0x00 sign byte when the top bit of the last byte is set.
  const cases: [number, string][] = [
    [0, '00'],
    [1, '51'],
    [2, '52'],
    [15, '5f'],
    [16, '60'],
    [17, '0111'],
    [127, '017f'],
    [128, '028000'],
    [255, '02ff00'],
    [256, '020001'],
    [32767, '02ff7f'],
    [32768, '03008000'],
    [65535, '03ffff00'],
    [65536, '03000001'],
    [8388607, '03ffff7f'],
    [8388608, '0400008000'],
    [2147483647, '04ffffff7f'],
  ];
  it.each(cases)('height %i → %s', (height, hex) => {
    expect(toHex(bip34HeightPush(height))).toBe(hex);
  });

  it('covers every height 1..16 with a single opcode', () => {
    for (let h = 1; h <= 16; h++) expect(Array.from(bip34HeightPush(h))).toEqual([0x50 + h]);
  });

  it('rejects negative, fractional and too-large heights', () => {
    for (const h of [-1, 1.5, 2 ** 31, Number.NaN]) {
      expect(() => bip34HeightPush(h)).toThrow(CoinbaseError);
    }
  });
});

describe('compactSize', () => {
  it.each([
    [0, '00'],
    [252, 'fc'],
    [253, 'fdfd00'],
    [0xffff, 'fdffff'],
    [0x10000, 'fe00000100'],
  ])('%i → %s', (n, hex) => {
    expect(toHex(compactSize(n))).toBe(hex);
  });
});

describe('buildCoinbase', () => {
  const en1 = Uint8Array.from([0xa1, 0xa2, 0xa3, 0xa4]);
  const en2 = Uint8Array.from([0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8]);
  const tag = new TextEncoder().encode('/powbridge/');

  it('puts the extranonce exactly between coinb1 and coinb2', () => {
    const { coinb1, coinb2 } = buildCoinbase({
      height: 300,
      extranonceSize: 12,
      tag,
      outputs: [payout, commitment],
    });
    const tx = readTx(concatBytes(coinb1, en1, en2, coinb2));
    expect(tx.version).toBe(2);
    expect(tx.locktime).toBe(0);
    expect(tx.inputs).toHaveLength(1);
    const input = tx.inputs[0]!;
    expect(input.prevout).toBe('00'.repeat(32) + 'ffffffff');
    expect(input.sequence).toBe(0xffffffff);
    expect(input.scriptSig).toBe('022c01' + toHex(en1) + toHex(en2) + toHex(tag));
    // coinb1 ends with the height push; coinb2 starts with the tag.
    expect(toHex(coinb1).endsWith('022c01')).toBe(true);
    expect(toHex(coinb2).startsWith(toHex(tag) + 'ffffffff')).toBe(true);
    expect(tx.outputs).toEqual([
      { value: payout.value, script: toHex(payout.script) },
      { value: 0n, script: toHex(commitment.script) },
    ]);
  });

  it('works without a tag and with a single-opcode height', () => {
    const { coinb1, coinb2 } = buildCoinbase({
      height: 5,
      extranonceSize: 12,
      tag: new Uint8Array(),
      outputs: [payout],
    });
    const tx = readTx(concatBytes(coinb1, en1, en2, coinb2));
    expect(tx.inputs[0]!.scriptSig).toBe('55' + toHex(en1) + toHex(en2));
    expect(tx.outputs).toHaveLength(1);
  });

  it('caps the scriptSig at 100 bytes', () => {
    // 5-byte height push + 12 extranonce bytes leave 83 for the tag.
    const spec = { height: 8388608, extranonceSize: 12, outputs: [payout] };
    const fits = buildCoinbase({ ...spec, tag: new Uint8Array(83) });
    expect(
      readTx(concatBytes(fits.coinb1, en1, en2, fits.coinb2)).inputs[0]!.scriptSig,
    ).toHaveLength(200);
    expect(() => buildCoinbase({ ...spec, tag: new Uint8Array(84) })).toThrow(/scriptSig.*101/);
    // A shorter height push leaves room for a longer tag.
    expect(() => buildCoinbase({ ...spec, height: 17, tag: new Uint8Array(86) })).not.toThrow();
    expect(() => buildCoinbase({ ...spec, height: 17, tag: new Uint8Array(87) })).toThrow(
      CoinbaseError,
    );
  });

  it('rejects a coinbase without outputs', () => {
    expect(() =>
      buildCoinbase({ height: 1, extranonceSize: 12, tag: new Uint8Array(), outputs: [] }),
    ).toThrow(CoinbaseError);
  });
});

describe('withCoinbaseWitness', () => {
  it('adds marker, flag and one 32-byte zero witness item without touching the rest', () => {
    const { coinb1, coinb2 } = buildCoinbase({
      height: 1000,
      extranonceSize: 12,
      tag: new Uint8Array(),
      outputs: [payout, commitment],
    });
    const plain = concatBytes(coinb1, new Uint8Array(12), coinb2);
    const witness = withCoinbaseWitness(plain);
    expect(witness.length).toBe(plain.length + 2 + 1 + 1 + 32);
    const a = readTx(plain);
    const b = readTx(witness);
    expect(b.witnesses).toEqual([['00'.repeat(32)]]);
    expect({ ...b, witnesses: [] }).toEqual(a);
    expect(() => withCoinbaseWitness(witness)).toThrow(CoinbaseError);
  });
});

describe('serializeBlock', () => {
  it('is header ‖ tx count ‖ coinbase ‖ transactions as given', () => {
    const header = new Uint8Array(80).fill(7);
    const coinbase = Uint8Array.of(1, 2, 3);
    const txs = [Uint8Array.of(4, 5), Uint8Array.of(6)];
    expect(toHex(serializeBlock(header, coinbase, txs))).toBe(
      '07'.repeat(80) + '03' + '010203' + '0405' + '06',
    );
    const many = Array.from({ length: 300 }, () => Uint8Array.of(9));
    expect(toHex(serializeBlock(header, coinbase, many)).slice(160, 166)).toBe('fd2d01');
    expect(() => serializeBlock(new Uint8Array(79), coinbase, [])).toThrow(RangeError);
  });
});
