import { z } from 'zod';
import { RpcErrorCode } from '../protocol/errors.js';

/**
 * One backup relay as the `peers` section of /v1/status shows it (Peering.status()). The type
 * is inferred from the schema, and tests parse the served section with it, so the two
 * cannot drift apart.
 */

const count = z.number().int().min(0);

/** What the ledger knows about a peer's account with us (PeerLedger.balance()). */
export const peerBalanceSchema = z.strictObject({
  /**
   * Tickets of the peer we served here; of them billed and not yet billed (a ticket it
   * redeemed too is neither, see conflictsNotBilled); billed and unpaid.
   */
  served: count,
  unbilled: count,
  billed: count,
  settledToUs: count,
  /** Billed tickets the peer has not settled: what `maxUnpaid` limits. */
  unpaidToUs: count,
  /**
   * Our tickets the peer served and billed us for (less conflictsNotOwed), what we settled,
   * and the difference.
   */
  billedToUs: count,
  settledByUs: count,
  weOwe: count,
  /** Serials accepted here while the peer was offline that it has not pulled yet. */
  owedSync: count,
  pendingRequests: count,
  pendingSettlements: count,
  /** Serials spent both here and at the peer (double spends across a partition). */
  conflicts: count,
  /** Of its tickets we served, those it redeemed too: taken out of our bills. */
  conflictsNotBilled: count,
  /** Of the serials it billed us for, those we redeemed too: not owed. */
  conflictsNotOwed: count,
  /** Replication cursors: how far we pulled its spent log, and how far it acked ours. */
  pulled: count,
  acked: count,
});

/**
 * Why this relay refuses a peer's tickets, with the error a client gets (docs/design.md §7).
 * The first four refuse every ticket of the peer while they hold; `spent` and `unknownKey`
 * refuse one ticket.
 */
export const PEER_TICKET_REFUSALS = {
  /** `acceptTickets = false` in its [[peers]] entry: its keys are not ours to know (35). */
  notAccepted: RpcErrorCode.unknownTicketKey,
  /** Its billed tickets unpaid reached `maxUnpaid` (36). */
  unpaidLimit: RpcErrorCode.peerNotTrusted,
  /** It refused our reservation (it does not take our signature, or refuses us) (36). */
  peerRefused: RpcErrorCode.peerNotTrusted,
  /** Unreachable, and `acceptWhenOffline = false` (33). */
  offline: RpcErrorCode.issuerBusy,
  /** Spent already, here or at the peer (32). */
  spent: RpcErrorCode.ticketSpent,
  /** The peer says the key is not one of its own (35). */
  unknownKey: RpcErrorCode.unknownTicketKey,
} as const;
export type PeerTicketRefusal = keyof typeof PEER_TICKET_REFUSALS;
export const PEER_TICKET_REFUSAL_REASONS = [
  'notAccepted',
  'unpaidLimit',
  'peerRefused',
  'offline',
  'spent',
  'unknownKey',
] as const satisfies readonly PeerTicketRefusal[];

/** The refusals that hold for every ticket of the peer: its state while one applies. */
export const REFUSING_REASONS = ['notAccepted', 'unpaidLimit', 'offline', 'peerRefused'] as const;
export type RefusingReason = (typeof REFUSING_REASONS)[number];

export const peerStatusSchema = z.strictObject({
  name: z.string(),
  url: z.string(),
  identity: z.string(),
  /** Whether its tickets are accepted here right now (false while `refusing`). */
  acceptTickets: z.boolean(),
  /** Why every ticket of it is refused now, and the error code clients get; null if none. */
  refusing: z.strictObject({ reason: z.enum(REFUSING_REASONS), code: z.number().int() }).nullable(),
  /** Its tickets refused here since the relay started, by reason. */
  refused: z.strictObject({
    notAccepted: count,
    unpaidLimit: count,
    peerRefused: count,
    offline: count,
    spent: count,
    unknownKey: count,
  } satisfies Record<PeerTicketRefusal, z.ZodType>),
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
