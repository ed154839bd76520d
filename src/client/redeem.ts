import { relayWebSocketUrl } from './relay-url.js';
import type { Agent } from 'node:http';
import { RpcError, RpcErrorCode } from '../protocol/errors.js';
import type { TicketRedeemResult } from '../protocol/messages.js';
import { CircuitClient } from './circuit-client.js';
import type { Wallet } from './wallet.js';

/**
 * Spend one wallet ticket at its relay, or at a relay accepting its tickets (a backup,
 * docs/design.md §7), and record the verdict (docs/design.md §6.3). Unlinkability rests on
 * the circuit: the ticket goes over a connection of its own, never the one that mined it, and
 * through Tor each redemption's agent carries fresh SOCKS credentials, so Tor builds a new circuit for
 * it (stream isolation by SOCKS auth). The wallet follows the relay's verdict: a ticket the
 * relay took, or had already taken, is spent; one it calls expired is expired; anything that
 * leaves the verdict unknown (network failure, issuer busy) keeps it unspent, since a later
 * attempt either succeeds or learns "already spent" (32) and settles it then.
 */

export type Grant = TicketRedeemResult;

export interface RedeemOptions {
  /** Whose ticket to spend: the relay's circuit URL as the wallet stored it (`circuitUrl`). */
  relayUrl: string;
  /**
   * Where to spend it, default the ticket's relay: e.g. a backup the relay lists in its
   * descriptor (`backupRelays`) while the relay is offline (docs/design.md §7). Only on the caller's
   * word, never as an automatic fallback: spending there tells the backup that this user
   * holds tickets of that relay.
   */
  at?: string;
  /** A fresh agent per call (e.g. SOCKS with new credentials); direct connection if absent. */
  agentFactory?: () => Agent;
  /** Unix seconds; read when choosing the ticket and again when recording the outcome. */
  now: () => number;
  /** Ticket ids not to try (already refused in this run). */
  skip?: readonly number[];
  timeoutMs?: number;
  /** A live grant's token: the ticket tops it up (a higher group, docs/design.md §8). */
  grant?: string;
}

export type RedeemOutcome =
  | { kind: 'granted'; ticketId: number; grant: Grant }
  /** No unspent ticket for this relay that is still redeemable today. */
  | { kind: 'none' }
  /** 32: someone (another process of ours, most likely) spent it before; marked spent. */
  | { kind: 'already-spent'; ticketId: number; message: string }
  /** 31: the relay's clock says it expired (or is from a future day); marked expired. */
  | { kind: 'expired'; ticketId: number; message: string }
  /** 33 (or 38, overloaded): the relay is busy; kept unspent. */
  | { kind: 'busy'; ticketId: number; message: string; retryAfter?: number }
  /**
   * 36: the relay redeeming (a backup) does not take tickets of this ticket's relay for now
   * (unpaid bills, or no trust between them): that holds for every one of them, so trying
   * another is pointless; kept unspent.
   */
  | { kind: 'not-accepted'; ticketId: number; message: string }
  /** Any other refusal (30 bad signature, 35 unknown key, …); kept unspent. */
  | { kind: 'refused'; ticketId: number; code: number; message: string }
  /** No verdict: could not connect, or the answer was lost; kept unspent. */
  | { kind: 'unreachable'; ticketId: number; message: string };

export async function redeemFromWallet(
  wallet: Wallet,
  options: RedeemOptions,
): Promise<RedeemOutcome> {
  const entry = wallet.nextUnspent(options.relayUrl, options.now(), options.skip ?? []);
  if (!entry) return { kind: 'none' };
  const ticketId = entry.id;

  const agent = options.agentFactory?.();
  let circuit: CircuitClient | undefined;
  try {
    circuit = await CircuitClient.connect(options.at ?? options.relayUrl, {
      ...(agent ? { agent } : {}),
      ...(options.timeoutMs ? { timeoutMs: options.timeoutMs } : {}),
    });
    const grant = await circuit.request('ticket.redeem', {
      ticket: entry.ticket,
      ...(options.grant === undefined ? {} : { grant: options.grant }),
    });
    wallet.markSpent(ticketId, options.now(), grant.expiresAt);
    return { kind: 'granted', ticketId, grant };
  } catch (err) {
    if (!(err instanceof RpcError)) {
      return { kind: 'unreachable', ticketId, message: messageOf(err) };
    }
    switch (err.code) {
      case RpcErrorCode.ticketSpent:
        wallet.markSpent(ticketId, options.now());
        return { kind: 'already-spent', ticketId, message: err.message };
      case RpcErrorCode.ticketExpired:
        wallet.markExpired(ticketId);
        return { kind: 'expired', ticketId, message: err.message };
      case RpcErrorCode.peerNotTrusted:
        return { kind: 'not-accepted', ticketId, message: err.message };
      case RpcErrorCode.issuerBusy:
      case RpcErrorCode.relayOverloaded: {
        const retryAfter = err.retryAfter;
        return {
          kind: 'busy',
          ticketId,
          message: err.message,
          ...(retryAfter === undefined ? {} : { retryAfter }),
        };
      }
      default:
        return { kind: 'refused', ticketId, code: err.code, message: err.message };
    }
  } finally {
    await circuit?.close();
    agent?.destroy();
  }
}

/**
 * The canonical circuit URL of a relay, the key its tickets are filed under in the wallet:
 * http(s) becomes ws(s), a bare origin gets `/v1/circuit`. The miner stores tickets under
 * this form, so `--relay http://host:port` finds what was mined at `ws://host:port/v1/circuit`.
 */
export function circuitUrl(relay: string): string {
  const url = relayWebSocketUrl(relay);
  if (url.username || url.password || url.search || url.hash) {
    throw new RangeError('relay URL must not carry credentials, a query or a fragment');
  }
  if (url.pathname === '/' || url.pathname === '') url.pathname = '/v1/circuit';
  return `${url.protocol}//${url.host}${url.pathname.replace(/\/+$/, '')}`;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
