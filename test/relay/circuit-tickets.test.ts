import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { TicketClient } from '../../src/client/ticket-client.js';
import { RpcError, RpcErrorCode } from '../../src/protocol/errors.js';
import { AO_SCHEME, type AoTicketTerms, type JobParams } from '../../src/protocol/messages.js';
import { csprng, encodePoint } from '../../src/tickets/group.js';
import { TicketIssuer } from '../../src/tickets/issuer.js';
import { type Keyring, utcDay } from '../../src/tickets/keyring.js';
import {
  generateSignerKey,
  InfoPointCache,
  ticketMessage,
  verifierKey,
  verifySignature,
} from '../../src/tickets/scheme.js';
import type { TicketService } from '../../src/tickets/service.js';
import { decodeTicket } from '../../src/tickets/ticket.js';
import { startTicketCircuits, type TicketCircuits } from '../helpers/ticket-circuits.js';

const key = generateSignerKey(csprng);
const keyring: Keyring = {
  issuingKey: () => ({ key, notBeforeDay: 0, notAfterDay: 1e9 }),
  acceptedKey: () => undefined,
};
const terms: Pick<AoTicketTerms, 'scheme' | 'keyId' | 'publicKey'> = {
  scheme: AO_SCHEME,
  keyId: Buffer.from(key.keyId).toString('hex'),
  publicKey: Buffer.from(encodePoint(key.y)).toString('hex'),
};

let issuer: TicketIssuer;
let circuits: TicketCircuits;

/** The ticket side of an Abe–Okamoto relay: ticket.open / ticket.finish, no ticket.issue. */
function aoService(price: number): TicketService {
  return {
    terms: () => ({ ...terms, day: utcDay(Date.now() / 1000), price, windowSeconds: 600 }),
    open: (account) => issuer.open(account),
    finish: (account, session, e) => issuer.finish(account, session, e),
    issue: () => Promise.reject(new RpcError(RpcErrorCode.methodNotFound, 'an AO relay')),
    redeem: () => Promise.reject(new RpcError(RpcErrorCode.internalError, 'not in this test')),
    circuitClosed: (account) => issuer.circuitClosed(account),
  };
}

beforeEach(async () => {
  issuer = new TicketIssuer({ keyring, price: 2 });
  circuits = await startTicketCircuits(aoService(2));
});

afterEach(async () => {
  issuer.closeAll();
  await circuits.close();
});

const registered = (mode: 'tickets' | 'donate') => circuits.registered(mode);

describe('tickets over a circuit', () => {
  it('register hands ticket terms to ticket-mode circuits only', async () => {
    const t = await registered('tickets');
    expect(t.session.ticket).toMatchObject({ ...terms, price: 2, windowSeconds: 600 });
    const d = await registered('donate');
    expect(d.session.ticket).toBeNull();
  });

  it('credit from shares buys a ticket that verifies; the price is deducted', async () => {
    const { client, mine } = await registered('tickets');
    await expect(new TicketClient(terms).obtain(client)).rejects.toMatchObject({
      code: RpcErrorCode.notEnoughCredit,
    });
    await mine();
    const second = await mine();
    expect(second.credit).toBeCloseTo(2, 9);
    const issued = await new TicketClient(terms).obtain(client);
    const ticket = decodeTicket(issued.ticket);
    const verifier = verifierKey(encodePoint(key.y));
    const { info, z } = new InfoPointCache().get(key.keyId, ticket.day);
    expect(verifySignature(verifier, z, info, ticketMessage(ticket.xc), ticket.signature)).toBe(
      true,
    );
    expect((await mine()).credit).toBeCloseTo(1, 9);
  });

  it('donation-mode circuits earn no credit and get no tickets', async () => {
    const { client, mine } = await registered('donate');
    expect((await mine()).credit).toBe(0);
    await expect(new TicketClient(terms).obtain(client)).rejects.toMatchObject({
      code: RpcErrorCode.notEnoughCredit,
      message: /donation/,
    });
  });

  it('ticket.finish needs the session of this circuit and a valid scalar', async () => {
    const { client, mine } = await registered('tickets');
    await mine();
    await mine();
    const opened = await client.request('ticket.open', {});
    await expect(
      client.request('ticket.finish', { session: opened.session, e: 'zz' }),
    ).rejects.toMatchObject({
      code: RpcErrorCode.invalidParams,
      message: /e:/,
    });
    const other = await registered('tickets');
    await expect(
      other.client.request('ticket.finish', { session: opened.session, e: '00'.repeat(32) }),
    ).rejects.toMatchObject({ message: /unknown or expired/ });
  });

  it('a client refuses a relay that signs with a key other than the pinned one', async () => {
    const { client, mine } = await registered('tickets');
    await mine();
    await mine();
    const stranger = generateSignerKey(csprng);
    const pinned: typeof terms = {
      scheme: AO_SCHEME,
      keyId: Buffer.from(stranger.keyId).toString('hex'),
      publicKey: Buffer.from(encodePoint(stranger.y)).toString('hex'),
    };
    await expect(new TicketClient(pinned).obtain(client)).rejects.toThrow(/other than the pinned/);
  });

  it('a client refuses a day that is not today', async () => {
    const { client, mine } = await registered('tickets');
    await mine();
    await mine();
    const tomorrow = Date.now() / 1000 + 2 * 86_400;
    await expect(new TicketClient(terms, { now: () => tomorrow }).obtain(client)).rejects.toThrow(
      /not today/,
    );
  });
});

describe('an Abe–Okamoto session costs request budget', () => {
  it('ticket.open takes ticketSessionCost requests; a circuit short of them gets 33', async () => {
    // Burst: 20 requests.
    const tight = await startTicketCircuits(aoService(1), {
      maxRequestsPerSecond: 4,
      ticketSessionCost: 14,
    });
    try {
      const client = await tight.connect();
      const job = new Promise<JobParams>((resolve) => client.once('job', resolve));
      await client.request('mining.register', { agent: 't', mode: 'tickets' }); // 1
      const { jobId, ntime } = await job;
      for (const nonce of ['00000001', '00000002']) {
        await client.request('mining.submit', { jobId, extranonce2: '000000000001', ntime, nonce });
      } // 3
      // Each frame costs one request; ticket.open 14 more: 4 + 14 = 18.
      const opened = await client.request('ticket.open', {});
      await expect(
        client.request('ticket.finish', { session: opened.session, e: 'zz' }),
      ).rejects.toMatchObject({ code: RpcErrorCode.invalidParams }); // 19, and the session is gone
      // 20: the frame still fits, the session's 14 do not.
      await expect(client.request('ticket.open', {})).rejects.toMatchObject({
        code: RpcErrorCode.issuerBusy,
        data: { retryAfter: 4 },
      });
    } finally {
      await tight.close();
    }
  });
});
