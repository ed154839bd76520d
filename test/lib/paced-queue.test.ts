import { describe, expect, it } from 'vitest';
import { PacedQueue } from '../../src/lib/paced-queue.js';

/** A clock and timers the test moves by hand. */
function manualTime() {
  let now = 1_000_000;
  let pending: { at: number; run: () => void } | null = null;
  return {
    clock: () => now,
    timers: {
      set: (run: () => void, ms: number) => {
        pending = { at: now + ms, run };
        return pending;
      },
      clear: () => {
        pending = null;
      },
    },
    /** Move the clock on and fire the timer if it came due. */
    advance(ms: number) {
      now += ms;
      const due = pending;
      if (due && due.at <= now) {
        pending = null;
        due.run();
      }
    },
    scheduled: () => pending !== null,
  };
}

describe('PacedQueue', () => {
  it('admits a burst at once, then one sender per unit in arrival order', () => {
    const time = manualTime();
    const pace = new PacedQueue({ perSecond: 10, clock: time.clock, timers: time.timers });
    expect(Array.from({ length: 12 }, () => pace.tryNow())).toEqual([
      ...Array<boolean>(10).fill(true),
      false,
      false,
    ]);
    const ran: string[] = [];
    for (const name of ['a', 'b', 'c']) pace.enqueue(() => ran.push(name));
    expect(pace.queued).toBe(3);
    time.advance(100); // one unit
    expect(ran).toEqual(['a']);
    time.advance(200); // two more
    expect(ran).toEqual(['a', 'b', 'c']);
    expect(time.scheduled()).toBe(false);
  });

  it('lets nobody overtake the queue, even with a unit free', () => {
    const time = manualTime();
    const pace = new PacedQueue({ perSecond: 1, clock: time.clock, timers: time.timers });
    expect(pace.tryNow()).toBe(true);
    const ran: string[] = [];
    pace.enqueue(() => ran.push('first'));
    time.advance(999);
    expect(ran).toEqual([]);
    time.advance(1);
    expect(ran).toEqual(['first']);
    pace.enqueue(() => ran.push('second'));
    time.advance(1_000);
    expect(ran).toEqual(['first', 'second']);
    pace.enqueue(() => ran.push('third'));
    // A unit has come due by now, but 'third' came first.
    time.advance(500);
    expect(pace.tryNow()).toBe(false);
  });

  it('skips a cancelled sender without spending its unit', () => {
    const time = manualTime();
    const pace = new PacedQueue({
      perSecond: 10,
      burstSeconds: 0.1,
      clock: time.clock,
      timers: time.timers,
    });
    expect(pace.tryNow()).toBe(true);
    const ran: string[] = [];
    const cancel = pace.enqueue(() => ran.push('gone'));
    pace.enqueue(() => ran.push('stays'));
    cancel();
    time.advance(100);
    expect(ran).toEqual(['stays']);
    expect(pace.queued).toBe(0);
  });

  it('drops every sender on close', () => {
    const time = manualTime();
    const pace = new PacedQueue({ perSecond: 1, clock: time.clock, timers: time.timers });
    pace.tryNow();
    const ran: string[] = [];
    pace.enqueue(() => ran.push('x'));
    pace.close();
    time.advance(5_000);
    expect(ran).toEqual([]);
    expect(pace.queued).toBe(0);
  });
});
