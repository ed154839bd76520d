import { EventEmitter } from 'node:events';
import { type Logger, silentLogger } from '../log.js';
import { RpcError, RpcErrorCode } from '../protocol/errors.js';
import type { RegisterResult } from '../protocol/messages.js';
import type { CircuitClient } from './circuit-client.js';
import { type IssuedTicket, TicketClient } from './ticket-client.js';
import type { Wallet } from './wallet.js';

/**
 * Credit into tickets: once the relay's credit covers the price, obtain one ticket on the
 * mining circuit in the scheme of the registration terms, and store it in the wallet before
 * anything reports it. One request at a time: the next issuance starts only after the last
 * one finished or failed.
 * - Abe–Okamoto (docs/design.md §6.1): a session, ticket.open then ticket.finish. Parallel
 *   sessions would buy nothing (the credit pays for one at a time) and each open one counts
 *   against the relay's cap on concurrent signing sessions (§6.2).
 * - Partially blind RSA (§6.5): no session, one ticket.issue request; the relay deducts the
 *   price as it signs. Concurrency would be safe for the relay, but the credit still pays
 *   for one ticket at a time, so the loop stays serial.
 */

/** What the loop needs of the circuit source. */
export interface TicketSource {
  readonly credit: number;
  readonly registered: RegisterResult | null;
  readonly circuit: CircuitClient | null;
  noteSpent(amount: number): void;
}

export interface TicketLoopOptions {
  source: TicketSource;
  wallet: Wallet;
  /** The wallet's key for the relay: its normalised circuit URL (`circuitUrl`). */
  relayUrl: string;
  /** Pause after a failed request, unless the relay asks for longer (default 5 s). */
  retryMs?: number;
  logger?: Logger;
}

export interface TicketLoopEvents {
  /** A ticket is safely in the wallet. */
  ticket: [IssuedTicket];
}

export class TicketLoop extends EventEmitter<TicketLoopEvents> {
  private inFlight: Promise<void> | null = null;
  private resumeAt = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private earned = 0;
  private error: string | null = null;
  /** The credit we believed when the relay said "not enough": wait for more than that. */
  private refused: { circuit: CircuitClient; credit: number } | null = null;
  private readonly log: Logger;

  constructor(private readonly options: TicketLoopOptions) {
    super();
    this.log = options.logger ?? silentLogger;
  }

  /** Tickets stored in this run. */
  get tickets(): number {
    return this.earned;
  }

  /** The last request's failure, null once one succeeds. */
  get lastError(): string | null {
    return this.error;
  }

  /** Credit or the circuit changed: request a ticket if one is due and none is in flight. */
  poke(): void {
    if (this.closed || this.inFlight || !this.due()) return;
    const wait = this.resumeAt - Date.now();
    if (wait > 0) {
      this.retryTimer ??= setTimeout(() => {
        this.retryTimer = undefined;
        this.poke();
      }, wait).unref();
      return;
    }
    // Set before the first await: a credit event arriving meanwhile finds the request busy.
    this.inFlight = this.requestOne().finally(() => {
      this.inFlight = null;
      // More credit may have come during the session (a burst of shares).
      this.poke();
    });
  }

  /** No new request; resolves once the one in flight (if any) has ended. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retryTimer);
    await this.inFlight;
  }

  private due(): boolean {
    const { source } = this.options;
    const terms = source.registered?.ticket;
    if (!terms || !source.circuit || source.credit < terms.price) return false;
    const { refused } = this;
    return !refused || refused.circuit !== source.circuit || source.credit > refused.credit;
  }

  private async requestOne(): Promise<void> {
    const { source, wallet } = this.options;
    const terms = source.registered?.ticket;
    const circuit = source.circuit;
    if (!terms || !circuit) return;
    try {
      const issued = await new TicketClient(terms).obtain(circuit, () =>
        source.noteSpent(terms.price),
      );
      // Durable before anything else learns of it (status line, log, counters).
      wallet.add(this.options.relayUrl, issued, Date.now() / 1000);
      this.earned += 1;
      this.error = null;
      this.refused = null;
      this.emit('ticket', issued);
      this.log.info({ day: issued.day }, 'ticket stored in the wallet');
    } catch (err) {
      if (err instanceof RpcError && err.code === RpcErrorCode.notEnoughCredit) {
        // Our view of the credit ran ahead of the relay's: wait for the next share.
        this.refused = { circuit, credit: source.credit };
        this.log.debug('not enough credit yet');
        return;
      }
      const retryAfter = err instanceof RpcError ? err.retryAfter : undefined;
      this.resumeAt =
        Date.now() + Math.max(this.options.retryMs ?? 5_000, (retryAfter ?? 0) * 1000);
      const message = (err as Error).message;
      if (message !== this.error) this.log.warn({ err: message }, 'ticket request failed');
      this.error = message;
    }
  }
}
