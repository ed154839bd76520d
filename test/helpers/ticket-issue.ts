import { csprng } from '../../src/tickets/group.js';
import { encodePoint, type RandomBytes } from '../../src/tickets/group.js';
import type { AcceptedKey, Keyring } from '../../src/tickets/keyring.js';
import {
  clientChallenge,
  clientUnblind,
  InfoPointCache,
  type SignerKey,
  signerCommit,
  signerRespond,
  ticketMessage,
  verifierKey,
} from '../../src/tickets/scheme.js';
import { encodeTicket } from '../../src/tickets/ticket.js';

export { csprng };

/**
 * One complete issuance (signer and client), encoded as the client would redeem it.
 * `claimedKeyId` puts another key's id in the ticket, to test a signature by the wrong key.
 */
export function issueTicket(
  key: SignerKey,
  day: number,
  options: { claimedKeyId?: Uint8Array; random?: RandomBytes } = {},
): { text: string; serial: Uint8Array } {
  const random = options.random ?? csprng;
  const verifier = verifierKey(encodePoint(key.y));
  const { info, z } = new InfoPointCache().get(key.keyId, day);
  const { session, commitment } = signerCommit(z, random);
  const xc = random(32);
  const msg = ticketMessage(xc);
  const { e, blinding } = clientChallenge(verifier, z, info, commitment, msg, random);
  const signature = clientUnblind(
    verifier,
    z,
    commitment,
    signerRespond(key, session, e),
    blinding,
  );
  const keyId = options.claimedKeyId ?? key.keyId;
  return { text: encodeTicket({ keyId, day, xc, signature }), serial: msg };
}

/** A Keyring that accepts the given public keys over a window of days and issues nothing. */
export function acceptingKeyring(
  keys: { publicKey: Uint8Array; notBeforeDay: number; notAfterDay: number; owner?: string }[],
): Keyring {
  const accepted = new Map<string, AcceptedKey>();
  for (const k of keys) {
    const key = verifierKey(k.publicKey);
    accepted.set(Buffer.from(key.keyId).toString('hex'), {
      key,
      notBeforeDay: k.notBeforeDay,
      notAfterDay: k.notAfterDay,
      owner: k.owner ?? 'self',
    });
  }
  return { issuingKey: () => null, acceptedKey: (id) => accepted.get(id) };
}
