import { Counter, Gauge, type Registry } from 'prom-client';
import { type PeerApiGuard, UNAUTHENTICATED_REASONS } from './peer-api-guard.js';
import {
  PEER_TICKET_REFUSAL_REASONS,
  type PeerBalance,
  type PeerTicketRefusal,
  REFUSING_REASONS,
  type RefusingReason,
} from './peer-status.js';
import type { PeerRoster } from './peer-roster.js';

/**
 * `powbridge_peer_*` metrics. Reachability follows the roster's events; the ticket counts are
 * the ledger's (durable, so they survive a restart), the refusals the tally's, and the peer
 * API's refusals the guard's, all read at scrape time.
 */

export interface PeerMetricsSource {
  roster: PeerRoster;
  /** From the ledger, which may be a database away: read at scrape time, awaited. */
  balance(peer: string): Promise<PeerBalance>;
  /** Why every ticket of the peer is refused now, or null while they are accepted. */
  refusing(peer: string): Promise<RefusingReason | null>;
  /** Its tickets refused since the start, by reason. */
  refused(peer: string): Record<PeerTicketRefusal, number>;
  api: Pick<PeerApiGuard, 'refused'>;
}

/** Metric labels are snake_case, as everywhere in /metrics (`unpaidLimit` → `unpaid_limit`). */
const label = (reason: string) => reason.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

export function registerPeerMetrics(registry: Registry, source: PeerMetricsSource): void {
  const registers = [registry];
  const { roster } = source;
  const up = new Gauge({
    name: 'powbridge_peer_up',
    help: 'Whether the last exchange with a peer relay succeeded (1), failed (0), or none yet (-1).',
    labelNames: ['peer'] as const,
    registers,
  });
  for (const peer of roster.peers()) up.set({ peer: peer.name }, -1);
  roster.on('reachability', (event) => up.set({ peer: event.peer }, event.up ? 1 : 0));
  const names = () => roster.peers().map((p) => p.name);
  const balances = () =>
    Promise.all(names().map(async (name) => ({ name, ...(await source.balance(name)) })));
  new Gauge({
    name: 'powbridge_peer_conflicts',
    help: 'Serials redeemed both here and at a peer (double spends across a partition).',
    labelNames: ['peer'] as const,
    registers,
    async collect() {
      for (const b of await balances()) this.set({ peer: b.name }, b.conflicts);
    },
  });
  new Gauge({
    name: 'powbridge_peer_tickets',
    help: 'Peer tickets: served here, unpaid to us, owed by us, accepted offline and not synced, double spends left out of bills.',
    labelNames: ['peer', 'kind'] as const,
    registers,
    async collect() {
      for (const b of await balances()) {
        this.set({ peer: b.name, kind: 'served' }, b.served);
        this.set({ peer: b.name, kind: 'unpaid_to_us' }, b.unpaidToUs);
        this.set({ peer: b.name, kind: 'we_owe' }, b.weOwe);
        this.set({ peer: b.name, kind: 'owed_sync' }, b.owedSync);
        this.set({ peer: b.name, kind: 'conflict_not_billed' }, b.conflictsNotBilled);
        this.set({ peer: b.name, kind: 'conflict_not_owed' }, b.conflictsNotOwed);
      }
    },
  });
  new Gauge({
    name: 'powbridge_peer_accepting',
    help: "Whether a peer's tickets are accepted here now (1) or all refused (0, see powbridge_peer_refusing).",
    labelNames: ['peer'] as const,
    registers,
    async collect() {
      for (const name of names()) {
        this.set({ peer: name }, (await source.refusing(name)) === null ? 1 : 0);
      }
    },
  });
  new Gauge({
    name: 'powbridge_peer_refusing',
    help: "Why all of a peer's tickets are refused now: 1 for the reason that holds, else 0.",
    labelNames: ['peer', 'reason'] as const,
    registers,
    async collect() {
      for (const name of names()) {
        const now = await source.refusing(name);
        for (const reason of REFUSING_REASONS) {
          this.set({ peer: name, reason: label(reason) }, reason === now ? 1 : 0);
        }
      }
    },
  });
  new Counter({
    name: 'powbridge_peer_refusals_total',
    help: "A peer's tickets refused here, by reason: not_accepted (35), unpaid_limit (36), peer_refused (36), offline (33), spent (32), unknown_key (35).",
    labelNames: ['peer', 'reason'] as const,
    registers,
    collect() {
      this.reset();
      for (const name of names()) {
        const refused = source.refused(name);
        for (const reason of PEER_TICKET_REFUSAL_REASONS) {
          this.inc({ peer: name, reason: label(reason) }, refused[reason]);
        }
      }
    },
  });
  new Counter({
    name: 'powbridge_peer_api_refused_total',
    help: 'Requests to the peer API refused before they authenticated (plain 401, or 429 over the rate), by reason.',
    labelNames: ['reason'] as const,
    registers,
    collect() {
      this.reset();
      const refused = source.api.refused();
      for (const reason of UNAUTHENTICATED_REASONS) this.inc({ reason }, refused[reason]);
    },
  });
}
