import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { HtbShaper } from '../../src/qos/htb-shaper.js';
import { GrantBook, grantId } from '../../src/tickets/grant-book.js';

/** Grants and the tickets that count for their group: those paid in the current window. */

const WINDOW = 600;

describe('GrantBook tickets per window', () => {
  it('counts each ticket for one window from its top-up, then lets it lapse', () => {
    const book = new GrantBook();
    book.add('g', { expiresAt: WINDOW, tickets: 1 }, 0);
    expect(book.topUp('g', 100 + WINDOW, 100)).toEqual({ expiresAt: 700, tickets: 2 });
    book.topUp('g', 200 + WINDOW, 200);
    expect(book.topUp('g', 300 + WINDOW, 300)).toEqual({ expiresAt: 900, tickets: 4 });
    expect(book.lookup('g', 599)).toEqual({ expiresAt: 900, tickets: 4 });
    expect(book.lookup('g', 600)).toEqual({ expiresAt: 900, tickets: 3 });
    expect(book.lookup('g', 850)).toEqual({ expiresAt: 900, tickets: 1 });
    expect(book.lookup('g', 900)).toBeUndefined();
    expect(book.size).toBe(0);
  });

  it('a grant kept alive with one ticket per window never adds up to a higher count', () => {
    const book = new GrantBook();
    book.add('g', { expiresAt: WINDOW, tickets: 1 }, 0);
    let most = 0;
    // Renewed 10 s before each ticket lapses, for ten windows.
    for (let now = WINDOW - 10; now < 10 * WINDOW; now += WINDOW - 10) {
      most = Math.max(most, book.topUp('g', now + WINDOW, now)?.tickets ?? 0);
      expect(book.lookup('g', now + 10)?.tickets).toBe(1);
    }
    expect(most).toBe(2);
  });

  it('tops up only a live grant, and keeps the book in expiry order', () => {
    const book = new GrantBook();
    expect(book.topUp('nobody', WINDOW, 0)).toBeUndefined();
    expect(book.size).toBe(0);
    book.add('a', { expiresAt: 600, tickets: 1 }, 0);
    book.add('b', { expiresAt: 650, tickets: 1 }, 50);
    expect(book.topUp('a', 700, 100)?.tickets).toBe(2);
    // 'b' now expires first: a new grant trims it from the front and stops at 'a'.
    book.add('c', { expiresAt: 1260, tickets: 1 }, 660);
    expect(book.size).toBe(2);
    expect(book.lookup('a', 660)).toEqual({ expiresAt: 700, tickets: 1 });
    expect(book.topUp('a', 1300, 700)).toBeUndefined();
    expect(book.lookup('a', 700)).toBeUndefined();
  });

  it("moves a grant's streams up to group1 for the window of its top-ups, then back", () => {
    const book = new GrantBook();
    const shaper = new HtbShaper();
    const leaf = (now: number) => shaper.classify(book.lookup('g', now) ?? null);
    book.add('g', { expiresAt: WINDOW, tickets: 1 }, 0);
    expect(leaf(0)).toBe('group4');
    for (const now of [10, 20, 30]) book.topUp('g', now + WINDOW, now);
    expect(leaf(30)).toBe('group1');
    expect(leaf(WINDOW)).toBe('group4'); // the first ticket lapsed: 3 left
    expect(leaf(WINDOW + 30)).toBe('free');
    shaper.close();
  });
});

describe('GrantBook by grant id', () => {
  it('keys grants by the SHA-256 of the token, which find looks up', () => {
    const book = new GrantBook();
    book.add('tok', { expiresAt: WINDOW, tickets: 1 }, 0);
    expect(grantId('tok')).toBe(createHash('sha256').update('tok').digest('base64url'));
    expect(book.find(grantId('tok'), 0)).toEqual({ expiresAt: WINDOW, tickets: 1 });
    // The token itself is not a key.
    expect(book.find('tok', 0)).toBeUndefined();
    expect(book.lookup(grantId('tok'), 0)).toBeUndefined();
  });

  it('restores a grant from its runs, dropping those that lapsed', () => {
    const book = new GrantBook();
    const runs = [
      { until: 700, count: 2 },
      { until: 100, count: 1 },
      { until: 650, count: 1 },
    ];
    expect(book.restore(grantId('g'), runs, 100)).toBe(true);
    expect(book.lookup('g', 100)).toEqual({ expiresAt: 700, tickets: 3 });
    expect(book.lookup('g', 650)).toEqual({ expiresAt: 700, tickets: 2 });
    expect(book.restore(grantId('gone'), [{ until: 100, count: 1 }], 100)).toBe(false);
    expect(book.size).toBe(1);
    expect(() => book.restore(grantId('g'), runs, 100)).toThrow(/twice/);
  });

  it("adopts a grant as the family's database holds it, replacing what it knew", () => {
    const book = new GrantBook();
    book.add('g', { expiresAt: 600, tickets: 1 }, 0);
    // Another instance topped it up: the database holds both tickets.
    const stored = [
      { until: 600, count: 1 },
      { until: 900, count: 1 },
    ];
    expect(book.adopt(grantId('g'), stored, 300)).toBe(true);
    expect(book.lookup('g', 300)).toEqual({ expiresAt: 900, tickets: 2 });
    // Nothing stored that still counts: the grant is gone here too.
    expect(book.adopt(grantId('g'), [{ until: 900, count: 1 }], 900)).toBe(false);
    expect(book.lookup('g', 300)).toBeUndefined();
    // Adopted late, out of expiry order: still found, and swept once it lapses.
    book.add('late', { expiresAt: 2_000, tickets: 1 }, 1_000);
    expect(book.adopt(grantId('early'), [{ until: 1_500, count: 1 }], 1_000)).toBe(true);
    expect(book.lookup('early', 1_400)).toEqual({ expiresAt: 1_500, tickets: 1 });
    expect(book.sweep(1_600)).toBe(1);
    expect(book.lookup('late', 1_600)).toEqual({ expiresAt: 2_000, tickets: 1 });
  });
});
