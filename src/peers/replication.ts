import { hexToBytes } from '@noble/hashes/utils.js';
import type { SpentStore } from '../tickets/spent-store.js';
import type { PeerLedger } from './peer-ledger.js';
import type { PeerRoster } from './peer-roster.js';

/**
 * Spends a peer made, from its spent log or its bill, recorded in our spent store
 * (docs/design.md §7). Idempotent: applying the same records again changes nothing. A serial
 * we spent ourselves too is a double spend across relays: recorded in the ledger (which takes
 * it out of the bills, peer-ledger.ts) and reported once.
 */

/** What a peer's spent log entry claims, already checked by the caller's schema. */
export interface ReplicatedSpend {
  serial: string;
  keyId: string;
  day: number;
  at: number;
}

/** Days a replicated spend may lie ahead of our clock (the peer's clock may be a day on). */
const FUTURE_DAY_SLACK = 1;

export class SpendReplicator {
  constructor(
    private readonly store: Pick<SpentStore, 'trySpend' | 'lookup'>,
    private readonly ledger: PeerLedger,
    private readonly roster: PeerRoster,
    private readonly now: () => number,
  ) {}

  /** Returns how many were already known as spent at that peer. */
  apply(peerName: string, spends: readonly ReplicatedSpend[]): number {
    const now = Math.floor(this.now());
    const lastDay = Math.floor(now / 86_400) + FUTURE_DAY_SLACK;
    let known = 0;
    for (const spend of spends) {
      if (spend.day > lastDay) continue; // nobody accepts it yet; the peer's clock is wrong
      const serial = hexToBytes(spend.serial);
      const keyId = hexToBytes(spend.keyId);
      const result = this.store.trySpend({
        serial,
        keyId,
        day: spend.day,
        at: Math.min(spend.at, now),
        origin: peerName,
      });
      if (result.spent) continue;
      const existing = this.store.lookup(serial);
      if (!existing) continue; // pruned meanwhile
      if (existing.origin === peerName) {
        known++;
        continue;
      }
      if (existing.origin !== 'local') continue; // a third relay's conflict, not ours to tell
      const fresh = this.ledger.recordConflict(
        peerName,
        { serial, keyId, day: spend.day, oursAt: existing.at, theirsAt: spend.at },
        now,
      );
      // The serial stays in the ledger for the operator (`peers status`), never in the log.
      if (fresh) this.roster.emit('conflict', { peer: peerName, day: spend.day });
    }
    return known;
  }
}
