import type { TicketSchemeName } from '../protocol/messages.js';
import { type AnyTicket, decodeAnyTicket } from '../tickets/any-ticket.js';
import { utcDay } from '../tickets/keyring.js';
import type { TicketFileEntry } from './ticket-file.js';

/**
 * The checks an imported ticket passes before a wallet takes it, the same in the miner page
 * and in `powbridge tickets import`: its encoding, a key listed for the relay (from its signed
 * descriptor, or as stored) with the ticket's day inside the key's days, a signature that
 * verifies under that key, and a day still redeemable (the issue day and the next,
 * docs/design.md §6.3). Browser-safe: the caller brings the signature check, with node:crypto
 * in the CLI and BigInt in the page.
 */

export interface KnownKey {
  keyId: string;
  scheme: TicketSchemeName;
  publicKey: string;
  notBeforeDay: number;
  notAfterDay: number;
}

export type SignatureCheck = (key: KnownKey, ticket: AnyTicket) => boolean | Promise<boolean>;

export type CheckedTicket =
  | { ok: true; entry: TicketFileEntry; key: KnownKey }
  | { ok: false; entry: TicketFileEntry; reason: string };

/** A ticket is redeemable on its issue day and the next. */
const REDEEMABLE_DAYS = 2;

const hex = (bytes: Uint8Array): string =>
  Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');

/** Check one entry of a ticket file; never throws for a bad ticket, says why instead. */
export async function checkTicket(
  entry: TicketFileEntry,
  keys: readonly KnownKey[],
  nowSeconds: number,
  verify: SignatureCheck,
): Promise<CheckedTicket> {
  const refuse = (reason: string): CheckedTicket => ({ ok: false, entry, reason });
  let decoded: AnyTicket;
  try {
    decoded = decodeAnyTicket(entry.ticket);
  } catch (err) {
    return refuse(err instanceof Error ? err.message : String(err));
  }
  const keyId = hex(decoded.keyId);
  if (keyId !== entry.keyId || decoded.day !== entry.day) {
    return refuse('key id or day listed beside the ticket is not the ticket’s own');
  }
  const today = utcDay(nowSeconds);
  if (decoded.day < today - (REDEEMABLE_DAYS - 1)) {
    return refuse(
      `expired (issued on day ${decoded.day}, redeemable until day ${decoded.day + 1})`,
    );
  }
  if (decoded.day > today + 1) return refuse(`issued on day ${decoded.day}, after today`);
  const key = keys.find((k) => k.keyId === keyId);
  if (!key) return refuse(`key ${keyId} is not one the relay lists`);
  if (decoded.day < key.notBeforeDay || decoded.day > key.notAfterDay) {
    return refuse(
      `key ${keyId} does not issue on day ${decoded.day} (days ${key.notBeforeDay}..${key.notAfterDay})`,
    );
  }
  let valid: boolean;
  try {
    valid = await verify(key, decoded);
  } catch {
    valid = false;
  }
  return valid ? { ok: true, entry, key } : refuse(`signature does not verify under key ${keyId}`);
}
