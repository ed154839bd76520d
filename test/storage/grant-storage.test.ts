import { createHash } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { GrantStorage } from '../../src/storage/grant-storage.js';
import { GrantBook, grantId } from '../../src/tickets/grant-book.js';
import { usePostgres } from '../helpers/postgres.js';
import { postgresEngine, sqliteEngine, type StoreEngine } from '../helpers/store-engines.js';
import { csprng } from '../helpers/ticket-issue.js';

/**
 * Grants in storage (src/storage/grant-storage.ts, docs/design.md §6.3), one suite for both
 * engines: what a restart restores, what it drops, that a write is committed before it
 * resolves, and that only SHA-256 of a token is kept. Every "restart" closes the store and
 * opens it anew.
 */

const WINDOW = 600;
const T0 = 1_800_000_000;

const postgres = usePostgres();

describe.each([sqliteEngine(), postgresEngine(postgres)])('$name grants', (engine: StoreEngine) => {
  beforeEach(() => engine.fresh());
  afterEach(() => engine.closeAll());

  /** Close the store and read its grants back into a new book, as a relay start does. */
  async function restart(
    store: GrantStorage,
    now: number,
  ): Promise<{ store: GrantStorage; book: GrantBook }> {
    await store.close();
    const again = await engine.openGrants();
    const book = new GrantBook();
    await again.restore(book, now);
    return { store: again, book };
  }

  it("loads one grant's live runs, as another instance of a family would", async () => {
    const store = await engine.openGrants();
    await store.record(grantId('token-a'), T0 + WINDOW);
    await store.record(grantId('token-a'), T0 + WINDOW);
    await store.record(grantId('token-a'), T0 + 100 + WINDOW);
    await store.record(grantId('token-b'), T0 + WINDOW);
    const other = await engine.openGrants();
    expect(await other.load(grantId('token-a'), T0 + 10)).toEqual([
      { until: T0 + WINDOW, count: 2 },
      { until: T0 + 100 + WINDOW, count: 1 },
    ]);
    // Lapsed runs are left out; unknown ids and ids that are not one find nothing.
    expect(await other.load(grantId('token-a'), T0 + WINDOW)).toEqual([
      { until: T0 + 100 + WINDOW, count: 1 },
    ]);
    expect(await other.load(grantId('token-c'), T0)).toEqual([]);
    expect(await other.load('not-an-id', T0)).toEqual([]);
  });

  it('a grant survives a restart of the store', async () => {
    const store = await engine.openGrants();
    await store.record(grantId('token-a'), T0 + WINDOW);
    const { book } = await restart(store, T0 + 10);
    expect(book.size).toBe(1);
    expect(book.lookup('token-a', T0 + 10)).toEqual({ expiresAt: T0 + WINDOW, tickets: 1 });
    expect(book.lookup('token-b', T0 + 10)).toBeUndefined();
    expect(book.lookup('token-a', T0 + WINDOW)).toBeUndefined();
  });

  it('top-ups persist: each ticket counts for its own window after a restart', async () => {
    const store = await engine.openGrants();
    const id = grantId('topped');
    await store.record(id, T0 + WINDOW);
    // Two top-ups in the same second merge into one run, as in the book.
    await Promise.all([store.record(id, T0 + 100 + WINDOW), store.record(id, T0 + 100 + WINDOW)]);
    await store.record(id, T0 + 200 + WINDOW);
    expect((await engine.grantRows()).map((r) => r.count)).toEqual([1, 2, 1]);
    const { book } = await restart(store, T0 + 300);
    expect(book.lookup('topped', T0 + 300)).toEqual({ expiresAt: T0 + 800, tickets: 4 });
    expect(book.lookup('topped', T0 + WINDOW)).toEqual({ expiresAt: T0 + 800, tickets: 3 });
    expect(book.lookup('topped', T0 + 750)).toEqual({ expiresAt: T0 + 800, tickets: 1 });
    // A top-up after the restart adds to the restored grant.
    expect(book.topUp('topped', T0 + 750 + WINDOW, T0 + 750)).toEqual({
      expiresAt: T0 + 1_350,
      tickets: 2,
    });
  });

  it('expired grants are not restored and are deleted', async () => {
    const store = await engine.openGrants();
    await store.record(grantId('old'), T0 + 100);
    await store.record(grantId('lapsing'), T0 + 100);
    await store.record(grantId('lapsing'), T0 + 700);
    await store.record(grantId('live'), T0 + 900);
    const { store: again, book } = await restart(store, T0 + 100);
    expect(book.size).toBe(2);
    expect(book.lookup('old', T0 + 100)).toBeUndefined();
    expect(book.lookup('lapsing', T0 + 100)).toEqual({ expiresAt: T0 + 700, tickets: 1 });
    expect(book.lookup('live', T0 + 100)).toEqual({ expiresAt: T0 + 900, tickets: 1 });
    expect((await engine.grantRows()).map((r) => r.until)).toEqual([T0 + 700, T0 + 900]);
    // The relay's minute sweep deletes what lapsed since.
    expect(await again.sweep(T0 + 700)).toBe(1);
    expect(await again.count()).toBe(1);
  });

  it('restores grants in expiry order, so the book still trims from the front', async () => {
    const store = await engine.openGrants();
    await store.record(grantId('late'), T0 + 900);
    await store.record(grantId('early'), T0 + 500);
    const { book } = await restart(store, T0);
    // Adding a grant after 'early' expired trims it; 'late' stays.
    book.add('new', { expiresAt: T0 + 600 + WINDOW, tickets: 1 }, T0 + 600);
    expect(book.size).toBe(2);
    expect(book.lookup('late', T0 + 600)).toBeDefined();
  });

  it('keeps only the SHA-256 of the token', async () => {
    const token = Buffer.from(csprng(32)).toString('base64url');
    const store = await engine.openGrants();
    await store.record(grantId(token), T0 + WINDOW);
    const [row] = await engine.grantRows();
    expect(row?.grantId).toEqual(createHash('sha256').update(token).digest());
  });

  it('commits the writes of one turn together, before any of them resolves', async () => {
    const store = await engine.openGrants();
    const ids = Array.from({ length: 5 }, (_, i) => grantId(`batch-${i}`));
    let resolved = 0;
    const writes = ids.map((id) => store.record(id, T0 + WINDOW).then(() => resolved++));
    expect(resolved).toBe(0);
    await writes[0];
    // Visible to another connection, so committed, by the time the first one resolves.
    expect(await engine.grantRows()).toHaveLength(5);
    await Promise.all(writes);
    expect(resolved).toBe(5);
  });

  it('close commits what is queued', async () => {
    const store = await engine.openGrants();
    const write = store.record(grantId('queued'), T0 + WINDOW);
    await store.close();
    await write;
    expect(await engine.grantRows()).toHaveLength(1);
  });

  it('reports a failed write and still resolves it (the grant lasts until restart)', async () => {
    const errors: unknown[] = [];
    const store = await engine.openGrants((err) => errors.push(err));
    await store.close();
    await expect(store.record(grantId('after-close'), T0 + WINDOW)).resolves.toBeUndefined();
    expect(errors).toHaveLength(1);
  });

  it('refuses a malformed grant id or expiry', async () => {
    const store = await engine.openGrants();
    await expect(store.record('short', T0)).rejects.toThrow(/32 bytes/);
    await expect(store.record(grantId('x'), 1.5)).rejects.toThrow(/unix seconds/);
    expect(await store.count()).toBe(0);
  });
});
