import { formatTicketFile, parseTicketFile } from '../client/ticket-file.js';
import { utcDay } from '../tickets/keyring.js';
import type { PageRelay } from './page-relay.js';
import type { PageStore, StoredTicket } from './page-store.js';
import { importTickets } from './page-tickets.js';

/**
 * The page's ticket wallet as the user sees it: how many tickets are still redeemable and
 * when the next one expires, export to the ticket file the CLI imports
 * (src/client/ticket-file.ts), and import of such a file, each ticket checked. Expired
 * tickets are neither counted nor exported: no relay takes them.
 */

export interface WalletElements {
  count: HTMLElement;
  expiry: HTMLElement;
  text: HTMLTextAreaElement;
  download: HTMLAnchorElement;
  message: HTMLElement;
}

/** A ticket is redeemable on its issue day and the next (docs/design.md §6.3). */
const LAST_DAY_OFFSET = 1;

const dayEnd = (day: number): string =>
  new Date((day + LAST_DAY_OFFSET + 1) * 86_400_000).toISOString().replace('.000Z', 'Z');

export class PageWallet {
  private downloadUrl: string | null = null;

  constructor(
    private readonly store: PageStore,
    private readonly elements: WalletElements,
    /** The relay's circuit URL as the CLI's wallet keys it (ws://<host>/v1/circuit). */
    private readonly relayUrl: string,
  ) {}

  async redeemable(nowSeconds: number): Promise<StoredTicket[]> {
    const oldest = utcDay(nowSeconds) - LAST_DAY_OFFSET;
    return (await this.store.list()).filter((t) => t.day >= oldest);
  }

  async render(nowSeconds: number): Promise<void> {
    const tickets = await this.redeemable(nowSeconds);
    this.elements.count.textContent = String(tickets.length);
    const first = tickets[0];
    this.elements.expiry.textContent = first ? `${dayEnd(first.day)}` : '–';
  }

  /** The redeemable tickets as a ticket file, in the text box and behind a download link. */
  async exportTickets(relay: PageRelay | null, nowSeconds: number): Promise<void> {
    const tickets = await this.redeemable(nowSeconds);
    const used = new Set(tickets.map((t) => t.keyId));
    const text = formatTicketFile({
      relay: this.relayUrl,
      ...(relay ? { identity: relay.identity } : {}),
      keys: (relay?.keys() ?? [])
        .filter((k) => used.has(k.keyId))
        .map(({ keyId, scheme, publicKey, notBeforeDay, notAfterDay }) => ({
          keyId,
          scheme,
          publicKey,
          notBeforeDay,
          notAfterDay,
        })),
      tickets: tickets.map(({ ticket, keyId, day }) => ({ ticket, keyId, day })),
    });
    this.elements.text.value = text;
    if (this.downloadUrl) URL.revokeObjectURL(this.downloadUrl);
    this.downloadUrl = URL.createObjectURL(new Blob([text], { type: 'application/json' }));
    this.elements.download.href = this.downloadUrl;
    this.elements.download.hidden = false;
    this.say(
      `${tickets.length} ticket${tickets.length === 1 ? '' : 's'} exported below. ` +
        'Anyone holding this text can spend them: keep it private.',
    );
  }

  /** Import the ticket file in the text box; says what was taken and what was refused. */
  async importText(relay: PageRelay | null, nowSeconds: number): Promise<void> {
    if (!relay) {
      this.say('Cannot check tickets: the relay’s signed keys are not available.', true);
      return;
    }
    try {
      const checked = await importTickets(
        parseTicketFile(this.elements.text.value),
        relay,
        this.store,
        nowSeconds,
      );
      const taken = checked.filter((c) => c.ok).length;
      const refused = checked.flatMap((c) =>
        c.ok ? [] : [`${c.entry.keyId}/${c.entry.day}: ${c.reason}`],
      );
      this.say(
        `Imported ${taken} ticket${taken === 1 ? '' : 's'}` +
          (refused.length ? `; refused ${refused.length}: ${refused.join('; ')}` : '.'),
        refused.length > 0,
      );
      await this.render(nowSeconds);
    } catch (err) {
      this.say(`Import failed: ${err instanceof Error ? err.message : String(err)}`, true);
    }
  }

  say(text: string, problem = false): void {
    this.elements.message.textContent = text;
    this.elements.message.className = problem ? 'problem' : '';
  }
}
