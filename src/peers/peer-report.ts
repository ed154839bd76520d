import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { PeerConfig } from './peer-config.js';
import type { PeerLedger } from '../storage/peer-ledger.js';
import { PEER_LEDGER_FILE, SqlitePeerLedger } from './peer-ledger.js';
import type { PeerBalance } from './peer-status.js';
import { refusesTicketsOf } from './ticket-gate.js';

/**
 * What the operator's `powbridge peers` commands read: each configured peer with its balance
 * from the relay's peer ledger. The ledger is SQLite in WAL mode, or a family's PostgreSQL
 * database, so this works whether the relay runs or not.
 */

const SHORT_HEX = 16;
const SHOWN_CONFLICTS = 5;

export interface PeerReport {
  name: string;
  url: string;
  identity: string;
  acceptTickets: boolean;
  acceptWhenOffline: boolean;
  paymentEvery: number;
  maxUnpaid: number;
  /** Its billed tickets unpaid reached maxUnpaid: the relay answers its tickets with 36. */
  refusingTickets: boolean;
  balance: PeerBalance;
  /** PAYMENT_REQUESTs it sent us, oldest first. */
  requestsIn: {
    id: string;
    count: number;
    digest: string;
    period: { from: number; to: number };
    receivedAt: number;
  }[];
  /** Serials spent both here and there: how many, and the first few as hex prefixes. */
  conflicts: { count: number; serials: string[] };
}

/** The balance of a peer nothing has happened with yet. */
export const NO_ACTIVITY: PeerBalance = {
  served: 0,
  unbilled: 0,
  billed: 0,
  settledToUs: 0,
  unpaidToUs: 0,
  billedToUs: 0,
  settledByUs: 0,
  weOwe: 0,
  owedSync: 0,
  pendingRequests: 0,
  pendingSettlements: 0,
  conflicts: 0,
  conflictsNotBilled: 0,
  conflictsNotOwed: 0,
  pulled: 0,
  acked: 0,
};

/** The peer ledger's path in a relay's data directory. */
export function peerLedgerPath(dataDir: string): string {
  return join(dataDir, PEER_LEDGER_FILE);
}

/**
 * The SQLite ledger at `path`, or null when it does not exist yet. Opening creates the file
 * (and `SqlitePeerLedger.open` would fail without the data dir), so a missing ledger is never
 * opened here: a typo in --config or an operator running this as another user must not leave
 * an empty ledger, or a file the relay cannot open, in the relay's data dir. It only exists
 * once the relay has started with peers, so missing means no peer activity yet.
 */
export function openLedgerFile(path: string): Promise<PeerLedger | null> {
  return Promise.resolve(existsSync(path) ? SqlitePeerLedger.open(path) : null);
}

/** Run `use` with the ledger `open` finds (null: none yet), and close it after. */
export async function withPeerLedger<T>(
  open: () => Promise<PeerLedger | null>,
  use: (ledger: PeerLedger | null) => Promise<T>,
): Promise<T> {
  const ledger = await open();
  try {
    return await use(ledger);
  } finally {
    await ledger?.close();
  }
}

/** A configured peer by name, or an error that lists the configured ones. */
export function findPeer(
  peers: readonly PeerConfig[],
  name: string,
  configFile: string,
): PeerConfig {
  const peer = peers.find((p) => p.name === name);
  if (peer) return peer;
  const names = peers.map((p) => p.name);
  throw new Error(
    names.length === 0
      ? `unknown peer "${name}": ${configFile} configures no peers ([[peers]])`
      : `unknown peer "${name}"; peers in ${configFile}: ${names.join(', ')}`,
  );
}

export async function peerReport(peer: PeerConfig, ledger: PeerLedger | null): Promise<PeerReport> {
  const balance = (await ledger?.balance(peer.name)) ?? NO_ACTIVITY;
  const conflicts = (await ledger?.conflicts(peer.name)) ?? [];
  return {
    name: peer.name,
    url: peer.url,
    identity: peer.identity,
    acceptTickets: peer.acceptTickets,
    acceptWhenOffline: peer.acceptWhenOffline,
    paymentEvery: peer.paymentEvery,
    maxUnpaid: peer.maxUnpaid,
    refusingTickets: refusesTicketsOf(peer, balance.unpaidToUs),
    balance,
    requestsIn: (await ledger?.listRequestsIn(peer.name)) ?? [],
    conflicts: {
      count: conflicts.length,
      serials: conflicts
        .slice(0, SHOWN_CONFLICTS)
        .map((c) => Buffer.from(c.serial).toString('hex').slice(0, SHORT_HEX)),
    },
  };
}
