import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CircuitClient } from '../../src/client/circuit-client.js';
import { TicketClient } from '../../src/client/ticket-client.js';
import { RpcError, RpcErrorCode } from '../../src/protocol/errors.js';
import { AO_SCHEME, type AoTicketTerms, type JobParams } from '../../src/protocol/messages.js';
import { CircuitConnector } from '../../src/relay/circuit-connector.js';
import type { Stratifier } from '../../src/relay/stratifier.js';
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
import { ManualSource } from '../helpers/manual-source.js';
import { startTestStratifier } from '../helpers/test-stratifier.js';

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

let server: Server;
let source: ManualSource;
let stratifier: Stratifier;
let issuer: TicketIssuer;
let connector: CircuitConnector;
let url: string;
const clients: CircuitClient[] = [];

beforeEach(async () => {
  source = new ManualSource('sha256d');
  stratifier = await startTestStratifier(source);
  issuer = new TicketIssuer({ keyring, price: 2 });
  const tickets: TicketService = {
    terms: () => ({ ...terms, day: utcDay(Date.now() / 1000), price: 2, windowSeconds: 600 }),
    open: (account) => issuer.open(account),
    finish: (account, session, e) => issuer.finish(account, session, e),
    issue: () => Promise.reject(new RpcError(RpcErrorCode.methodNotFound, 'an AO relay')),
    redeem: () => Promise.reject(new RpcError(RpcErrorCode.internalError, 'not in this test')),
    circuitClosed: (account) => issuer.circuitClosed(account),
  };
  connector = new CircuitConnector(stratifier, { tickets });
  server = createServer();
  connector.attach(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}/v1/circuit`;
  source.goLive({ difficulty: 1e12 });
});

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  issuer.closeAll();
  connector.close();
  stratifier.stop();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

async function registered(mode: 'tickets' | 'donate') {
  const client = await CircuitClient.connect(url);
  clients.push(client);
  const jobPromise = new Promise<JobParams>((resolve) => client.once('job', resolve));
  const session = await client.request('mining.register', { agent: 't', mode });
  const job = await jobPromise;
  let nonce = 0;
  const mine = async () =>
    client.request('mining.submit', {
      jobId: job.jobId,
      extranonce2: '000000000001',
      ntime: job.ntime,
      nonce: (nonce++).toString(16).padStart(8, '0'),
    });
  return { client, session, mine };
}

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
    const tight = new CircuitConnector(stratifier, {
      limits: { maxRequestsPerSecond: 4, ticketSessionCost: 14 }, // burst: 20 requests
      tickets: {
        terms: () => ({ ...terms, day: utcDay(Date.now() / 1000), price: 1, windowSeconds: 600 }),
        open: (account) => issuer.open(account),
        finish: (account, session, e) => issuer.finish(account, session, e),
        issue: () => Promise.reject(new RpcError(RpcErrorCode.methodNotFound, 'an AO relay')),
        redeem: () => Promise.reject(new RpcError(RpcErrorCode.internalError, 'not here')),
        circuitClosed: (account) => issuer.circuitClosed(account),
      },
    });
    const tightServer = createServer();
    tight.attach(tightServer);
    await new Promise<void>((resolve) => tightServer.listen(0, '127.0.0.1', resolve));
    try {
      const port = (tightServer.address() as AddressInfo).port;
      const client = await CircuitClient.connect(`ws://127.0.0.1:${port}/v1/circuit`);
      clients.push(client);
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
      tight.close();
      await new Promise<void>((resolve) => tightServer.close(() => resolve()));
    }
  });
});
