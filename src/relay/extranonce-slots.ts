/**
 * Splitting the upstream extranonce2 among clients (docs/design.md §4.2). Each client gets a
 * slot: a fixed-width prefix of the upstream extranonce2, sent as the client's extranonce1
 * (the upstream extranonce1 is folded into the client's coinb1, so a pool reconnect changes
 * nothing the client was told); the rest of the upstream extranonce2 is the client's. Fixed
 * width matters: with a variable-length tail two clients could search the same space.
 */

export interface SlotLayout {
  slotBytes: number;
  clientExtranonce2Size: number;
  capacity: number;
}

/**
 * Two slot bytes (65,536 clients) when the upstream leaves at least 2 bytes for each client,
 * one byte for tiny extranonce2 sizes, none (refuse clients) below that.
 */
export function slotLayout(upstreamExtranonce2Size: number): SlotLayout | null {
  const slotBytes = upstreamExtranonce2Size >= 4 ? 2 : upstreamExtranonce2Size >= 2 ? 1 : 0;
  if (slotBytes === 0) return null;
  return {
    slotBytes,
    clientExtranonce2Size: upstreamExtranonce2Size - slotBytes,
    capacity: 256 ** slotBytes,
  };
}

/** The most slots any layout has (two slot bytes): what every port's clients share at most. */
export const MAX_SLOTS = 256 ** 2;

/** Clients each port may hold: circuits on the HTTP port, standard miners on the Stratum port. */
export interface PortShares {
  circuit: number;
  stratum: number;
}

/**
 * Each port's cap within `capacity` slots: its configured maximum when both fit (the config
 * keeps the two within MAX_SLOTS), else the slots split in proportion to the maxima, at least
 * one each. The caps never add up to more than the slots, so clients of one port can never
 * take the place of the other's (a one-byte layout has only 256).
 */
export function slotShares(capacity: number, maxima: PortShares): PortShares {
  if (maxima.circuit + maxima.stratum <= capacity) return { ...maxima };
  const proportional = Math.floor((capacity * maxima.stratum) / (maxima.circuit + maxima.stratum));
  const stratum = Math.min(maxima.stratum, Math.max(1, proportional));
  return { circuit: Math.min(maxima.circuit, capacity - stratum), stratum };
}

export class SlotsExhaustedError extends Error {
  override name = 'SlotsExhaustedError';
}

/**
 * Hands out slot numbers. A released slot is reused last (the cursor moves on), so a new
 * client does not immediately search the space a departed client just searched on the same
 * job, which the pool would see as duplicate shares.
 */
export class SlotAllocator {
  private readonly used = new Set<number>();
  private cursor = 0;

  constructor(private capacity: number) {}

  get size(): number {
    return this.used.size;
  }

  get free(): number {
    return this.capacity - this.used.size;
  }

  allocate(): number {
    if (this.used.size >= this.capacity) {
      throw new SlotsExhaustedError(`all ${this.capacity} extranonce slots are in use`);
    }
    while (this.used.has(this.cursor)) this.cursor = (this.cursor + 1) % this.capacity;
    const slot = this.cursor;
    this.used.add(slot);
    this.cursor = (this.cursor + 1) % this.capacity;
    return slot;
  }

  release(slot: number): void {
    this.used.delete(slot);
  }

  /**
   * New capacity after the upstream changed its extranonce2 size. Slots that still fit are
   * kept; the others are returned so their clients can be given new ones.
   */
  resize(capacity: number): number[] {
    this.capacity = capacity;
    const evicted = [...this.used].filter((slot) => slot >= capacity);
    for (const slot of evicted) this.used.delete(slot);
    this.cursor %= capacity;
    return evicted;
  }
}

/** The slot as fixed-width big-endian hex, the bytes the client's extranonce1 ends with. */
export function slotHex(slot: number, slotBytes: number): string {
  return slot.toString(16).padStart(slotBytes * 2, '0');
}
