import { EventEmitter } from 'node:events';
import type { Agent } from 'node:http';
import type { PeerSigner } from './peer-auth.js';
import { PeerClient } from './peer-client.js';
import type { PeerConfig, PeeringConfig } from './peer-config.js';
import type { PeerStatus, PeerTicketRefusal } from './peer-status.js';

/**
 * The configured peers of one relay: each by name and by identity, its signed-request client,
 * and whether the last exchange with it worked. Reachability changes are events, so the log
 * line and the `powbridge_peer_up` gauge listen instead of being written into the gate and
 * the sync loop; so do refusals of a peer's tickets (counted by ticket-tally.ts).
 */

/** Whether the last exchange with a peer worked (as /v1/status shows it). */
export type PeerState = Pick<PeerStatus, 'up' | 'lastContactAt' | 'lastError'>;

export interface PeeringEvents {
  /** An exchange with a peer worked (`error`: it answered, with a refusal) or failed. */
  reachability: [{ peer: string; up: boolean; wasUp: boolean | null; error: string | null }];
  /** One of a peer's tickets was served here (offline: its relay was unreachable). */
  served: [{ peer: string; offline: boolean }];
  /** We billed a peer (a PAYMENT_REQUEST was recorded for delivery). */
  billed: [{ peer: string; id: string; count: number }];
  /** One of a peer's tickets was refused here (`detail`: what the peer or the ledger said). */
  refused: [{ peer: string; reason: PeerTicketRefusal; detail?: string }];
  /** A serial spent both here and at the peer: a double spend across a partition. */
  conflict: [{ peer: string; day: number }];
}

export interface PeerRosterOptions {
  peers: readonly PeerConfig[];
  settings: Pick<PeeringConfig, 'requestTimeoutSeconds' | 'clockSkewSeconds'>;
  identity: PeerSigner;
  now: () => number;
  agent?: Agent;
}

export class PeerRoster extends EventEmitter<PeeringEvents> {
  private readonly byName = new Map<string, PeerConfig>();
  private readonly byIdentity = new Map<string, PeerConfig>();
  private readonly clients = new Map<string, PeerClient>();
  private readonly states = new Map<string, PeerState>();
  private readonly now: () => number;

  constructor(options: PeerRosterOptions) {
    super();
    this.now = options.now;
    for (const peer of options.peers) {
      if (peer.identity === options.identity.publicKeyHex) {
        throw new Error(`peers.${peer.name}: that is this relay's own identity`);
      }
      this.byName.set(peer.name, peer);
      this.byIdentity.set(peer.identity, peer);
      this.states.set(peer.name, { up: null, lastContactAt: null, lastError: null });
      this.clients.set(
        peer.name,
        new PeerClient({
          self: options.identity,
          peer: { name: peer.name, url: peer.url, identity: peer.identity },
          timeoutMs: options.settings.requestTimeoutSeconds * 1000,
          clockSkewSeconds: options.settings.clockSkewSeconds,
          now: this.now,
          ...(options.agent ? { agent: options.agent } : {}),
        }),
      );
    }
  }

  get size(): number {
    return this.byName.size;
  }

  peers(): PeerConfig[] {
    return [...this.byName.values()];
  }

  peer(name: string): PeerConfig | undefined {
    return this.byName.get(name);
  }

  /** The peer a signed request claims to come from, by its identity; undefined if unknown. */
  peerByIdentity(identity: string): PeerConfig | undefined {
    return this.byIdentity.get(identity);
  }

  /** The peer and its client together, or undefined for a name not configured. */
  reach(name: string): { peer: PeerConfig; client: PeerClient } | undefined {
    const peer = this.byName.get(name);
    const client = this.clients.get(name);
    return peer && client ? { peer, client } : undefined;
  }

  state(name: string): PeerState {
    return { ...(this.states.get(name) ?? { up: null, lastContactAt: null, lastError: null }) };
  }

  /** The peer answered (`error`: with a refusal, so it is up but unhappy). */
  contact(name: string, error: string | null): void {
    const state = this.states.get(name);
    if (!state) return;
    const wasUp = state.up;
    state.up = true;
    state.lastContactAt = Math.floor(this.now());
    state.lastError = error;
    this.emit('reachability', { peer: name, up: true, wasUp, error });
  }

  /** The peer did not answer. */
  lost(name: string, error: string): void {
    const state = this.states.get(name);
    if (!state) return;
    const wasUp = state.up;
    state.up = false;
    state.lastError = error;
    this.emit('reachability', { peer: name, up: false, wasUp, error });
  }
}
