import type { TicketIssueParams, TicketIssueResult, TicketTerms } from '../protocol/messages.js';
import type { CreditAccount, FinishedSession, OpenedSession } from './issuer.js';

/**
 * Everything the circuit connector needs from the ticket side, in the words of the circuit
 * protocol (docs/design.md §5). The relay assembles it from the key store, issuer and redeemer.
 */
export interface TicketService {
  /** Terms handed out at mining.register for ticket-mode circuits; null if not issuing. */
  terms(): TicketTerms | null;
  /** Abe–Okamoto (scheme "ao"): ticket.open / ticket.finish. */
  open(account: CreditAccount): Promise<OpenedSession>;
  finish(account: CreditAccount, session: string, e: string): FinishedSession;
  /** Partially blind RSA (scheme "rsa"): ticket.issue, one request. */
  issue(account: CreditAccount, params: TicketIssueParams): Promise<TicketIssueResult>;
  /** Verify, mark spent, grant. Throws RpcError 30–32/35. */
  redeem(
    ticket: string,
    grant?: string,
  ): Promise<{ token: string; class: string; expiresAt: number }>;
  circuitClosed(account: CreditAccount): void;
}
