import { TicketFormatError } from './group.js';
import { KEY_ID_BYTES, MODULUS_BYTES } from './rsa-scheme.js';

/**
 * A v2 priority ticket (docs/design.md §6.5): 301 bytes, sent as base64url without padding.
 * version 0x02 ‖ keyId (8) ‖ day (uint32 BE) ‖ nonce (32) ‖ signature (256). The signed message
 * is the first 45 bytes (version ‖ keyId ‖ day ‖ nonce); the serial is the nonce.
 */

export const TICKET_V2_VERSION = 2;
export const NONCE_BYTES = 32;
export const MESSAGE_V2_BYTES = 1 + KEY_ID_BYTES + 4 + NONCE_BYTES;
export const TICKET_V2_BYTES = MESSAGE_V2_BYTES + MODULUS_BYTES;
const B64URL_RE = /^[A-Za-z0-9_-]+$/;

export interface TicketV2 {
  keyId: Uint8Array;
  day: number;
  nonce: Uint8Array;
  signature: Uint8Array;
}

function checkFields(keyId: Uint8Array, day: number, nonce: Uint8Array): void {
  if (keyId.length !== KEY_ID_BYTES) throw new TicketFormatError('ticket: keyId must be 8 bytes');
  if (!Number.isInteger(day) || day < 0 || day > 0xffffffff) {
    throw new TicketFormatError('ticket: day must be a uint32');
  }
  if (nonce.length !== NONCE_BYTES) throw new TicketFormatError('ticket: nonce must be 32 bytes');
}

/** The message the relay blind-signs: version ‖ keyId ‖ day ‖ nonce. */
export function ticketMessageV2(keyId: Uint8Array, day: number, nonce: Uint8Array): Uint8Array {
  checkFields(keyId, day, nonce);
  const out = new Uint8Array(MESSAGE_V2_BYTES);
  out[0] = TICKET_V2_VERSION;
  out.set(keyId, 1);
  new DataView(out.buffer).setUint32(1 + KEY_ID_BYTES, day, false);
  out.set(nonce, 1 + KEY_ID_BYTES + 4);
  return out;
}

export function encodeTicketV2(ticket: TicketV2): string {
  if (ticket.signature.length !== MODULUS_BYTES) {
    throw new TicketFormatError(`ticket: signature must be ${MODULUS_BYTES} bytes`);
  }
  const out = new Uint8Array(TICKET_V2_BYTES);
  out.set(ticketMessageV2(ticket.keyId, ticket.day, ticket.nonce));
  out.set(ticket.signature, MESSAGE_V2_BYTES);
  return Buffer.from(out).toString('base64url');
}

/** Strict: exact length, version 2, canonical base64url. The signature is checked elsewhere. */
export function decodeTicketV2(text: unknown): TicketV2 {
  if (typeof text !== 'string' || text.length === 0 || text.length > 512) {
    throw new TicketFormatError('ticket: expected a base64url string');
  }
  if (!B64URL_RE.test(text)) throw new TicketFormatError('ticket: not base64url (no padding)');
  const bytes = new Uint8Array(Buffer.from(text, 'base64url'));
  // Round-trip check rejects non-canonical encodings (stray bits in the last character).
  if (bytes.length !== TICKET_V2_BYTES || Buffer.from(bytes).toString('base64url') !== text) {
    throw new TicketFormatError(`ticket: expected ${TICKET_V2_BYTES} bytes`);
  }
  if (bytes[0] !== TICKET_V2_VERSION) throw new TicketFormatError('ticket: unknown version');
  return {
    keyId: bytes.slice(1, 1 + KEY_ID_BYTES),
    day: new DataView(bytes.buffer).getUint32(1 + KEY_ID_BYTES, false),
    nonce: bytes.slice(1 + KEY_ID_BYTES + 4, MESSAGE_V2_BYTES),
    signature: bytes.slice(MESSAGE_V2_BYTES),
  };
}

/** The serial the spent store keys on (§6.5: serial = nonce; 32 bytes like a v1 serial). */
export function ticketV2Serial(ticket: TicketV2): Uint8Array {
  return ticket.nonce.slice();
}
