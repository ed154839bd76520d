/**
 * The one table of error codes (docs/design.md §5), used by the circuit protocol, the relay's
 * Stratum port (src/stratum/errors.ts takes its share codes from here), the client and the
 * docs: JSON-RPC 2.0's own, Stratum share codes 20–25, ticket and relay codes 30–38. No other
 * module writes an error number.
 */
export const RpcErrorCode = {
  /** The frame is not valid JSON. */
  parseError: -32700,
  /** Not a JSON-RPC request (no id, wrong shape, binary or oversized frame, out of order). */
  invalidRequest: -32600,
  /** No such method (or this relay does not offer it, e.g. no ticket issuer). */
  methodNotFound: -32601,
  /** The params do not match the method's schema. */
  invalidParams: -32602,
  /** A bug or an unexpected failure on the answering side. */
  internalError: -32603,
  /** Other share problem (no work, bad ntime, version bits outside the mask, bad field sizes). */
  shareOther: 20,
  /** Job not found, or stale (cleared, or from an earlier upstream session). */
  jobNotFound: 21,
  /** The same share (extranonce1, extranonce2, ntime, nonce, version bits) came before. */
  duplicateShare: 22,
  /** The share's hash does not meet the difficulty its job was sent with. */
  lowDifficulty: 23,
  /** Unauthorized worker (Stratum: submit before authorize). */
  unauthorized: 24,
  /** Not registered (circuit) or not subscribed (Stratum). */
  notRegistered: 25,
  /** The ticket is malformed or its signature does not verify. */
  badTicketSignature: 30,
  /** The ticket's day is over, or has not begun. */
  ticketExpired: 31,
  /** The ticket was already spent. */
  ticketSpent: 32,
  /** Issuer or redeemer busy, or a backup cannot reach the ticket's relay; `data.retryAfter`. */
  issuerBusy: 33,
  /** Not enough credit for a ticket (or a donation-mode circuit, which earns none). */
  notEnoughCredit: 34,
  /** The ticket's key is not one this relay knows. */
  unknownTicketKey: 35,
  /** A backup refuses the ticket's relay: not a trusted peer, or too much unpaid. */
  peerNotTrusted: 36,
  /** Relay full or not ready (no upstream work, no slot): register refused; `data.retryAfter`. */
  relayFull: 37,
  /**
   * Relay overloaded: an expensive request shed (a redemption over the verification budget, a
   * full ticket or share check queue); `data.retryAfter`.
   */
  relayOverloaded: 38,
} as const;

export type RpcErrorCode = (typeof RpcErrorCode)[keyof typeof RpcErrorCode];

export interface RpcErrorObject {
  code: number;
  message: string;
  data?: unknown;
}

/** An error that maps onto a JSON-RPC error object; thrown by handlers, sent by connectors. */
export class RpcError extends Error {
  override name = 'RpcError';
  constructor(
    readonly code: number,
    message: string,
    readonly data?: unknown,
  ) {
    super(message);
  }

  /** Seconds to wait before retrying (`data.retryAfter` of 33, 37, 38), if the sender gave any. */
  get retryAfter(): number | undefined {
    const data = this.data;
    if (typeof data !== 'object' || data === null || !('retryAfter' in data)) return undefined;
    const { retryAfter } = data;
    return typeof retryAfter === 'number' && Number.isFinite(retryAfter) && retryAfter >= 0
      ? retryAfter
      : undefined;
  }

  toObject(): RpcErrorObject {
    return this.data === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, data: this.data };
  }
}
