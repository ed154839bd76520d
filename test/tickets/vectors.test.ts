import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { decodeScalar } from '../../src/tickets/group.js';
import { InfoPointCache, verifierKey, verifySignature } from '../../src/tickets/scheme.js';
import { decodeTicket } from '../../src/tickets/ticket.js';
import { buildTicketVectors } from './vector-build.js';

const file = join(dirname(fileURLToPath(import.meta.url)), '..', 'vectors', 'tickets.json');
const published = JSON.parse(readFileSync(file, 'utf8')) as ReturnType<typeof buildTicketVectors>;

describe('published ticket vectors (test/vectors/tickets.json)', () => {
  it('every step reproduces exactly from the seed', () => {
    expect(buildTicketVectors(published.seed, published.day)).toEqual(published);
  });

  it('the published ticket verifies under the published key and day', () => {
    const v = published.issuance;
    const ticket = decodeTicket(v.ticket);
    const key = verifierKey(new Uint8Array(Buffer.from(v.y, 'hex')));
    const { info, z } = new InfoPointCache().get(key.keyId, ticket.day);
    const msg = new Uint8Array(Buffer.from(v.msg, 'hex'));
    expect(verifySignature(key, z, info, msg, ticket.signature)).toBe(true);
    expect(ticket.signature.rho).toBe(decodeScalar(Buffer.from(v.rho, 'hex'), 'rho'));
    expect(Buffer.from(key.keyId).toString('hex')).toBe(v.keyId);
  });
});
