/**
 * The WebSocket close codes powbridge sends and reads (RFC 6455 §7.4.1), in one table so the
 * circuit, the tunnel and the client agree on what each number means. The reason text says
 * which case of a code it was ("idle timeout", "connection refused", …).
 */
export const WsCloseCode = {
  /** Done: the tunnel's destination ended, or the client said goodbye. */
  normal: 1000,
  /** The relay is shutting down, or a tunnel sat idle too long. */
  goingAway: 1001,
  /** A frame of a type the endpoint does not take (text on the binary-only tunnel). */
  unsupportedData: 1003,
  /** Never sent: what ws reports when the peer closed without a code; read as a normal close. */
  noStatus: 1005,
  /** Refused: exit policy, request rate, no registration in time, too many invalid frames. */
  policyViolation: 1008,
  /** A frame over the size cap; ws sends it by itself (maxPayload). */
  messageTooBig: 1009,
  /** The relay could not carry it out: the destination refused or is unreachable, the shaper failed. */
  internalError: 1011,
  /** The relay dropped the session (upstream change, no extranonce slot left); reconnecting may work. */
  tryAgainLater: 1013,
} as const;

export type WsCloseCode = (typeof WsCloseCode)[keyof typeof WsCloseCode];
