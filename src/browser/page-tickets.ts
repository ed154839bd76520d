import { bytesToHex, hexToBytes } from '@noble/hashes/utils.js';
import { type CheckedTicket, checkTicket, type KnownKey } from '../client/ticket-check.js';
import type { TicketFile } from '../client/ticket-file.js';
import { RpcError, RpcErrorCode } from '../protocol/errors.js';
import { RSA_SCHEME, type TicketTerms } from '../protocol/messages.js';
import type { AnyTicket } from '../tickets/any-ticket.js';
import type { RandomBytes } from '../tickets/group.js';
import { utcDay } from '../tickets/keyring.js';
import { SignatureError } from '../tickets/scheme.js';
import {
  encodeTicketV2,
  NONCE_BYTES,
  TICKET_V2_VERSION,
  ticketMessageV2,
} from '../tickets/ticket-v2.js';
import type { PageCircuit } from './page-circuit.js';
import type { PageRelay } from './page-relay.js';
import { blindMessage, finalizeSignature, verifyTicketSignature } from './page-rsa.js';
import type { PageStore, StoredTicket } from './page-store.js';
import { type RsaPublicKey, rsaPublicKey, ticketInfoV2 } from './shims/rsa-scheme.js';

/**
 * Credit into tickets in the page, as the CLI's ticket loop does (src/client/ticket-loop.ts,
 * src/client/ticket-client.ts): once the relay's credit covers the price, one ticket.issue
 * at a time on the mining circuit (docs/design.md §6.5: blind in the page, the relay signs,
 * finalize and verify in the page), stored in IndexedDB before it is counted. Only the
 * key the signed descriptor lists for the day is used, and only today's day (± a few
 * minutes around UTC midnight), so the relay cannot give this browser tickets of its own.
 */

/** What the loop needs of the page's session. */
export interface TicketSession {
  readonly currentCredit: number;
  readonly openCircuit: PageCircuit | null;
  noteSpent(amount: number): void;
}

export interface PageTicketLoopOptions {
  session: TicketSession;
  relay: PageRelay;
  store: PageStore;
  terms: Extract<TicketTerms, { scheme: typeof RSA_SCHEME }>;
  random: RandomBytes;
  /** Unix seconds. */
  now: () => number;
  onTicket: (ticket: StoredTicket) => void;
  onProblem: (message: string | null) => void;
}

const RETRY_MS = 5_000;
const MIDNIGHT_SKEW_SECONDS = 300;

/** The day to ask for: the terms' day while it is today (± the skew), else our today. */
function issueDay(termsDay: number, nowSeconds: number): number {
  const allowed = [
    nowSeconds - MIDNIGHT_SKEW_SECONDS,
    nowSeconds,
    nowSeconds + MIDNIGHT_SKEW_SECONDS,
  ];
  if (allowed.some((t) => utcDay(t) === termsDay)) return termsDay;
  const today = utcDay(nowSeconds);
  if (termsDay < today) return today;
  throw new SignatureError(`relay offered day ${termsDay}, not today (${today})`);
}

/** One ticket over the circuit: blind, ticket.issue, finalize (verified) — or throw. */
export async function obtainTicket(
  circuit: PageCircuit,
  key: RsaPublicKey,
  termsDay: number,
  options: { random: RandomBytes; now: number; onOpened: () => void },
): Promise<StoredTicket> {
  const day = issueDay(termsDay, options.now);
  const nonce = options.random(NONCE_BYTES);
  const msg = ticketMessageV2(key.keyId, day, nonce);
  const info = ticketInfoV2(day);
  const { blindedMsg, inv } = blindMessage(key, info, msg, options.random);
  const { blindSig } = await circuit.request('ticket.issue', {
    keyId: bytesToHex(key.keyId),
    day,
    blindedMsg: bytesToHex(blindedMsg),
  });
  options.onOpened();
  const signature = finalizeSignature(key, info, msg, hexToBytes(blindSig), inv);
  return {
    ticket: encodeTicketV2({ keyId: key.keyId, day, nonce, signature }),
    keyId: bytesToHex(key.keyId),
    day,
    receivedAt: Math.floor(options.now),
  };
}

export class PageTicketLoop {
  private inFlight = false;
  private resumeAt = 0;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private closed = false;
  /** The credit we believed when the relay said "not enough": wait for more than that. */
  private refused: { circuit: PageCircuit; credit: number } | null = null;

  constructor(private readonly options: PageTicketLoopOptions) {}

  /** Credit or the circuit changed: ask for a ticket if one is due and none is in flight. */
  poke(): void {
    if (this.closed || this.inFlight || !this.due()) return;
    const wait = this.resumeAt - Date.now();
    if (wait > 0) {
      this.retryTimer ??= setTimeout(() => {
        this.retryTimer = undefined;
        this.poke();
      }, wait);
      return;
    }
    this.inFlight = true;
    void this.requestOne().finally(() => {
      this.inFlight = false;
      this.poke();
    });
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.retryTimer);
  }

  private due(): boolean {
    const { session, terms } = this.options;
    const circuit = session.openCircuit;
    if (!circuit || session.currentCredit < terms.price) return false;
    const { refused } = this;
    return !refused || refused.circuit !== circuit || session.currentCredit > refused.credit;
  }

  private async requestOne(): Promise<void> {
    const { session, terms, relay } = this.options;
    const circuit = session.openCircuit;
    if (!circuit) return;
    try {
      const now = this.options.now();
      const pinned = await relay.admit(terms, now);
      const key = rsaPublicKey(hexToBytes(pinned.publicKey));
      const ticket = await obtainTicket(circuit, key, terms.day, {
        random: this.options.random,
        now,
        onOpened: () => session.noteSpent(terms.price),
      });
      await this.options.store.add([ticket]);
      this.refused = null;
      this.options.onProblem(null);
      this.options.onTicket(ticket);
    } catch (err) {
      if (err instanceof RpcError && err.code === RpcErrorCode.notEnoughCredit) {
        this.refused = { circuit, credit: session.currentCredit };
        return;
      }
      const retryAfter = err instanceof RpcError ? (err.retryAfter ?? 0) : 0;
      this.resumeAt = Date.now() + Math.max(RETRY_MS, retryAfter * 1000);
      this.options.onProblem(
        `Ticket request failed: ${err instanceof Error ? err.message : String(err)}`,
      );
    }
  }
}

/** The page's signature check: v2 tickets under an RSA key, in BigInt. */
function verifyInPage(key: KnownKey, ticket: AnyTicket): boolean {
  if (key.scheme !== RSA_SCHEME || ticket.version !== TICKET_V2_VERSION) return false;
  const { v2 } = ticket;
  return verifyTicketSignature(
    rsaPublicKey(hexToBytes(key.publicKey)),
    ticketInfoV2(v2.day),
    ticketMessageV2(v2.keyId, v2.day, v2.nonce),
    v2.signature,
  );
}

/**
 * A ticket file into the page's wallet: a file pinned to another identity is refused whole;
 * each ticket must pass the shared checks against the keys this page has pinned.
 */
export async function importTickets(
  file: TicketFile,
  relay: PageRelay,
  store: PageStore,
  nowSeconds: number,
): Promise<CheckedTicket[]> {
  if (file.identity !== undefined && file.identity !== relay.identity) {
    throw new Error(
      `these tickets are for relay ${file.identity}, not this one (${relay.identity})`,
    );
  }
  const checked: CheckedTicket[] = [];
  for (const entry of file.tickets) {
    checked.push(await checkTicket(entry, relay.keys(), nowSeconds, verifyInPage));
  }
  await store.add(
    checked.filter((c) => c.ok).map((c) => ({ ...c.entry, receivedAt: Math.floor(nowSeconds) })),
  );
  return checked;
}
