import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RpcError, RpcErrorCode } from '../../src/protocol/errors.js';
import { RSA_SCHEME } from '../../src/protocol/messages.js';
import { inlineBlindSigner } from '../../src/tickets/blind-signer.js';
import { utcDay } from '../../src/tickets/keyring.js';
import { RsaIssuer } from '../../src/tickets/rsa-issuer.js';
import { blind, finalize, ticketInfoV2, verify } from '../../src/tickets/rsa-scheme.js';
import { ticketMessageV2 } from '../../src/tickets/ticket-v2.js';
import { rsaKeyring, vectorRsaKeys } from '../helpers/ticket-v2.js';
import { startTicketCircuits, type TicketCircuits } from '../helpers/ticket-circuits.js';

/** `ticket.issue` over a real circuit (docs/design.md §5, §6.5): one request per ticket. */

const { ours: key } = vectorRsaKeys();
const keyId = Buffer.from(key.keyId).toString('hex');
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

let issuer: RsaIssuer;
let circuits: TicketCircuits;

beforeEach(async () => {
  issuer = new RsaIssuer({ keyring: rsaKeyring(key), signer: inlineBlindSigner(), price: 2 });
  const notAo = () => new RpcError(RpcErrorCode.methodNotFound, 'this relay issues RSA tickets');
  circuits = await startTicketCircuits({
    terms: () => ({
      scheme: RSA_SCHEME,
      keyId,
      publicKey: hex(key.spki),
      day: utcDay(Date.now() / 1000),
      price: 2,
      windowSeconds: 600,
    }),
    open: () => Promise.reject(notAo()),
    finish: () => {
      throw notAo();
    },
    issue: (account, params) => issuer.issue(account, params),
    redeem: () => Promise.reject(new RpcError(RpcErrorCode.internalError, 'not in this test')),
    circuitClosed: () => undefined,
  });
});

afterEach(() => circuits.close());

const registered = (mode: 'tickets' | 'donate') => circuits.registered(mode);

async function blinded(day: number) {
  const info = ticketInfoV2(day);
  const msg = ticketMessageV2(key.keyId, day, new Uint8Array(randomBytes(32)));
  return { info, msg, ...(await blind(key.spki, info, msg)) };
}

describe('ticket.issue over a circuit', () => {
  it('register hands out the RSA terms; one request turns credit into a verified ticket', async () => {
    const { client, session, mine } = await registered('tickets');
    expect(session.ticket).toMatchObject({ scheme: RSA_SCHEME, keyId, publicKey: hex(key.spki) });
    const day = session.ticket?.day ?? 0;
    const b = await blinded(day);
    const params = { keyId, day, blindedMsg: hex(b.blindedMsg) };
    await expect(client.request('ticket.issue', params)).rejects.toMatchObject({
      code: RpcErrorCode.notEnoughCredit,
    });
    await mine();
    expect((await mine()).credit).toBeCloseTo(2, 9);
    const { blindSig } = await client.request('ticket.issue', params);
    const sig = await finalize(key.spki, b.info, b.msg, Buffer.from(blindSig, 'hex'), b.inv);
    expect(await verify(key.spki, b.info, b.msg, sig)).toBe(true);
    expect((await mine()).credit).toBeCloseTo(1, 9);
  });

  it('bad params are refused by the schema with the field named', async () => {
    const { client } = await registered('tickets');
    const day = utcDay(Date.now() / 1000);
    const good = { keyId, day, blindedMsg: '00'.repeat(256) };
    for (const [bad, field] of [
      [{ ...good, blindedMsg: '00'.repeat(255) }, /blindedMsg/],
      [{ ...good, blindedMsg: 'zz'.repeat(256) }, /blindedMsg/],
      [{ ...good, keyId: '00' }, /keyId/],
      [{ ...good, day: -1 }, /day/],
      [{ ...good, extra: 1 }, /extra|unrecognized/i],
    ] as const) {
      await expect(client.request('ticket.issue', bad as never)).rejects.toMatchObject({
        code: RpcErrorCode.invalidParams,
        message: field,
      });
    }
  });

  it('ticket.issue needs a registered ticket-mode circuit', async () => {
    const unregistered = await circuits.connect();
    const day = utcDay(Date.now() / 1000);
    const params = { keyId, day, blindedMsg: hex((await blinded(day)).blindedMsg) };
    await expect(unregistered.request('ticket.issue', params)).rejects.toMatchObject({
      code: RpcErrorCode.notRegistered,
    });
    const donor = await registered('donate');
    await expect(donor.client.request('ticket.issue', params)).rejects.toMatchObject({
      code: RpcErrorCode.notEnoughCredit,
      message: /donation/,
    });
  });

  it('an RSA relay answers the Abe–Okamoto methods with a pointer to ticket.issue', async () => {
    const { client } = await registered('tickets');
    await expect(client.request('ticket.open', {})).rejects.toMatchObject({
      code: RpcErrorCode.methodNotFound,
      message: /RSA/,
    });
  });

  it('many requests in flight on one circuit spend its credit once each', async () => {
    const { client, session, mine } = await registered('tickets');
    for (let i = 0; i < 4; i++) await mine(); // credit 4: two tickets
    const day = session.ticket?.day ?? 0;
    const requests = await Promise.all(Array.from({ length: 6 }, () => blinded(day)));
    const results = await Promise.allSettled(
      requests.map((b) =>
        client.request('ticket.issue', { keyId, day, blindedMsg: hex(b.blindedMsg) }),
      ),
    );
    const codes = results.map((r) =>
      r.status === 'fulfilled' ? 'ok' : (r.reason as RpcError).code,
    );
    expect(codes.filter((c) => c === 'ok')).toHaveLength(2);
    expect(codes.filter((c) => c === RpcErrorCode.notEnoughCredit)).toHaveLength(4);
    expect((await mine()).credit).toBeCloseTo(1, 9);
  });
});
