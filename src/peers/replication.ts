import { hexToBytes } from '@noble/hashes/utils.js';
import type { SpendRequest, SpentLog } from '../storage/spent-log.js';
import type { PeerLedger } from '../storage/peer-ledger.js';
import type { PeerRoster } from './peer-roster.js';

/**
 * Spends a peer made, from its spent log or its bill, recorded in our spent store
 * (docs/design.md §7), a page in one transaction. Idempotent: applying the same records again
 * changes nothing. A serial
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
    private readonly store: Pick<SpentLog, 'trySpendMany' | 'lookup'>,
    private readonly ledger: PeerLedger,
    private readonly roster: PeerRoster,
    private readonly now: () => number,
  ) {}

  /** Resolves how many were already known as spent at that peer. */
  async apply(peerName: string, spends: readonly ReplicatedSpend[]): Promise<number> {
    const now = Math.floor(this.now());
    const lastDay = Math.floor(now / 86_400) + FUTURE_DAY_SLACK;
    // A spend of a later day: nobody accepts it yet; the peer's clock is wrong.
    const requests: (SpendRequest & { theirsAt: number })[] = spends
      .filter((spend) => spend.day <= lastDay)
      .map((spend) => ({
        serial: hexToBytes(spend.serial),
        keyId: hexToBytes(spend.keyId),
        day: spend.day,
        at: Math.min(spend.at, now),
        origin: peerName,
        theirsAt: spend.at,
      }));
    if (requests.length === 0) return 0;
    const results = await this.store.trySpendMany(requests);
    let known = 0;
    for (const [i, result] of results.entries()) {
      if (result.spent) continue;
      const { serial, keyId, day, theirsAt } = requests[i] as (typeof requests)[number];
      const existing = await this.store.lookup(serial);
      if (!existing) continue; // pruned meanwhile
      if (existing.origin === peerName) {
        known++;
        continue;
      }
      if (existing.origin !== 'local') continue; // a third relay's conflict, not ours to tell
      const fresh = await this.ledger.recordConflict(
        peerName,
        { serial, keyId, day, oursAt: existing.at, theirsAt },
        now,
      );
      // The serial stays in the ledger for the operator (`peers status`), never in the log.
      if (fresh) this.roster.emit('conflict', { peer: peerName, day });
    }
    return known;
  }
}
