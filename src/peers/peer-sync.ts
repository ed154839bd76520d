import { bytesToHex } from '@noble/hashes/utils.js';
import { type Logger, silentLogger } from '../log.js';
import { ALWAYS_LEADING, type SyncLeadership } from '../storage/family-leader.js';
import type { PeerLedger } from '../storage/peer-ledger.js';
import { PeerUnreachableError } from './peer-client.js';
import type { PeerKeyDirectory } from './peer-keys.js';
import {
  MAX_SPENT_PAGE,
  PEER_PREFIX,
  paymentResponse,
  settleResponse,
  spentResponse,
} from './peer-messages.js';
import type { PeerRoster } from './peer-roster.js';
import type { SpendReplicator } from './replication.js';

/**
 * One sync round per peer, every `intervalSeconds` and on demand: refresh its descriptor (its
 * ticket keys), pull its spent log by cursor, deliver our payment requests and settlements.
 * Every step is idempotent, so a round cut short by an outage is simply run again. In a relay
 * family only the instance that leads (src/storage/family-leader.ts) runs the timed rounds.
 */

const MAX_PAGES_PER_SYNC = 20;

export interface PeerSyncOptions {
  roster: PeerRoster;
  ledger: PeerLedger;
  keys: PeerKeyDirectory;
  replicator: SpendReplicator;
  intervalSeconds: number;
  /** Whether this instance runs the timed rounds now (a family's leader); default always. */
  leadership?: SyncLeadership;
  now: () => number;
  logger?: Logger;
}

export class PeerSync {
  private readonly syncing = new Map<string, Promise<void>>();
  private readonly log: Logger;
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly options: PeerSyncOptions) {
    this.log = options.logger ?? silentLogger;
  }

  /** Sync every peer now and then every interval. */
  start(): void {
    if (this.timer || this.options.roster.size === 0) return;
    const leadership = this.options.leadership ?? ALWAYS_LEADING;
    const tick = () => {
      if (!leadership.isLeading()) return;
      for (const peer of this.options.roster.peers()) void this.syncPeer(peer.name);
    };
    tick();
    this.timer = setInterval(tick, this.options.intervalSeconds * 1000);
    this.timer.unref();
  }

  /** Stop the timer and wait for rounds in flight. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await Promise.allSettled([...this.syncing.values()]);
  }

  /** One sync round with a peer; concurrent calls share the running round. */
  syncPeer(name: string): Promise<void> {
    const running = this.syncing.get(name);
    if (running) return running;
    const { roster } = this.options;
    const round = this.round(name)
      .catch((err: unknown) => {
        const message = err instanceof Error ? err.message : String(err);
        if (err instanceof PeerUnreachableError) roster.lost(name, message);
        else roster.contact(name, message);
        this.log.warn({ peer: name, err: message }, 'peer sync failed');
      })
      .finally(() => this.syncing.delete(name));
    this.syncing.set(name, round);
    return round;
  }

  private async round(name: string): Promise<void> {
    const { roster, ledger, keys } = this.options;
    const reached = roster.reach(name);
    if (!reached) return;
    const { peer, client } = reached;
    keys.update(name, peer.identity, await client.fetchPublic('/v1/descriptor'));
    await this.pullSpent(name);
    for (const request of await ledger.undeliveredRequests(name)) {
      await client.call(
        'POST',
        `${PEER_PREFIX}/payment-request`,
        {
          id: request.id,
          count: request.count,
          digest: request.digest,
          period: request.period,
          serials: request.serials.map((s) => ({
            serial: bytesToHex(s.serial),
            keyId: bytesToHex(s.keyId),
            day: s.day,
          })),
        },
        paymentResponse,
      );
      await ledger.markRequestDelivered(request.id, Math.floor(this.options.now()));
    }
    for (const settlement of await ledger.undeliveredSettlements(name)) {
      const answer = await client.call(
        'POST',
        `${PEER_PREFIX}/settle`,
        {
          id: settlement.id,
          count: settlement.count,
          method: settlement.method,
          at: settlement.at,
          ...(settlement.tickets ? { tickets: settlement.tickets } : {}),
        },
        settleResponse,
      );
      if (answer.accepted < settlement.count) {
        this.log.warn(
          { peer: name, sent: settlement.count, accepted: answer.accepted },
          'peer took fewer settlement tickets than sent (spent or invalid)',
        );
      }
      await ledger.settlementDelivered(
        name,
        settlement.id,
        answer.accepted,
        Math.floor(this.options.now()),
      );
    }
    roster.contact(name, null);
  }

  /** The peer's spent log from our cursor on, a page at a time. */
  private async pullSpent(name: string): Promise<void> {
    const { roster, ledger, replicator } = this.options;
    const reached = roster.reach(name);
    if (!reached) return;
    for (let page = 0; page < MAX_PAGES_PER_SYNC; page++) {
      const after = await ledger.pulled(name);
      const answer = await reached.client.call(
        'GET',
        `${PEER_PREFIX}/spent?after=${after}&limit=${MAX_SPENT_PAGE}`,
        undefined,
        spentResponse,
      );
      if (answer.head < after) {
        // Idempotent apply makes a full re-read safe; conflicts are still recorded once.
        this.log.warn(
          { peer: name, cursor: after, head: answer.head },
          "peer's spent log is behind our cursor (restored from a backup?): reading it again",
        );
        await ledger.resetPulled(name);
        continue;
      }
      const records = answer.records.filter((r) => r.seq > after);
      await replicator.apply(name, records);
      const last = records.at(-1);
      if (last) await ledger.setPulled(name, last.seq);
      if (!answer.more || !last) break;
    }
  }
}
