/**
 * The miner page's wallet in IndexedDB, on the relay's own origin: the tickets the page earned
 * or imported, and the relay's pinned identity and keys (src/tickets/key-pin.ts's saved
 * state). Nothing here is ever sent anywhere; the tickets leave only by the user's export.
 * A ticket is written (the transaction complete) before the page counts or shows it.
 */

export interface StoredTicket {
  /** base64url, the bearer token itself. */
  ticket: string;
  keyId: string;
  day: number;
  /** Unix seconds. */
  receivedAt: number;
}

const DB_NAME = 'powbridge-miner-page';
const DB_VERSION = 1;
const TICKETS = 'tickets';
const SETTINGS = 'settings';
const PIN_KEY = 'pin';

function done<T>(request: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error ?? new Error('IndexedDB request failed'));
  });
}

function committed(tx: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error ?? new Error('IndexedDB transaction failed'));
    tx.onabort = () => reject(tx.error ?? new Error('IndexedDB transaction aborted'));
  });
}

export class PageStore {
  private constructor(private readonly db: IDBDatabase) {}

  static open(): Promise<PageStore> {
    return new Promise((resolve, reject) => {
      const request = indexedDB.open(DB_NAME, DB_VERSION);
      request.onupgradeneeded = () => {
        const db = request.result;
        if (!db.objectStoreNames.contains(TICKETS))
          db.createObjectStore(TICKETS, { keyPath: 'ticket' });
        if (!db.objectStoreNames.contains(SETTINGS)) db.createObjectStore(SETTINGS);
      };
      request.onsuccess = () => resolve(new PageStore(request.result));
      request.onerror = () => reject(request.error ?? new Error('cannot open IndexedDB'));
    });
  }

  /** Add tickets (one already held is left as it is); resolves once durable. */
  async add(tickets: readonly StoredTicket[]): Promise<void> {
    const held = new Set((await this.list()).map((row) => row.ticket));
    // No await between the puts: a transaction left idle for a turn commits on its own.
    const tx = this.db.transaction(TICKETS, 'readwrite', { durability: 'strict' });
    const store = tx.objectStore(TICKETS);
    for (const ticket of tickets) if (!held.has(ticket.ticket)) store.put({ ...ticket });
    await committed(tx);
  }

  async list(): Promise<StoredTicket[]> {
    const tx = this.db.transaction(TICKETS, 'readonly');
    const rows = (await done(tx.objectStore(TICKETS).getAll())) as StoredTicket[];
    return rows.sort((a, b) => a.day - b.day || a.receivedAt - b.receivedAt);
  }

  async pin(): Promise<unknown> {
    const tx = this.db.transaction(SETTINGS, 'readonly');
    return done(tx.objectStore(SETTINGS).get(PIN_KEY));
  }

  async savePin(state: unknown): Promise<void> {
    const tx = this.db.transaction(SETTINGS, 'readwrite', { durability: 'strict' });
    tx.objectStore(SETTINGS).put(state, PIN_KEY);
    await committed(tx);
  }
}
