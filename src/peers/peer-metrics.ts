import { Gauge, type Registry } from 'prom-client';
import type { PeerBalance } from './peer-status.js';
import type { PeerRoster } from './peer-roster.js';

/**
 * `powbridge_peer_*` gauges. Reachability follows the roster's events; the ticket counts are
 * the ledger's (durable, so they survive a restart) and are read at scrape time.
 */

export interface PeerMetricsSource {
  roster: PeerRoster;
  balance(peer: string): PeerBalance;
}

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
  const balances = () => roster.peers().map((p) => ({ name: p.name, ...source.balance(p.name) }));
  new Gauge({
    name: 'powbridge_peer_conflicts',
    help: 'Serials redeemed both here and at a peer (double spends across a partition).',
    labelNames: ['peer'] as const,
    registers,
    collect() {
      for (const b of balances()) this.set({ peer: b.name }, b.conflicts);
    },
  });
  new Gauge({
    name: 'powbridge_peer_tickets',
    help: 'Peer tickets: served here, unpaid to us, owed by us, accepted offline and not synced.',
    labelNames: ['peer', 'kind'] as const,
    registers,
    collect() {
      for (const b of balances()) {
        this.set({ peer: b.name, kind: 'served' }, b.served);
        this.set({ peer: b.name, kind: 'unpaid_to_us' }, b.unpaidToUs);
        this.set({ peer: b.name, kind: 'we_owe' }, b.weOwe);
        this.set({ peer: b.name, kind: 'owed_sync' }, b.owedSync);
      }
    },
  });
}
