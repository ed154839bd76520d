import { TicketFormatError } from './group.js';
import { decodeTicket, type Ticket, TICKET_VERSION } from './ticket.js';
import { decodeTicketV2, TICKET_V2_VERSION, type TicketV2 } from './ticket-v2.js';

/**
 * A ticket of either version, told apart by its version byte (docs/design.md §5): v1
 * (Abe–Okamoto, 173 bytes) or v2 (partially blind RSA, 301 bytes). Each decoder is strict
 * about the rest.
 */
export type AnyTicket = { keyId: Uint8Array; day: number } & (
  | { version: typeof TICKET_VERSION; v1: Ticket }
  | { version: typeof TICKET_V2_VERSION; v2: TicketV2 }
);

export function decodeAnyTicket(text: unknown): AnyTicket {
  if (typeof text !== 'string') throw new TicketFormatError('ticket: expected a base64url string');
  // The first two base64url characters carry the version byte.
  switch (Buffer.from(text.slice(0, 2), 'base64url')[0]) {
    case TICKET_VERSION: {
      const v1 = decodeTicket(text);
      return { version: TICKET_VERSION, keyId: v1.keyId, day: v1.day, v1 };
    }
    case TICKET_V2_VERSION: {
      const v2 = decodeTicketV2(text);
      return { version: TICKET_V2_VERSION, keyId: v2.keyId, day: v2.day, v2 };
    }
    default:
      throw new TicketFormatError('ticket: unknown version');
  }
}
