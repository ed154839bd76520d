import { describe, expect, it } from 'vitest';
import {
  blindMessage,
  finalizeSignature,
  verifyTicketSignature,
} from '../../src/browser/page-rsa.js';
import * as pageScheme from '../../src/browser/shims/rsa-scheme.js';
import type { RandomBytes } from '../../src/tickets/group.js';
import * as nodeBlind from '../../src/tickets/rsa-blind.js';
import * as nodeScheme from '../../src/tickets/rsa-scheme.js';
import { SignatureError } from '../../src/tickets/scheme.js';
import { ticketMessageV2 } from '../../src/tickets/ticket-v2.js';
import { rsaFixtureKeys } from '../helpers/rsa-keys.js';
import { seededRandom } from '../helpers/seeded-random.js';

/**
 * The miner page's tickets v2 in BigInt (src/browser/page-rsa.ts and its twin of
 * src/tickets/rsa-scheme.ts) against the CLI's node:crypto code: the same random bytes give
 * the same blinded message, the relay's signature finalizes to a ticket the relay's verifier
 * takes, and what does not verify is refused.
 */

function randomFrom(seed: number): RandomBytes {
  const next = seededRandom(seed);
  return (length) => Uint8Array.from({ length }, () => Math.floor(next() * 256));
}

const [master] = rsaFixtureKeys();
if (!master) throw new Error('no fixture RSA key');
const day = 20_000;
const info = nodeScheme.ticketInfoV2(day);
const msg = ticketMessageV2(master.keyId, day, new Uint8Array(32).fill(7));

describe('miner page RSA (BigInt) against the CLI (node:crypto)', () => {
  it('reads the public key as the CLI does, and only its canonical encoding', () => {
    const page = pageScheme.rsaPublicKey(master.spki);
    expect(page.n).toBe(master.n);
    expect(Buffer.from(page.keyId).toString('hex')).toBe(Buffer.from(master.keyId).toString('hex'));
    const otherExponent = Uint8Array.from(master.spki);
    otherExponent[otherExponent.length - 1] = 0x03;
    expect(() => pageScheme.rsaPublicKey(otherExponent)).toThrow(/canonically encoded/);
    expect(() => pageScheme.rsaPublicKey(master.spki.subarray(1))).toThrow(/SPKI/);
  });

  it('derives the same day exponent', () => {
    expect(pageScheme.derivePublicExponent(master.n, info)).toBe(
      nodeScheme.derivePublicExponent(master.n, info),
    );
  });

  it('blinds to the same bytes, and finalizes the relay signature into a ticket it verifies', () => {
    const page = blindMessage(master, info, msg, randomFrom(1));
    const cli = nodeBlind.blindMessage(master, info, msg, randomFrom(1));
    expect(Buffer.from(page.blindedMsg).equals(Buffer.from(cli.blindedMsg))).toBe(true);
    expect(Buffer.from(page.inv).equals(Buffer.from(cli.inv))).toBe(true);

    const blindSig = new nodeScheme.RsaSigner(master).sign(day, page.blindedMsg);
    const signature = finalizeSignature(master, info, msg, blindSig, page.inv);
    expect(new nodeScheme.RsaVerifier(master).verify(day, msg, signature)).toBe(true);
    expect(verifyTicketSignature(master, info, msg, signature)).toBe(true);

    const flipped = Uint8Array.from(signature);
    flipped[100] = (flipped[100] ?? 0) ^ 1;
    expect(verifyTicketSignature(master, info, msg, flipped)).toBe(false);
    expect(verifyTicketSignature(master, nodeScheme.ticketInfoV2(day + 1), msg, signature)).toBe(
      false,
    );
    const wrongInv = Uint8Array.from(page.inv);
    wrongInv[200] = (wrongInv[200] ?? 0) ^ 1;
    expect(() => finalizeSignature(master, info, msg, blindSig, wrongInv)).toThrow(SignatureError);
  });
});
