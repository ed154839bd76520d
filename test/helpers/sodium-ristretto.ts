import { createHash } from 'node:crypto';
import sodium from 'libsodium-wrappers-sumo';

/**
 * An independent ristretto255 (libsodium, C compiled to WebAssembly) and an independent
 * RFC 9380 expand_message_xmd, to check our noble-based ticket code against.
 */

export async function loadSodium(): Promise<typeof sodium> {
  await sodium.ready;
  return sodium;
}

/** RFC 9380 §5.3.1 expand_message_xmd with SHA-512. */
export function expandMessageXmd(msg: Uint8Array, dst: Uint8Array, length: number): Uint8Array {
  const H = (b: Buffer) => createHash('sha512').update(b).digest();
  const dstPrime = Buffer.concat([dst, Buffer.from([dst.length])]);
  const msgPrime = Buffer.concat([
    Buffer.alloc(128),
    msg,
    Buffer.from([length >> 8, length & 0xff, 0]),
    dstPrime,
  ]);
  const b0 = H(msgPrime);
  const blocks: Buffer[] = [H(Buffer.concat([b0, Buffer.from([1]), dstPrime]))];
  for (let i = 2; blocks.length * 64 < length; i++) {
    const prev = blocks[blocks.length - 1] as Buffer;
    const mixed = Buffer.alloc(64);
    for (let j = 0; j < 64; j++) mixed[j] = (b0[j] as number) ^ (prev[j] as number);
    blocks.push(H(Buffer.concat([mixed, Buffer.from([i]), dstPrime])));
  }
  return new Uint8Array(Buffer.concat(blocks).subarray(0, length));
}

export function scalarLE(value: bigint): Uint8Array {
  const out = new Uint8Array(32);
  let v = value;
  for (let i = 0; i < 32; i++) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

export function leToBigInt(bytes: Uint8Array): bigint {
  return BigInt(`0x${Buffer.from(bytes).reverse().toString('hex') || '0'}`);
}
