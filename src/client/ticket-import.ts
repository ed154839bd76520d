import type { Agent } from 'node:http';
import { RSA_SCHEME } from '../protocol/messages.js';
import type { AnyTicket } from '../tickets/any-ticket.js';
import { DescriptorError, verifyDescriptor } from '../tickets/descriptor.js';
import { rsaPublicKey } from '../tickets/rsa-scheme.js';
import { verifierKey } from '../tickets/scheme.js';
import { SignatureChecker } from '../tickets/ticket-verifier.js';
import { circuitUrl } from './redeem.js';
import { fetchDescriptor } from './relay-descriptor.js';
import { type CheckedTicket, checkTicket, type KnownKey } from './ticket-check.js';
import { formatTicketFile, parseTicketFile } from './ticket-file.js';
import type { Wallet } from './wallet.js';

/**
 * `powbridge tickets import` and `export`: the ticket file (src/client/ticket-file.ts) into
 * and out of the CLI wallet. An import checks every ticket (src/client/ticket-check.ts)
 * against the keys of the relay's signed descriptor, fetched now and verified under the
 * identity the user gives or the file names; only when the relay cannot be reached are the
 * keys stored in the file used, and the report says so. Nothing is sent to the relay but the
 * descriptor request: tickets leave the wallet only through `tickets redeem`.
 */

export interface ImportOptions {
  /** Redeem at this relay instead of the one the file names (a circuit URL). */
  relay?: string;
  /** The relay identity to pin (64 hex); else the file's, else the descriptor's own. */
  identity?: string;
  agent?: Agent;
  /** Unix seconds. */
  now: number;
}

export interface ImportReport {
  relay: string;
  /** Where the keys came from: the relay's descriptor (under `identity`) or the file. */
  keysFrom: 'descriptor' | 'file';
  identity: string | null;
  /** Why the descriptor was not used, when the keys came from the file. */
  descriptorProblem: string | null;
  taken: CheckedTicket[];
  /** Of the taken: those the wallet held already. */
  alreadyHeld: number;
  refused: CheckedTicket[];
}

export class TicketImportError extends Error {
  override name = 'TicketImportError';
}

const checker = new SignatureChecker();

/** node:crypto's check, as the relay's redeemer makes it. */
function verifyWithNode(key: KnownKey, ticket: AnyTicket): boolean {
  const bytes = new Uint8Array(Buffer.from(key.publicKey, 'hex'));
  return key.scheme === RSA_SCHEME
    ? checker.check({ scheme: 'rsa', key: rsaPublicKey(bytes) }, ticket)
    : checker.check({ scheme: 'ao', key: verifierKey(bytes) }, ticket);
}

function descriptorIdentity(json: unknown): string | null {
  if (typeof json !== 'object' || json === null || !('identity' in json)) return null;
  return typeof json.identity === 'string' ? json.identity.toLowerCase() : null;
}

export async function importTickets(
  wallet: Wallet,
  text: string,
  options: ImportOptions,
): Promise<ImportReport> {
  const file = parseTicketFile(text);
  let relay: string;
  try {
    relay = circuitUrl(options.relay ?? file.relay);
  } catch (err) {
    throw new TicketImportError(
      `ticket file: relay ${JSON.stringify(file.relay)}: ${(err as Error).message}`,
    );
  }
  const wanted = options.identity?.toLowerCase() ?? file.identity ?? null;
  let keys: readonly KnownKey[];
  let keysFrom: ImportReport['keysFrom'];
  let identity = wanted;
  let descriptorProblem: string | null = null;
  let json: unknown = null;
  try {
    json = await fetchDescriptor(relay, options.agent);
  } catch (err) {
    descriptorProblem = `the relay at ${relay} cannot be reached (${(err as Error).message})`;
  }
  if (json !== null) {
    identity = wanted ?? descriptorIdentity(json);
    try {
      keys = verifyDescriptor(json, identity ?? '').tickets.keys;
    } catch (err) {
      if (!(err instanceof DescriptorError)) throw err;
      // A relay that does not verify under the pinned identity gets nothing imported for it.
      throw new TicketImportError(`the relay at ${relay}: ${err.message}; nothing imported`);
    }
    keysFrom = 'descriptor';
  } else {
    keys = file.keys;
    keysFrom = 'file';
  }
  const taken: CheckedTicket[] = [];
  const refused: CheckedTicket[] = [];
  let alreadyHeld = 0;
  for (const entry of file.tickets) {
    const checked = await checkTicket(entry, keys, options.now, verifyWithNode);
    if (!checked.ok) {
      refused.push(checked);
      continue;
    }
    if (wallet.holds(entry.ticket)) alreadyHeld++;
    wallet.add(relay, entry, options.now);
    taken.push(checked);
  }
  return { relay, keysFrom, identity, descriptorProblem, taken, alreadyHeld, refused };
}

/** The wallet's unspent tickets for `relay` still redeemable at `now`, as a ticket file. */
export function exportTickets(
  wallet: Wallet,
  options: { relay: string; identity?: string; now: number },
): { text: string; count: number } {
  const relay = circuitUrl(options.relay);
  wallet.expire(options.now);
  const tickets = wallet
    .list({ state: 'unspent', relay })
    .map(({ ticket, keyId, day }) => ({ ticket, keyId, day }));
  const text = formatTicketFile({
    relay,
    ...(options.identity ? { identity: options.identity.toLowerCase() } : {}),
    keys: [],
    tickets,
  });
  return { text, count: tickets.length };
}
