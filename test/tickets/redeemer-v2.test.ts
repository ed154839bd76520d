import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RpcError, RpcErrorCode } from '../../src/protocol/errors.js';
import { encodePoint } from '../../src/tickets/group.js';
import type { AcceptedKey, Keyring } from '../../src/tickets/keyring.js';
import { Redeemer } from '../../src/tickets/redeemer.js';
import { generateSignerKey, verifierKey } from '../../src/tickets/scheme.js';
import { SpentStore } from '../../src/tickets/spent-store.js';
import { TICKET_V2_BYTES } from '../../src/tickets/ticket-v2.js';
import { csprng, issueTicket } from '../helpers/ticket-issue.js';
import { issueTicketV2, vectorRsaKeys } from '../helpers/ticket-v2.js';

/**
 * Redemption of v2 (RSA) tickets beside v1 (Abe–Okamoto): a relay in a change-over accepts
 * both, and the checks, the codes and the spent store are the same (docs/design.md §6.3, §6.5).
 */

const DAY = 20_428;
const NOW = DAY * 86_400 + 7_200;
const { ours: rsa, draft: otherRsa } = vectorRsaKeys();
const ao = generateSignerKey(csprng);
const aoVerifier = verifierKey(encodePoint(ao.y));

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const accepted = new Map<string, AcceptedKey>([
  [
    hex(rsa.keyId),
    { scheme: 'rsa', key: rsa, notBeforeDay: DAY - 3, notAfterDay: DAY + 3, owner: 'self' },
  ],
  [hex(ao.keyId), { key: aoVerifier, notBeforeDay: DAY - 3, notAfterDay: DAY + 3, owner: 'self' }],
]);
const keyring: Keyring = { issuingKey: () => null, acceptedKey: (id) => accepted.get(id) };

let dir: string;
let store: SpentStore;
let redeemer: Redeemer;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'powbridge-redeem-v2-'));
  store = SpentStore.open(join(dir, 'spent.sqlite'));
  redeemer = new Redeemer({ keyring, store });
});
afterEach(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

async function refusal(ticket: unknown, now = NOW): Promise<RpcError> {
  try {
    await redeemer.redeemBatched(ticket, now);
  } catch (err) {
    if (err instanceof RpcError) return err;
    throw err;
  }
  throw new Error('redeemed a ticket that should have been refused');
}

function tampered(text: string, at: number): string {
  const bytes = Buffer.from(text, 'base64url');
  bytes[at] = (bytes[at] ?? 0) ^ 0x01;
  return bytes.toString('base64url');
}

describe('Redeemer with v2 (RSA) tickets', () => {
  it('redeems a v2 ticket once, keyed on its nonce, beside v1 tickets', async () => {
    const v2 = issueTicketV2(rsa, DAY);
    expect(Buffer.from(v2.text, 'base64url')).toHaveLength(TICKET_V2_BYTES);
    const grant = await redeemer.redeemBatched(v2.text, NOW);
    expect(grant).toMatchObject({ class: 'paid', expiresAt: NOW + 600 });
    expect((await refusal(v2.text)).code).toBe(RpcErrorCode.ticketSpent);
    const [row] = await store.since(0, 10);
    expect(row && hex(row.serial)).toBe(hex(v2.serial));
    expect(row && hex(row.keyId)).toBe(hex(rsa.keyId));

    const v1 = issueTicket(ao, DAY);
    await expect(redeemer.redeemBatched(v1.text, NOW)).resolves.toMatchObject({ class: 'paid' });
    expect(redeemer.counts()).toMatchObject({ redeemed: 2, spent: 1 });
  });

  it("yesterday's ticket is redeemable today; older or future days get 31", async () => {
    await expect(
      redeemer.redeemBatched(issueTicketV2(rsa, DAY - 1).text, NOW),
    ).resolves.toMatchObject({ class: 'paid' });
    expect((await refusal(issueTicketV2(rsa, DAY - 2).text)).code).toBe(RpcErrorCode.ticketExpired);
    expect((await refusal(issueTicketV2(rsa, DAY + 1).text)).code).toBe(RpcErrorCode.ticketExpired);
  });

  it('a ticket whose day was changed after signing fails the signature (the day is signed)', async () => {
    const { text } = issueTicketV2(rsa, DAY);
    const bytes = Buffer.from(text, 'base64url');
    bytes.writeUInt32BE(DAY - 1, 9); // still a redeemable day, but not the signed one
    const err = await refusal(bytes.toString('base64url'));
    expect(err.code).toBe(RpcErrorCode.badTicketSignature);
  });

  it('tampered nonce or signature bytes get 30 and spend nothing', async () => {
    const { text } = issueTicketV2(rsa, DAY);
    for (const at of [13, 44, 45, 200, 300]) {
      expect((await refusal(tampered(text, at))).code).toBe(RpcErrorCode.badTicketSignature);
    }
    expect(await store.since(0, 10)).toHaveLength(0);
    await expect(redeemer.redeemBatched(text, NOW)).resolves.toMatchObject({ class: 'paid' });
  });

  it('a signature by another RSA key under our key id gets 30; an unknown key id gets 35', async () => {
    const forged = issueTicketV2(otherRsa, DAY, { claimedKeyId: rsa.keyId });
    expect((await refusal(forged.text)).code).toBe(RpcErrorCode.badTicketSignature);
    expect((await refusal(issueTicketV2(otherRsa, DAY).text)).code).toBe(
      RpcErrorCode.unknownTicketKey,
    );
  });

  it('a v2 ticket under an Abe–Okamoto key id (or v1 under RSA) is a bad signature', async () => {
    const v2underAo = issueTicketV2(rsa, DAY, { claimedKeyId: ao.keyId });
    expect((await refusal(v2underAo.text)).code).toBe(RpcErrorCode.badTicketSignature);
    const v1underRsa = issueTicket(ao, DAY, { claimedKeyId: rsa.keyId });
    expect((await refusal(v1underRsa.text)).code).toBe(RpcErrorCode.badTicketSignature);
  });

  it('malformed v2 encodings get 30: short, long, padded, wrong version', async () => {
    const { text } = issueTicketV2(rsa, DAY);
    const bytes = Buffer.from(text, 'base64url');
    for (const bad of [
      text.slice(0, -4),
      `${text}AAAA`,
      `${text}=`,
      Buffer.concat([Buffer.from([3]), bytes.subarray(1)]).toString('base64url'),
      'Ag',
      '',
    ]) {
      expect((await refusal(bad)).code).toBe(RpcErrorCode.badTicketSignature);
    }
    expect(redeemer.counts().malformed).toBe(6);
  });
});
