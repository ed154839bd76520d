import { decodeScalar, encodeScalar, TicketFormatError } from './group.js';
import type { Signature } from './scheme.js';

/**
 * A priority ticket (docs/design.md §5): 173 bytes, sent as base64url without padding.
 * version 0x01 ‖ keyId (8) ‖ day (uint32 BE) ‖ x_c (32) ‖ ρ ‖ ω ‖ σ ‖ δ (32 each, LE scalars).
 */

export const TICKET_VERSION = 1;
export const TICKET_BYTES = 173;
const B64URL_RE = /^[A-Za-z0-9_-]+$/;

export interface Ticket {
  keyId: Uint8Array;
  day: number;
  xc: Uint8Array;
  signature: Signature;
}

export function encodeTicket(ticket: Ticket): string {
  const out = new Uint8Array(TICKET_BYTES);
  out[0] = TICKET_VERSION;
  out.set(ticket.keyId, 1);
  new DataView(out.buffer).setUint32(9, ticket.day, false);
  out.set(ticket.xc, 13);
  const { rho, omega, sigma, delta } = ticket.signature;
  [rho, omega, sigma, delta].forEach((scalar, i) => out.set(encodeScalar(scalar), 45 + 32 * i));
  return Buffer.from(out).toString('base64url');
}

/** Strict: exact length, known version, canonical base64url, every scalar < q. */
export function decodeTicket(text: unknown): Ticket {
  if (typeof text !== 'string' || text.length === 0 || text.length > 256) {
    throw new TicketFormatError('ticket: expected a base64url string');
  }
  if (!B64URL_RE.test(text)) throw new TicketFormatError('ticket: not base64url (no padding)');
  const bytes = new Uint8Array(Buffer.from(text, 'base64url'));
  // Round-trip check rejects non-canonical encodings (stray bits in the last character).
  if (bytes.length !== TICKET_BYTES || Buffer.from(bytes).toString('base64url') !== text) {
    throw new TicketFormatError(`ticket: expected ${TICKET_BYTES} bytes`);
  }
  if (bytes[0] !== TICKET_VERSION) throw new TicketFormatError('ticket: unknown version');
  const scalar = (i: number, name: string) =>
    decodeScalar(bytes.slice(45 + 32 * i, 77 + 32 * i), `ticket ${name}`);
  return {
    keyId: bytes.slice(1, 9),
    day: new DataView(bytes.buffer).getUint32(9, false),
    xc: bytes.slice(13, 45),
    signature: {
      rho: scalar(0, 'rho'),
      omega: scalar(1, 'omega'),
      sigma: scalar(2, 'sigma'),
      delta: scalar(3, 'delta'),
    },
  };
}
