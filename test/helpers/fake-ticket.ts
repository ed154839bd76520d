import { randomBytes } from 'node:crypto';
import type { IssuedTicket } from '../../src/client/ticket-client.js';
import { encodeTicket } from '../../src/tickets/ticket.js';

/**
 * A well-formed but unsigned ticket, for wallet tests that never show it to a relay: the
 * wallet checks the encoding, not the signature, and a real issuance costs hash-to-curve.
 */
export function fakeIssued(day: number, keyIdHex = '0102030405060708'): IssuedTicket {
  // 31 random bytes keep every scalar below the group order, as decodeTicket requires.
  const scalar = () => BigInt(`0x${randomBytes(31).toString('hex')}`);
  const ticket = encodeTicket({
    keyId: new Uint8Array(Buffer.from(keyIdHex, 'hex')),
    day,
    xc: new Uint8Array(randomBytes(32)),
    signature: { rho: scalar(), omega: scalar(), sigma: scalar(), delta: scalar() },
  });
  return { ticket, keyId: keyIdHex, day };
}
