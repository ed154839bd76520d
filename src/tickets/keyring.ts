import type { SignerKey, VerifierKey } from './scheme.js';

/**
 * What the issuer and the redeemer need to know about ticket keys; the key store implements
 * it (and, with backup relays, a peer's keys join the verifiers).
 */

/** Validity of a ticket key, in UTC days since 1970-01-01 (inclusive). */
export interface KeyValidity {
  notBeforeDay: number;
  notAfterDay: number;
}

export interface IssuingKey extends KeyValidity {
  key: SignerKey;
}

export interface AcceptedKey extends KeyValidity {
  key: VerifierKey;
  /** 'self' for our own keys; a peer's name for keys of a trusted backup relay. */
  owner: string;
}

export interface Keyring {
  /** The key to issue with on `day`, or null if none is valid. */
  issuingKey(day: number): IssuingKey | null;
  /** A key whose tickets we accept, by key id (hex). */
  acceptedKey(keyIdHex: string): AcceptedKey | undefined;
}

/** UTC day number of a unix time in seconds. */
export function utcDay(unixSeconds: number): number {
  return Math.floor(unixSeconds / 86_400);
}
