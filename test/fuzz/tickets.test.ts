import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect } from 'vitest';
import { RpcError, RpcErrorCode } from '../../src/protocol/errors.js';
import { decodeAnyTicket } from '../../src/tickets/any-ticket.js';
import { encodePoint, Q, TicketFormatError } from '../../src/tickets/group.js';
import type { Keyring } from '../../src/tickets/keyring.js';
import { Redeemer } from '../../src/tickets/redeemer.js';
import { generateSignerKey } from '../../src/tickets/scheme.js';
import { SpentStore } from '../../src/tickets/spent-store.js';
import { decodeTicket, encodeTicket, TICKET_BYTES } from '../../src/tickets/ticket.js';
import {
  decodeTicketV2,
  encodeTicketV2,
  TICKET_V2_BYTES,
  type TicketV2,
} from '../../src/tickets/ticket-v2.js';
import { anyCodePoint, fuzz, fuzzAsync } from '../helpers/fuzz.js';
import { acceptingKeyring, csprng, issueTicket } from '../helpers/ticket-issue.js';
import { issueTicketV2, rsaKeyring, vectorRsaKeys } from '../helpers/ticket-v2.js';

/**
 * Ticket parsing, both versions (src/tickets/ticket.ts, ticket-v2.ts, any-ticket.ts), and the
 * redeemer's refusals (src/tickets/redeemer.ts) over a real spent store: a decoder returns a
 * ticket or throws TicketFormatError, and what it accepts re-encodes to the same text; the
 * redeemer answers only 30, 31, 32 or 35, grants only tickets that were issued, and each of
 * them once.
 */

const DAY = 20_413; // 2025-11-21
const NOW = DAY * 86_400 + 3_600;
const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const REFUSALS = new Set<number>([
  RpcErrorCode.badTicketSignature,
  RpcErrorCode.ticketExpired,
  RpcErrorCode.ticketSpent,
  RpcErrorCode.unknownTicketKey,
]);

const aoKey = generateSignerKey(csprng);
const rsaKey = vectorRsaKeys().ours;
const aoKeyring = acceptingKeyring([
  { publicKey: encodePoint(aoKey.y), notBeforeDay: DAY - 3, notAfterDay: DAY + 3 },
]);
const rsaOnly = rsaKeyring(null, [
  { key: rsaKey, validity: { notBeforeDay: DAY - 3, notAfterDay: DAY + 3 } },
]);
/** Accepts both keys, as a relay that changed schemes holds both. */
const keyring: Keyring = {
  issuingKey: () => null,
  acceptedKey: (id) => aoKeyring.acceptedKey(id) ?? rsaOnly.acceptedKey(id),
};

/** Issued tickets of both versions for today and yesterday (both redeemable today). */
const issued = [
  ...[DAY, DAY - 1, DAY, DAY - 1].map((day) => issueTicket(aoKey, day).text),
  ...[DAY, DAY - 1, DAY, DAY - 1].map((day) => issueTicketV2(rsaKey, day).text),
];
const issuedSet = new Set(issued);

/** A text edited the way a forger or a broken client would: a few characters off. */
const editedTicket: fc.Arbitrary<string> = fc
  .tuple(
    fc.constantFrom(...issued),
    fc.array(
      fc.tuple(
        fc.constantFrom('replace', 'insert', 'delete', 'truncate', 'append'),
        fc.nat(),
        fc.oneof(fc.constantFrom(...B64URL), fc.constantFrom('=', '+', '/', ' ', '\n', 'é', '')),
      ),
      { minLength: 1, maxLength: 3 },
    ),
  )
  .map(([text, edits]) => {
    let out = text;
    for (const [how, at, char] of edits) {
      const i = at % (out.length + 1);
      if (how === 'replace') out = out.slice(0, i) + char + out.slice(i + 1);
      else if (how === 'insert') out = out.slice(0, i) + char + out.slice(i);
      else if (how === 'delete') out = out.slice(0, i) + out.slice(i + 1);
      else if (how === 'truncate') out = out.slice(0, i);
      else out += char;
    }
    return out;
  });

/** Bytes of the right length with a version byte: decodes often, so reaches the deep checks. */
const framedBytes: fc.Arbitrary<string> = fc
  .tuple(
    fc.constantFrom(TICKET_BYTES, TICKET_V2_BYTES, TICKET_BYTES + 1, TICKET_V2_BYTES - 1),
    fc.constantFrom(0, 1, 2, 3, 255),
    fc.uint8Array({ minLength: TICKET_V2_BYTES + 1, maxLength: TICKET_V2_BYTES + 1 }),
  )
  .map(([length, version, random]) => {
    const bytes = random.slice(0, length);
    bytes[0] = version;
    return Buffer.from(bytes).toString('base64url');
  });

const anyTicketText: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 3, arbitrary: editedTicket },
  { weight: 2, arbitrary: framedBytes },
  { weight: 1, arbitrary: fc.string({ unit: anyCodePoint, maxLength: 600 }) },
  { weight: 1, arbitrary: fc.string({ unit: fc.constantFrom(...B64URL), maxLength: 520 }) },
  { weight: 1, arbitrary: fc.anything() },
);

/** Decodes `text` with `decode`; a refusal must be a TicketFormatError. */
function tryDecode<T>(decode: (text: unknown) => T, text: unknown): T | null {
  try {
    return decode(text);
  } catch (err) {
    if (!(err instanceof TicketFormatError)) throw err;
    expect(err.message).toMatch(/^ticket/);
    return null;
  }
}

describe('fuzz: ticket encodings', () => {
  fuzz('decoders return a ticket or refuse with TicketFormatError', anyTicketText, (text) => {
    const v1 = tryDecode(decodeTicket, text);
    const v2 = tryDecode(decodeTicketV2, text);
    const any = tryDecode(decodeAnyTicket, text);
    // Canonical: whatever decodes re-encodes to the very same text.
    if (v1 !== null) expect(encodeTicket(v1)).toBe(text);
    if (v2 !== null) expect(encodeTicketV2(v2)).toBe(text);
    // The version byte decides, and the two decoders never both accept a text.
    expect(v1 !== null && v2 !== null).toBe(false);
    if (any === null) expect(v1 === null && v2 === null).toBe(true);
    // Same version, same bytes (the round trip above pins the rest).
    else if (any.version === 1) expect(v1 === null ? null : encodeTicket(any.v1)).toBe(text);
    else expect(v2 === null ? null : encodeTicketV2(any.v2)).toBe(text);
  });

  const bytes = (n: number) => fc.uint8Array({ minLength: n, maxLength: n });
  const scalar = fc.bigInt({ min: 0n, max: Q - 1n });
  const day = fc.integer({ min: 0, max: 0xffffffff });

  fuzz(
    'v1: encode → decode gives the ticket back',
    fc.record({
      keyId: bytes(8),
      day,
      xc: bytes(32),
      signature: fc.record({ rho: scalar, omega: scalar, sigma: scalar, delta: scalar }),
    }),
    (ticket) => {
      const text = encodeTicket(ticket);
      expect(decodeTicket(text)).toEqual(ticket);
      expect(decodeAnyTicket(text)).toMatchObject({ version: 1, v1: ticket });
    },
  );

  fuzz(
    'v2: encode → decode gives the ticket back',
    fc.record({ keyId: bytes(8), day, nonce: bytes(32), signature: bytes(256) }),
    (ticket) => {
      const text = encodeTicketV2(ticket);
      // Compared as hex: element-wise equality of 256-byte arrays is slow.
      const hex = (t: TicketV2) => ({
        keyId: Buffer.from(t.keyId).toString('hex'),
        day: t.day,
        nonce: Buffer.from(t.nonce).toString('hex'),
        signature: Buffer.from(t.signature).toString('hex'),
      });
      expect(hex(decodeTicketV2(text))).toEqual(hex(ticket));
      const any = decodeAnyTicket(text);
      if (any.version !== 2) expect.fail('decoded as v1');
      expect(hex(any.v2)).toEqual(hex(ticket));
    },
  );
});

describe('fuzz: the redeemer refuses with documented codes only', () => {
  let dir: string;
  let store: SpentStore;
  let redeemer: Redeemer;
  /** Issued tickets a grant was given for: each at most once. */
  const granted = new Set<string>();

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'powbridge-fuzz-redeem-'));
    store = SpentStore.open(join(dir, 'spent.sqlite'));
    redeemer = new Redeemer({ keyring, store });
  });
  afterAll(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** One redemption: a grant only for an issued ticket not granted before, else 30/31/32/35. */
  async function redeemOnce(text: unknown, now: number, batched: boolean): Promise<void> {
    try {
      const grant = batched
        ? await redeemer.redeemBatched(text, now)
        : await redeemer.redeem(text, now);
      expect(typeof text === 'string' && issuedSet.has(text)).toBe(true);
      expect(granted.has(String(text))).toBe(false);
      granted.add(String(text));
      expect(grant.class).toBe('paid');
    } catch (err) {
      if (!(err instanceof RpcError)) throw err;
      expect(REFUSALS.has(err.code)).toBe(true);
    }
  }

  fuzzAsync(
    'redeem and redeemBatched: a grant once per issued ticket, otherwise 30, 31, 32 or 35',
    fc.tuple(
      fc.oneof(
        { weight: 6, arbitrary: anyTicketText },
        { weight: 1, arbitrary: fc.constantFrom(...issued) },
      ),
      // Today, tomorrow (yesterday's tickets expire), or days off either way.
      fc.constantFrom(NOW, NOW + 86_400, NOW + 2 * 86_400, NOW - 86_400, 0),
      fc.boolean(),
    ),
    ([text, now, batched]) => redeemOnce(text, now, batched),
    // A ticket that decodes reaches a signature check (~1.5 ms for v1).
    { weight: 0.3 },
  );
});
