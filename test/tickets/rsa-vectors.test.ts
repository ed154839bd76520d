import { describe, expect, it } from 'vitest';
import { rsaPublicKey, RsaVerifier, ticketInfoV2, verify } from '../../src/tickets/rsa-scheme.js';
import { decodeTicketV2, ticketMessageV2, ticketV2Serial } from '../../src/tickets/ticket-v2.js';
import { buildRsaTicketVectors, readVectorsFile } from './rsa-vector-build.js';

const published = readVectorsFile().powbridge;
const h = (s: string) => new Uint8Array(Buffer.from(s, 'hex'));
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

describe('published ticket v2 vectors (test/vectors/tickets-v2.json)', () => {
  it('every step reproduces exactly from the stored key and the seed', async () => {
    expect(await buildRsaTicketVectors(published.key, published.seed, published.day)).toEqual(
      published,
    );
  });

  it('the published ticket decodes and verifies under the published key and day only', async () => {
    const ticket = decodeTicketV2(published.ticket);
    const key = rsaPublicKey(h(published.key.spki));
    expect(hex(ticket.keyId)).toBe(published.key.keyId);
    expect(hex(key.keyId)).toBe(published.key.keyId);
    expect(ticket.day).toBe(published.day);
    expect(hex(ticketV2Serial(ticket))).toBe(published.nonce);
    const msg = ticketMessageV2(ticket.keyId, ticket.day, ticket.nonce);
    expect(hex(msg)).toBe(published.msg);
    const verifier = new RsaVerifier(key);
    expect(verifier.verify(ticket.day, msg, ticket.signature)).toBe(true);
    expect(verifier.verify(ticket.day - 1, msg, ticket.signature)).toBe(false);
    expect(await verify(key.spki, ticketInfoV2(ticket.day), msg, ticket.signature)).toBe(true);
  });
});
