import type { RsaPrivateKey, RsaPublicKey } from './rsa-scheme.js';
import type { SignerKey, VerifierKey } from './scheme.js';

/**
 * What the issuers and the redeemer need to know about ticket keys; the key store implements
 * it (and, with backup relays, a peer's keys join the verifiers).
 *
 * Two schemes (docs/design.md §6.1, §6.5): 'ao' (Abe–Okamoto, v1 tickets) and 'rsa'
 * (partially blind RSA, v2 tickets). Each scheme has at most one issuing key per day; a relay
 * issues with one scheme (`tickets.scheme`) and accepts tickets of every key it holds, so a
 * change-over from one scheme to the other strands no ticket.
 */

export type TicketScheme = 'ao' | 'rsa';
export const TICKET_SCHEME_KINDS: readonly TicketScheme[] = ['ao', 'rsa'];

/** Validity of a ticket key, in UTC days since 1970-01-01 (inclusive). */
export interface KeyValidity {
  notBeforeDay: number;
  notAfterDay: number;
}

/** The Abe–Okamoto key issuing on a day. */
export interface IssuingKey extends KeyValidity {
  key: SignerKey;
}

/** The RSA master key issuing on a day (the day's key pair is derived from it). */
export interface IssuingRsaKey extends KeyValidity {
  key: RsaPrivateKey;
}

/** A key whose tickets we accept; `scheme` absent means Abe–Okamoto. */
export type AcceptedKey = KeyValidity & {
  /** 'self' for our own keys; a peer's name for keys of a trusted backup relay. */
  owner: string;
} & ({ scheme?: 'ao'; key: VerifierKey } | { scheme: 'rsa'; key: RsaPublicKey });

export interface Keyring {
  /** The Abe–Okamoto key to issue with on `day`, or null if none is valid. */
  issuingKey(day: number): IssuingKey | null;
  /** The RSA key to issue with on `day`, or null if none is valid. */
  issuingRsaKey?(day: number): IssuingRsaKey | null;
  /** A key whose tickets we accept, by key id (hex). */
  acceptedKey(keyIdHex: string): AcceptedKey | undefined;
}

/** UTC day number of a unix time in seconds. */
export function utcDay(unixSeconds: number): number {
  return Math.floor(unixSeconds / 86_400);
}
