/**
 * Error codes of the circuit protocol (DESIGN §5): JSON-RPC 2.0's own, Stratum-style share
 * codes 20–25, ticket codes 30–36.
 */
export const RpcErrorCode = {
  parseError: -32700,
  invalidRequest: -32600,
  methodNotFound: -32601,
  invalidParams: -32602,
  internalError: -32603,
  /** Other share problem (no work, bad ntime, version bits outside the mask, bad field sizes). */
  shareOther: 20,
  jobNotFound: 21,
  duplicateShare: 22,
  lowDifficulty: 23,
  unauthorized: 24,
  notRegistered: 25,
  badTicketSignature: 30,
  ticketExpired: 31,
  ticketSpent: 32,
  issuerBusy: 33,
  notEnoughCredit: 34,
  unknownTicketKey: 35,
  peerNotTrusted: 36,
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

  toObject(): RpcErrorObject {
    return this.data === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, data: this.data };
  }
}
