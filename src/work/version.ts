/**
 * BIP310 version rolling: the miner may change only the bits inside the negotiated mask.
 * BIP320 reserves bits 13..28 for this (mask 0x1fffe000).
 */
export const BIP320_MASK = 0x1fffe000;

export function versionBitsWithinMask(bits: number, mask: number): boolean {
  return (bits & ~mask) >>> 0 === 0;
}

/** version = (job & ~mask) | (bits & mask). Callers reject bits outside the mask first. */
export function rollVersion(jobVersion: number, bits: number, mask: number): number {
  return ((jobVersion & ~mask) | (bits & mask)) >>> 0;
}

/** The mask both sides allow: the upstream's grant intersected with the client's request. */
export function negotiateMask(upstreamMask: number, clientMask: number): number {
  return (upstreamMask & clientMask) >>> 0;
}
