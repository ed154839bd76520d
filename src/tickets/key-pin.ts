import { z } from 'zod';
import type { TicketSchemeName } from '../protocol/messages.js';
import {
  descriptorKeyObject,
  keyEntryRules,
  type ListedKey,
  overlappingKeys,
  type SignedDescriptor,
  verifyDescriptor,
} from './descriptor.js';
import { utcDay } from './keyring.js';

/**
 * Client-side pinning of a relay's ticket keys (docs/design.md §6.4). A relay could tag users by
 * giving each one a key of its own: tickets signed with a per-user key are linkable to that
 * user however blind the signature. So a client only takes tickets under a key it has seen
 * listed in the relay's signed descriptor, for the day of the ticket, and it remembers what it
 * has seen:
 * - a key id never changes its public key or its scheme (ids are 8 bytes; a relay can grind a
 *   collision);
 * - at most one key of each scheme issues on any day (verifyDescriptor refuses a descriptor
 *   listing two, and the pin refuses a descriptor that, with the keys pinned before, would
 *   make two); a relay changing over from one scheme to the other lists one of each;
 * - a day the client saw listed under a key, once that day had begun, stays that key's:
 *   rotation only ever shortens a key's future, so an honest relay never rewrites the past.
 * Comparing descriptors fetched over different circuits (and with other clients) is what
 * catches a relay that shows each user a different descriptor; the pin is the local half.
 */

export class PinError extends Error {
  override name = 'PinError';
}

/** Slack for the relay's clock being behind ours around UTC midnight. */
export const PIN_CLOCK_SKEW_SECONDS = 600;

// Saved state from before tickets v2 has no `scheme`: those keys are Abe–Okamoto (the default).
const pinnedKeySchema = descriptorKeyObject
  .extend({ seenDay: z.number().int().min(0).max(0xffffffff) })
  .superRefine(keyEntryRules);
export type PinnedKey = ListedKey & {
  /** The latest day on which we saw this key listed (after subtracting the clock slack). */
  seenDay: number;
};

const pinSchema = z.strictObject({
  identity: z.string().regex(/^[0-9a-f]{64}$/),
  keys: z.array(pinnedKeySchema).max(1024),
});
export type PinState = z.output<typeof pinSchema>;

export class KeyPin {
  private keys = new Map<string, PinnedKey>();

  /** `identity`: the relay's Ed25519 public key (hex), pinned out of band. */
  constructor(
    readonly identity: string,
    keys: readonly PinnedKey[] = [],
  ) {
    for (const k of keys) this.keys.set(k.keyId, { ...k });
  }

  static fromJSON(value: unknown): KeyPin {
    const parsed = pinSchema.safeParse(value);
    if (!parsed.success) throw new PinError('key pin: malformed saved state');
    return new KeyPin(parsed.data.identity, parsed.data.keys);
  }

  toJSON(): PinState {
    return { identity: this.identity, keys: this.pinned() };
  }

  pinned(): PinnedKey[] {
    return [...this.keys.values()]
      .sort((a, b) => a.notBeforeDay - b.notBeforeDay)
      .map((k) => ({ ...k }));
  }

  /** Verify a descriptor under the pinned identity, then pin its keys. */
  accept(json: unknown, nowSeconds: number): SignedDescriptor {
    const descriptor = verifyDescriptor(json, this.identity);
    this.update(descriptor.tickets.keys, nowSeconds);
    return descriptor;
  }

  /**
   * Pin a verified descriptor's keys. Nothing changes unless all of them pass: a relay that
   * remaps a key id, rewrites a day already seen, or would have two keys of one scheme on one
   * day is refused.
   */
  update(listed: readonly ListedKey[], nowSeconds: number): void {
    const seenNow = utcDay(nowSeconds - PIN_CLOCK_SKEW_SECONDS);
    const next = new Map(this.keys);
    for (const k of listed) {
      const old = this.keys.get(k.keyId);
      if (old && old.publicKey !== k.publicKey) {
        throw new PinError(
          `relay changed the public key of ticket key ${k.keyId}; refusing its descriptor ` +
            `(a relay must not hand out different keys under one id)`,
        );
      }
      if (old && old.scheme !== k.scheme) {
        throw new PinError(
          `relay changed the scheme of ticket key ${k.keyId} from ${old.scheme} to ` +
            `${k.scheme}; refusing its descriptor`,
        );
      }
      if (old) {
        const seenTo = Math.min(old.notAfterDay, old.seenDay);
        if (
          old.notBeforeDay <= seenTo &&
          (k.notBeforeDay > old.notBeforeDay || k.notAfterDay < seenTo)
        ) {
          throw new PinError(
            `relay changed the validity of ticket key ${k.keyId} for days already begun ` +
              `(days ${old.notBeforeDay}..${seenTo}); refusing its descriptor`,
          );
        }
      }
      next.set(k.keyId, {
        keyId: k.keyId,
        scheme: k.scheme,
        publicKey: k.publicKey,
        notBeforeDay: k.notBeforeDay,
        notAfterDay: k.notAfterDay,
        seenDay: Math.max(old?.seenDay ?? 0, seenNow),
      });
    }
    const clash = overlappingKeys([...next.values()]);
    if (clash) {
      throw new PinError(
        `ticket keys ${clash[0].keyId} and ${clash[1].keyId} would both be valid on day ` +
          `${clash[1].notBeforeDay}; refusing the descriptor (one issuing key per scheme per day)`,
      );
    }
    this.keys = next;
  }

  /**
   * The relay offers to sign tickets of `day` under `keyId` (mining.register, ticket.open):
   * only the one pinned key of that scheme valid on that day is acceptable. On an unknown key,
   * fetch and `accept` the descriptor again, then check again; refuse if it is still not
   * listed. `scheme` (the terms' wire name) must be the one the descriptor lists the key with.
   */
  check(offer: {
    keyId: string;
    publicKey?: string;
    day: number;
    scheme?: TicketSchemeName;
  }): PinnedKey {
    const pinned = this.keys.get(offer.keyId);
    if (!pinned) {
      throw new PinError(
        `relay offered ticket key ${offer.keyId}, which its descriptor does not list`,
      );
    }
    if (offer.scheme !== undefined && offer.scheme !== pinned.scheme) {
      throw new PinError(
        `relay offered ticket key ${offer.keyId} as ${offer.scheme}, but its descriptor lists ` +
          `it as ${pinned.scheme}`,
      );
    }
    if (offer.publicKey !== undefined && offer.publicKey !== pinned.publicKey) {
      throw new PinError(`relay offered ticket key ${offer.keyId} with another public key`);
    }
    if (offer.day < pinned.notBeforeDay || offer.day > pinned.notAfterDay) {
      throw new PinError(
        `relay offered ticket key ${offer.keyId} for day ${offer.day}, outside its listed ` +
          `days ${pinned.notBeforeDay}..${pinned.notAfterDay}`,
      );
    }
    return { ...pinned };
  }

  /** Forget keys whose tickets can no longer be redeemed. */
  prune(nowSeconds: number): void {
    const today = utcDay(nowSeconds);
    for (const [id, k] of this.keys) if (today > k.notAfterDay + 1) this.keys.delete(id);
  }
}
