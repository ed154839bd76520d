/**
 * Litecoin's MWEB extension block as solo mining meets it (docs/design.md §3.2). Once MWEB is
 * active, every getblocktemplate answer carries the HogEx ("integrating") transaction last in
 * `transactions` and the serialized extension block in `mweb`. The block keeps the HogEx
 * unchanged and last; the extension follows the transactions. Litecoin Core decides from the
 * last transaction whether to read an extension at all, so a block whose last transaction is
 * not the HogEx cannot carry one.
 */

/** Litecoin's extended transaction serialization: flag bits after the 0x00 marker. */
const FLAG_WITNESS = 0x01;
const FLAG_MWEB = 0x08;

class TxReader {
  private pos = 0;
  constructor(private readonly bytes: Uint8Array) {}

  get remaining(): number {
    return this.bytes.length - this.pos;
  }

  byte(): number {
    const value = this.bytes[this.pos];
    if (value === undefined) throw new RangeError('transaction ends early');
    this.pos += 1;
    return value;
  }

  skip(count: number): void {
    if (count > this.remaining) throw new RangeError('transaction ends early');
    this.pos += count;
  }

  /** CompactSize; the lengths in a template transaction fit in a double exactly. */
  compactSize(): number {
    const first = this.byte();
    if (first < 0xfd) return first;
    const width = first === 0xfd ? 2 : first === 0xfe ? 4 : 8;
    let value = 0;
    for (let i = 0; i < width; i++) value += this.byte() * 2 ** (8 * i);
    return value;
  }

  /** A CompactSize length followed by that many bytes. */
  skipVector(): void {
    this.skip(this.compactSize());
  }
}

/**
 * Whether a raw transaction (as the template gives it) is the HogEx: Litecoin Core writes the
 * MWEB flag with an absent MWEB part (a 0x00 right before the lock time) only for the HogEx;
 * a transaction with a real MWEB part writes the part there instead. Malformed data is not
 * the HogEx.
 */
export function isHogEx(tx: Uint8Array): boolean {
  try {
    const reader = new TxReader(tx);
    reader.skip(4); // version
    if (reader.byte() !== 0x00) return false; // no marker: plain serialization, no MWEB flag
    const flags = reader.byte();
    if ((flags & FLAG_MWEB) === 0 || (flags & ~(FLAG_WITNESS | FLAG_MWEB)) !== 0) return false;
    const inputs = reader.compactSize();
    for (let i = 0; i < inputs; i++) {
      reader.skip(36); // previous output
      reader.skipVector(); // scriptSig
      reader.skip(4); // sequence
    }
    const outputs = reader.compactSize();
    for (let i = 0; i < outputs; i++) {
      reader.skip(8); // value
      reader.skipVector(); // scriptPubKey
    }
    if ((flags & FLAG_WITNESS) !== 0) {
      for (let i = 0; i < inputs; i++) {
        const items = reader.compactSize();
        for (let j = 0; j < items; j++) reader.skipVector();
      }
    }
    // The optional MWEB part: 0x00 = absent. Then the 4-byte lock time ends the transaction.
    return outputs > 0 && reader.byte() === 0x00 && reader.remaining === 4;
  } catch {
    return false;
  }
}
