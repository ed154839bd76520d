import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { RpcErrorCode } from '../../src/protocol/errors.js';
import { BlindSignerBusy, inlineBlindSigner } from '../../src/tickets/blind-signer.js';
import type { CreditAccount } from '../../src/tickets/issuer.js';
import { RsaIssuer } from '../../src/tickets/rsa-issuer.js';
import {
  bigIntToBytes,
  blind,
  finalize,
  SigningFailure,
  ticketInfoV2,
  verify,
} from '../../src/tickets/rsa-scheme.js';
import { ticketMessageV2 } from '../../src/tickets/ticket-v2.js';
import { rsaKeyring, vectorRsaKeys } from '../helpers/ticket-v2.js';

/**
 * The relay's side of `ticket.issue` (docs/design.md §6.5): one request per ticket, credit taken
 * before the signature is made and given back only when nothing was signed.
 */

const DAY = 20_428;
const NOW = DAY * 86_400 + 3_600;
const { ours: key, draft: otherKey } = vectorRsaKeys();
const keyId = Buffer.from(key.keyId).toString('hex');
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const randomBlock = () => hex(bigIntToBytes(BigInt(`0x${hex(randomBytes(255))}`), 256));

function account(credit: number, mode: CreditAccount['mode'] = 'tickets'): CreditAccount {
  return { id: Math.floor(Math.random() * 1e9), mode, credit };
}

function issuer(options: Partial<ConstructorParameters<typeof RsaIssuer>[0]> = {}): RsaIssuer {
  return new RsaIssuer({
    keyring: rsaKeyring(key),
    signer: inlineBlindSigner(),
    price: 4,
    now: () => NOW,
    ...options,
  });
}

async function refusal(p: Promise<unknown>): Promise<{ code: number; message: string }> {
  try {
    await p;
  } catch (err) {
    return err as { code: number; message: string };
  }
  throw new Error('issued where a refusal was expected');
}

describe('RsaIssuer', () => {
  it('signs a blinded ticket message that the client finalises into a valid v2 signature', async () => {
    const info = ticketInfoV2(DAY);
    const msg = ticketMessageV2(key.keyId, DAY, new Uint8Array(randomBytes(32)));
    const { blindedMsg, inv } = await blind(key.spki, info, msg);
    const payer = account(9);
    const { blindSig } = await issuer().issue(payer, {
      keyId,
      day: DAY,
      blindedMsg: hex(blindedMsg),
    });
    expect(payer.credit).toBe(5);
    const signature = await finalize(key.spki, info, msg, Buffer.from(blindSig, 'hex'), inv);
    expect(await verify(key.spki, info, msg, signature)).toBe(true);
    // The day is bound: the same signature does not verify as another day's.
    expect(await verify(key.spki, ticketInfoV2(DAY + 1), msg, signature)).toBe(false);
  });

  it('concurrent requests on one circuit never spend the same credit twice', async () => {
    const slow = inlineBlindSigner();
    const rsa = issuer({
      signer: {
        sign: async (k, d, m) => (await new Promise((r) => setTimeout(r, 5)), slow.sign(k, d, m)),
      },
    });
    const payer = account(12); // three tickets' worth
    const results = await Promise.allSettled(
      Array.from({ length: 10 }, () =>
        rsa.issue(payer, { keyId, day: DAY, blindedMsg: randomBlock() }),
      ),
    );
    const ok = results.filter((r) => r.status === 'fulfilled');
    const refused = results.flatMap((r) =>
      r.status === 'rejected' ? [r.reason as { code: number }] : [],
    );
    expect(ok).toHaveLength(3);
    expect(refused.map((e) => e.code)).toEqual(Array(7).fill(RpcErrorCode.notEnoughCredit));
    expect(payer.credit).toBe(0);
    expect(rsa.issued()).toBe(3);
  });

  it('1,000 circuits issuing at once all get a signature; no request waits on another circuit', async () => {
    const rsa = issuer();
    const payers = Array.from({ length: 1000 }, () => account(4));
    const blocks = payers.map(() => randomBlock());
    const sigs = await Promise.all(
      payers.map((p, i) => rsa.issue(p, { keyId, day: DAY, blindedMsg: blocks[i] as string })),
    );
    expect(new Set(sigs.map((s) => s.blindSig)).size).toBe(1000);
    expect(payers.every((p) => p.credit === 0)).toBe(true);
    expect(rsa.issued()).toBe(1000);
  });

  it('refuses donation circuits and short credit with 34, before any signing', async () => {
    let signed = 0;
    const rsa = issuer({ signer: { sign: () => (signed++, Promise.reject(new Error('no'))) } });
    const params = { keyId, day: DAY, blindedMsg: randomBlock() };
    const donor = account(100, 'donate');
    expect((await refusal(rsa.issue(donor, params))).code).toBe(RpcErrorCode.notEnoughCredit);
    const poor = account(3.9);
    expect((await refusal(rsa.issue(poor, params))).code).toBe(RpcErrorCode.notEnoughCredit);
    expect([signed, donor.credit, poor.credit]).toEqual([0, 100, 3.9]);
  });

  it("takes today's day, and yesterday's only in the minutes after midnight", async () => {
    const params = (day: number) => ({ keyId, day, blindedMsg: randomBlock() });
    const payer = account(100);
    const rsa = issuer();
    expect((await refusal(rsa.issue(payer, params(DAY - 1)))).code).toBe(
      RpcErrorCode.invalidParams,
    );
    expect((await refusal(rsa.issue(payer, params(DAY + 1)))).code).toBe(
      RpcErrorCode.invalidParams,
    );
    const justAfterMidnight = issuer({ now: () => DAY * 86_400 + 60 });
    await expect(justAfterMidnight.issue(payer, params(DAY - 1))).resolves.toHaveProperty(
      'blindSig',
    );
    expect(payer.credit).toBe(96);
  });

  it("a key other than the day's issuing key gets 35; a block not below n gets -32602", async () => {
    const payer = account(100);
    const rsa = issuer();
    const otherId = Buffer.from(otherKey.keyId).toString('hex');
    const wrongKey = await refusal(
      rsa.issue(payer, { keyId: otherId, day: DAY, blindedMsg: randomBlock() }),
    );
    expect(wrongKey.code).toBe(RpcErrorCode.unknownTicketKey);
    const tooBig = await refusal(
      rsa.issue(payer, { keyId, day: DAY, blindedMsg: 'ff'.repeat(256) }),
    );
    expect(tooBig.code).toBe(RpcErrorCode.invalidParams);
    expect(payer.credit).toBe(100);
  });

  it('gives the credit back when nothing was signed: signer full (33) or failing (-32603)', async () => {
    const payer = account(8);
    const busy = issuer({ signer: { sign: () => Promise.reject(new BlindSignerBusy('full')) } });
    const full = await refusal(busy.issue(payer, { keyId, day: DAY, blindedMsg: randomBlock() }));
    expect(full).toMatchObject({ code: RpcErrorCode.issuerBusy, data: { retryAfter: 1 } });
    const failing = issuer({ signer: { sign: () => Promise.reject(new SigningFailure('fault')) } });
    let failures = 0;
    failing.on('failure', () => failures++);
    const fault = await refusal(
      failing.issue(payer, { keyId, day: DAY, blindedMsg: randomBlock() }),
    );
    expect(fault.code).toBe(RpcErrorCode.internalError);
    expect(fault.message).not.toMatch(/[0-9a-f]{32}/); // nothing of the key or the block
    expect([payer.credit, failures]).toEqual([8, 1]);
  });

  it('without an RSA key for today, answers an internal error and keeps the credit', async () => {
    const payer = account(8);
    const none = issuer({ keyring: rsaKeyring(null) });
    const err = await refusal(none.issue(payer, { keyId, day: DAY, blindedMsg: randomBlock() }));
    expect(err.code).toBe(RpcErrorCode.internalError);
    expect(payer.credit).toBe(8);
  });
});
