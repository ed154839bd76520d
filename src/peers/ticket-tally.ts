import { type Logger, silentLogger } from '../log.js';
import type { PeerRoster } from './peer-roster.js';
import {
  PEER_TICKET_REFUSALS,
  type PeerTicketRefusal,
  REFUSING_REASONS,
  type RefusingReason,
} from './peer-status.js';

/**
 * Peers' tickets refused here, by peer and reason, counted from the roster's `refused` events
 * (the gate emits them and counts nothing), and whether a peer refuses our reservations now.
 * The log gets one line when a peer's tickets start being refused for a reason and one when
 * they are served again, not a line per refused ticket: a client may try many.
 */

type RefusalCounts = Record<PeerTicketRefusal, number>;

const isRefusing = (reason: PeerTicketRefusal): reason is RefusingReason =>
  (REFUSING_REASONS as readonly string[]).includes(reason);

export class PeerTicketTally {
  private readonly counts = new Map<string, RefusalCounts>();
  /** Peers whose last answer to a reservation was a refusal, with nothing working since. */
  private readonly refusingUs = new Set<string>();
  /** The reason the log last said a peer's tickets are refused for, until one is served. */
  private readonly logged = new Map<string, RefusingReason>();

  constructor(roster: PeerRoster, log: Logger = silentLogger) {
    roster.on('refused', ({ peer, reason, detail }) => {
      this.countsOf(peer)[reason]++;
      if (reason === 'peerRefused') this.refusingUs.add(peer);
      if (!isRefusing(reason) || this.logged.get(peer) === reason) return;
      this.logged.set(peer, reason);
      log.warn(
        { peer, reason, code: PEER_TICKET_REFUSALS[reason], ...(detail ? { err: detail } : {}) },
        "refusing the peer's tickets",
      );
    });
    roster.on('reachability', ({ peer, up, error }) => {
      // It answered without refusing, or stopped answering: either way it is not refusing us.
      if (!up || error === null) this.refusingUs.delete(peer);
    });
    roster.on('served', ({ peer }) => {
      if (this.logged.delete(peer)) log.info({ peer }, "accepting the peer's tickets again");
    });
  }

  /** Its tickets refused here since the start, by reason. */
  refused(peer: string): RefusalCounts {
    return { ...this.countsOf(peer) };
  }

  /** Whether the peer refused our last reservation (and nothing worked with it since). */
  refusesUs(peer: string): boolean {
    return this.refusingUs.has(peer);
  }

  private countsOf(peer: string): RefusalCounts {
    let counts = this.counts.get(peer);
    if (!counts) {
      counts = {
        notAccepted: 0,
        unpaidLimit: 0,
        peerRefused: 0,
        offline: 0,
        spent: 0,
        unknownKey: 0,
      };
      this.counts.set(peer, counts);
    }
    return counts;
  }
}
