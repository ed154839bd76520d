import type { TicketTerms } from '../protocol/messages.js';
import { DescriptorError, type SignedDescriptor } from '../tickets/descriptor.js';
import { KeyPin, type PinnedKey, PinError } from '../tickets/key-pin.js';
import type { PageStore } from './page-store.js';

/**
 * The relay's signed descriptor as the page pins it, with the CLI's own pin
 * (src/tickets/key-pin.ts, docs/design.md §6.4). The CLI pins the identity the user gives
 * (--relay-identity); the page has no such flag, so it pins the identity of the first
 * descriptor it sees on this origin and shows it, for the user to compare with what the
 * operator publishes. From then on every descriptor must verify under that identity and
 * agree with the keys seen before, and a ticket key offered at register must be listed for
 * its day: what the CLI refuses, the page refuses, with the CLI's reason.
 */

export class RelayRefused extends Error {
  override name = 'RelayRefused';
}

const MAX_DESCRIPTOR_BYTES = 64 * 1024;

async function fetchDescriptor(): Promise<unknown> {
  // Same origin, no credentials, never cached: the pin must see what the relay serves now.
  const response = await fetch('/v1/descriptor', { cache: 'no-store', credentials: 'omit' });
  if (!response.ok) throw new Error(`descriptor: HTTP ${response.status} from the relay`);
  const text = await response.text();
  if (text.length > MAX_DESCRIPTOR_BYTES) throw new Error('descriptor: larger than 64 KiB');
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new Error('descriptor: not JSON');
  }
}

function identityOf(json: unknown): string | null {
  if (typeof json !== 'object' || json === null || !('identity' in json)) return null;
  return typeof json.identity === 'string' ? json.identity : null;
}

export class PageRelay {
  private constructor(
    private readonly store: PageStore,
    private readonly pin: KeyPin,
    private latest: SignedDescriptor,
  ) {}

  /**
   * Fetch the descriptor and check it against the pin kept on this origin (or start one).
   * Throws RelayRefused with the reason when the CLI would refuse it; a plain Error when the
   * descriptor cannot be had at all.
   */
  static async load(store: PageStore, nowSeconds: number): Promise<PageRelay> {
    const json = await fetchDescriptor();
    const saved = await store.pin();
    let pin: KeyPin;
    if (saved === undefined) {
      const identity = identityOf(json);
      if (identity === null) throw new RelayRefused('the relay sent a descriptor without identity');
      pin = new KeyPin(identity.toLowerCase());
    } else {
      try {
        pin = KeyPin.fromJSON(saved);
      } catch {
        throw new RelayRefused('the pinned relay keys kept in this browser are unreadable');
      }
    }
    const descriptor = accept(pin, json, nowSeconds);
    await store.savePin(pin.toJSON());
    return new PageRelay(store, pin, descriptor);
  }

  get identity(): string {
    return this.pin.identity;
  }

  get descriptor(): SignedDescriptor {
    return this.latest;
  }

  /** The keys pinned so far (what an export carries, and what an import is checked against). */
  keys(): PinnedKey[] {
    return this.pin.pinned();
  }

  /**
   * The register's ticket terms must offer a key the signed descriptor lists for that day;
   * an unknown key sends the page for the descriptor once more (the relay may have rotated).
   */
  async admit(terms: TicketTerms, nowSeconds: number): Promise<PinnedKey> {
    const offer = {
      keyId: terms.keyId,
      publicKey: terms.publicKey,
      day: terms.day,
      scheme: terms.scheme,
    };
    try {
      return this.pin.check(offer);
    } catch (err) {
      if (!(err instanceof PinError)) throw err;
    }
    this.latest = accept(this.pin, await fetchDescriptor(), nowSeconds);
    await this.store.savePin(this.pin.toJSON());
    try {
      return this.pin.check(offer);
    } catch (err) {
      throw new RelayRefused(
        `${err instanceof Error ? err.message : String(err)}; not mining for tickets that ` +
          `could single you out: tell the relay's operator, or switch on donate`,
      );
    }
  }
}

/** Verify under the pinned identity and pin the keys, or say why not as the CLI would. */
function accept(pin: KeyPin, json: unknown, nowSeconds: number): SignedDescriptor {
  try {
    return pin.accept(json, nowSeconds);
  } catch (err) {
    if (err instanceof PinError) {
      throw new RelayRefused(
        `the relay's descriptor contradicts what it signed before: ${err.message}`,
      );
    }
    if (err instanceof DescriptorError) {
      const offered = identityOf(json);
      if (offered !== null && offered.toLowerCase() !== pin.identity) {
        throw new RelayRefused(
          `the relay's identity changed: this browser pinned ${pin.identity}, the descriptor ` +
            `is signed by ${offered}; no tickets from it until you check with its operator`,
        );
      }
      throw new RelayRefused(`the relay's descriptor does not verify: ${err.message}`);
    }
    throw err;
  }
}
