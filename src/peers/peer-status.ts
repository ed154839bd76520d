import { z } from 'zod';

/**
 * One backup relay as the `peers` section of /v1/status shows it (Peering.status()). The type
 * is inferred from the schema, and tests parse the served section with it, so the two
 * cannot drift apart.
 */

const count = z.number().int().min(0);

/** What the ledger knows about a peer's account with us (PeerLedger.balance()). */
export const peerBalanceSchema = z.strictObject({
  /** Tickets of the peer we served here: billed, not yet billed, and billed but unpaid. */
  served: count,
  unbilled: count,
  billed: count,
  settledToUs: count,
  /** Billed tickets the peer has not settled: what `maxUnpaid` limits. */
  unpaidToUs: count,
  /** Our tickets the peer served and billed us for, what we settled, and the difference. */
  billedToUs: count,
  settledByUs: count,
  weOwe: count,
  /** Serials accepted here while the peer was offline that it has not pulled yet. */
  owedSync: count,
  pendingRequests: count,
  pendingSettlements: count,
  conflicts: count,
  /** Replication cursors: how far we pulled its spent log, and how far it acked ours. */
  pulled: count,
  acked: count,
});

export const peerStatusSchema = z.strictObject({
  name: z.string(),
  url: z.string(),
  identity: z.string(),
  acceptTickets: z.boolean(),
  /** Whether the last exchange worked; null until the first one. */
  up: z.boolean().nullable(),
  /** Unix seconds of the last exchange that worked. */
  lastContactAt: z.number().nullable(),
  lastError: z.string().nullable(),
  /** Ticket keys known from its verified descriptor. */
  keys: z.array(z.string()),
  balance: peerBalanceSchema,
});

export type PeerBalance = z.output<typeof peerBalanceSchema>;
export type PeerStatus = z.output<typeof peerStatusSchema>;
