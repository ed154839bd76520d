import { constants, randomBytes, sign } from 'node:crypto';
import type { AcceptedKey, Keyring, KeyValidity } from '../../src/tickets/keyring.js';
import {
  deriveKeyPair,
  messagePrime,
  type RsaPrivateKey,
  rsaPrivateKey,
  SALT_BYTES,
  ticketInfoV2,
} from '../../src/tickets/rsa-scheme.js';
import { encodeTicketV2, ticketMessageV2 } from '../../src/tickets/ticket-v2.js';
import { readVectorsFile } from '../tickets/rsa-vector-build.js';

/**
 * v2 tickets for tests that are about redemption, not issuance: the finalised signature of
 * RSAPBSSA is an RSASSA-PSS signature of msg_prime under the day's derived key, so signing
 * msg_prime directly gives the same kind of ticket a blind issuance gives (the issuance path
 * itself is tested against the draft's vectors and the reference library elsewhere).
 */

/** The two 2048-bit safe-prime keys of test/vectors/tickets-v2.json (no generation needed). */
export function vectorRsaKeys(): { ours: RsaPrivateKey; draft: RsaPrivateKey } {
  const v = readVectorsFile();
  const big = (s: string) => BigInt(`0x${s}`);
  return {
    ours: rsaPrivateKey(big(v.powbridge.key.p), big(v.powbridge.key.q)),
    draft: rsaPrivateKey(big(v.draft.key.p), big(v.draft.key.q)),
  };
}

export function issueTicketV2(
  key: RsaPrivateKey,
  day: number,
  options: { nonce?: Uint8Array; claimedKeyId?: Uint8Array } = {},
): { text: string; serial: Uint8Array } {
  const nonce = options.nonce ?? new Uint8Array(randomBytes(32));
  const keyId = options.claimedKeyId ?? key.keyId;
  const info = ticketInfoV2(day);
  const { privateKey } = deriveKeyPair(key, info);
  const signature = new Uint8Array(
    sign('sha384', messagePrime(info, ticketMessageV2(keyId, day, nonce)), {
      key: privateKey,
      padding: constants.RSA_PKCS1_PSS_PADDING,
      saltLength: SALT_BYTES,
    }),
  );
  return { text: encodeTicketV2({ keyId, day, nonce, signature }), serial: nonce };
}

/** A keyring that issues with `issuing` (RSA) on every day and accepts `accepted` keys. */
export function rsaKeyring(
  issuing: RsaPrivateKey | null,
  accepted: { key: RsaPrivateKey; validity?: KeyValidity; owner?: string }[] = [],
): Keyring {
  const byId = new Map<string, AcceptedKey>();
  for (const a of accepted) {
    byId.set(Buffer.from(a.key.keyId).toString('hex'), {
      scheme: 'rsa',
      key: a.key,
      ...(a.validity ?? { notBeforeDay: 0, notAfterDay: 0xffffffff }),
      owner: a.owner ?? 'self',
    });
  }
  return {
    issuingKey: () => null,
    issuingRsaKey: () =>
      issuing ? { key: issuing, notBeforeDay: 0, notAfterDay: 0xffffffff } : null,
    acceptedKey: (id) => byId.get(id),
  };
}
