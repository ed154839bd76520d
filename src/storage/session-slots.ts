import { randomUUID } from 'node:crypto';
import { runNow } from '../lib/run-now.js';

/**
 * Abe–Okamoto signing-session slots (docs/design.md §6.2): at most K sessions open per
 * (key, day) across every instance that signs with that key, since the ROS bound is about
 * the key, not the process. The issuer (src/tickets/issuer.ts) holds one slot per open
 * session; two engines keep them: this file's in-memory one for a single relay (no round
 * trip), and PostgreSQL for a family (src/storage/postgres-session-slots.ts).
 *
 * Every slot carries an expiry on the relay's clock, later than the session it covers can
 * live: a slot left behind by an instance that died frees itself then, and an instance that
 * is alive always releases its slots before that (answer, timeout, circuit close).
 */

/** One held slot; `id` is the engine's, unique within the family. */
export interface SlotLease {
  readonly id: string;
  /** The ticket key's id, hex. */
  readonly keyId: string;
  readonly day: number;
  /** Unix seconds (relay clock) after which the slot counts as free. */
  readonly expiresAt: number;
}

export interface SlotRequest {
  /** The ticket key's id, hex (8 bytes). */
  keyId: string;
  day: number;
  /** K: the most slots the family may hold for (keyId, day). */
  limit: number;
  /** Unix seconds on the relay's clock: slots that expired by then are free. */
  now: number;
  /** Unix seconds on the relay's clock; after `now`. */
  expiresAt: number;
}

export interface SessionSlots {
  /**
   * Take a slot for (keyId, day) if fewer than `limit` unexpired ones are held family-wide,
   * in one atomic step (expired slots are dropped first); null when the family is full.
   */
  acquire(request: SlotRequest): Promise<SlotLease | null>;
  /** Give a slot back; releasing one that expired or was released already does nothing. */
  release(lease: SlotLease): Promise<void>;
  /** Unexpired slots held for (keyId, day) at `now`, family-wide. */
  held(keyId: string, day: number, now: number): Promise<number>;
  /** Drop every slot that expired by `now`; resolves how many. */
  expire(now: number): Promise<number>;
  /** Wait for the releases under way, then let go of the store. */
  close(): Promise<void>;
}

/** A request as stored. Throws RangeError on bad input. */
export function checkSlotRequest(request: SlotRequest): SlotRequest {
  const { keyId, day, limit, now, expiresAt } = request;
  if (!/^[0-9a-f]{16}$/.test(keyId)) throw new RangeError('keyId must be 8 bytes of hex');
  if (!Number.isInteger(day) || day < 0 || day > 0xffffffff) throw new RangeError('bad day');
  if (!Number.isInteger(limit) || limit < 1) throw new RangeError('limit must be at least 1');
  if (!Number.isFinite(now) || !(expiresAt > now)) {
    throw new RangeError('expiresAt must be after now');
  }
  return request;
}

/** The slots of one relay in its own memory: today's behaviour, nothing to share. */
export class MemorySessionSlots implements SessionSlots {
  /** `keyId:day` → lease id → lease. */
  private readonly slots = new Map<string, Map<string, SlotLease>>();

  acquire(request: SlotRequest): Promise<SlotLease | null> {
    return runNow(() => {
      const { keyId, day, limit, now, expiresAt } = checkSlotRequest(request);
      const name = `${keyId}:${day}`;
      const held = this.slots.get(name) ?? new Map<string, SlotLease>();
      for (const [id, lease] of held) if (lease.expiresAt <= now) held.delete(id);
      if (held.size >= limit) return null;
      const lease: SlotLease = { id: randomUUID(), keyId, day, expiresAt };
      held.set(lease.id, lease);
      this.slots.set(name, held);
      return lease;
    });
  }

  release(lease: SlotLease): Promise<void> {
    const name = `${lease.keyId}:${lease.day}`;
    const held = this.slots.get(name);
    held?.delete(lease.id);
    if (held?.size === 0) this.slots.delete(name);
    return Promise.resolve();
  }

  held(keyId: string, day: number, now: number): Promise<number> {
    let count = 0;
    for (const lease of this.slots.get(`${keyId}:${day}`)?.values() ?? []) {
      if (lease.expiresAt > now) count++;
    }
    return Promise.resolve(count);
  }

  expire(now: number): Promise<number> {
    let dropped = 0;
    for (const [name, held] of this.slots) {
      for (const [id, lease] of held) {
        if (lease.expiresAt <= now) {
          held.delete(id);
          dropped++;
        }
      }
      if (held.size === 0) this.slots.delete(name);
    }
    return Promise.resolve(dropped);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
