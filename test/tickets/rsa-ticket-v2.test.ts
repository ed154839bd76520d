import { describe, expect, it } from 'vitest';
import { TicketFormatError } from '../../src/tickets/group.js';
import {
  decodeTicketV2,
  encodeTicketV2,
  TICKET_V2_BYTES,
  ticketMessageV2,
  type TicketV2,
} from '../../src/tickets/ticket-v2.js';

const ticket: TicketV2 = {
  keyId: new Uint8Array(8).fill(0xab),
  day: 0x01020304,
  nonce: new Uint8Array(32).fill(0x11),
  signature: new Uint8Array(256).fill(0x22),
};

describe('ticket v2 codec', () => {
  it('round-trips: 301 bytes, base64url without padding, layout as in §6.5', () => {
    const text = encodeTicketV2(ticket);
    expect(text).toMatch(/^[A-Za-z0-9_-]+$/);
    const bytes = Buffer.from(text, 'base64url');
    expect(bytes).toHaveLength(TICKET_V2_BYTES);
    expect(bytes.subarray(0, 13).toString('hex')).toBe('02abababababababab01020304');
    expect(decodeTicketV2(text)).toEqual(ticket);
    expect(Buffer.from(ticketMessageV2(ticket.keyId, ticket.day, ticket.nonce))).toEqual(
      bytes.subarray(0, 45),
    );
  });

  it('refuses a wrong version, length, padding or a non-canonical encoding', () => {
    const bytes = Buffer.from(encodeTicketV2(ticket), 'base64url');
    const v1 = Buffer.from(bytes);
    v1[0] = 1;
    expect(() => decodeTicketV2(v1.toString('base64url'))).toThrow(/version/);
    expect(() => decodeTicketV2(bytes.subarray(1).toString('base64url'))).toThrow(
      TicketFormatError,
    );
    expect(() => decodeTicketV2(`${bytes.toString('base64url')}AA`)).toThrow(TicketFormatError);
    expect(() => decodeTicketV2(bytes.toString('base64'))).toThrow(TicketFormatError);
    // 301 bytes leave 4 unused bits in the last character: setting one must be refused.
    const text = bytes.toString('base64url');
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const last = alphabet.indexOf(text.slice(-1));
    const stray = alphabet.charAt(last ^ 1);
    expect(() => decodeTicketV2(`${text.slice(0, -1)}${stray}`)).toThrow(TicketFormatError);
    expect(() => decodeTicketV2(42)).toThrow(TicketFormatError);
  });

  it('refuses fields of the wrong size when encoding', () => {
    expect(() => encodeTicketV2({ ...ticket, keyId: new Uint8Array(7) })).toThrow(
      TicketFormatError,
    );
    expect(() => encodeTicketV2({ ...ticket, nonce: new Uint8Array(31) })).toThrow(
      TicketFormatError,
    );
    expect(() => encodeTicketV2({ ...ticket, signature: new Uint8Array(255) })).toThrow(
      TicketFormatError,
    );
    expect(() => encodeTicketV2({ ...ticket, day: 2 ** 32 })).toThrow(TicketFormatError);
  });
});
