import { MAX_TARGET } from '../target.js';

/** Argument checks and shared types of the hashing kernels' wrappers. */

const TWO_POW_32 = 2 ** 32;

/** A nonce whose proof-of-work hash met the target, with that hash (internal byte order). */
export interface KernelShare {
  nonce: number;
  hash: Uint8Array;
}

export function checkBytes(value: Uint8Array, length: number, what: string): void {
  if (!(value instanceof Uint8Array)) throw new TypeError(`${what}: expected a Uint8Array`);
  if (value.length !== length) {
    throw new RangeError(`${what}: expected ${length} bytes, got ${value.length}`);
  }
}

export function checkUint32(value: number, what: string): void {
  if (!Number.isInteger(value) || value < 0 || value >= TWO_POW_32) {
    throw new RangeError(`${what}: expected an integer in [0, 2^32), got ${value}`);
  }
}

/** A nonce range start, start+1, ..., start+count-1 must stay within the uint32 nonce field. */
export function checkNonceRange(nonceStart: number, count: number): void {
  checkUint32(nonceStart, 'nonceStart');
  if (!Number.isInteger(count) || count < 0 || nonceStart + count > TWO_POW_32) {
    throw new RangeError(
      `count: expected an integer in [0, 2^32 - nonceStart] = [0, ${TWO_POW_32 - nonceStart}], got ${count}`,
    );
  }
}

/**
 * The pre-filter word of a target: its most significant 32 bits. A hash (a little-endian
 * 256-bit integer) can only meet the target when its own top 32 bits are <= this word.
 */
export function preFilterWord(target: bigint): number {
  if (typeof target !== 'bigint' || target < 0n || target > MAX_TARGET) {
    throw new RangeError('target: expected a bigint in [0, 2^256)');
  }
  return Number(target >> 224n);
}
