import { Duplex } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { SlowRefusals } from '../../src/lib/slow-refusals.js';

/** A socket that keeps what is written to it. */
function socket(): { socket: Duplex; written: string[] } {
  const written: string[] = [];
  return {
    socket: new Duplex({
      read() {},
      write(chunk: Buffer, _encoding, done) {
        written.push(chunk.toString());
        done();
      },
    }),
    written,
  };
}

describe('SlowRefusals', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('answers after the delay, at most `max` waiting; beyond that at once', () => {
    const refusals = new SlowRefusals({ delayMs: 1_000, max: 2 });
    const [a, b, c] = [socket(), socket(), socket()];
    refusals.refuse(a.socket, 'no');
    refusals.refuse(b.socket, 'no');
    refusals.refuse(c.socket, 'no');
    expect([a.written, b.written, c.written]).toEqual([[], [], ['no']]);
    expect(refusals.size).toBe(2);
    expect(a.socket.isPaused()).toBe(true);
    vi.advanceTimersByTime(999);
    expect(a.written).toEqual([]);
    vi.advanceTimersByTime(250);
    expect([a.written, b.written]).toEqual([['no'], ['no']]);
    expect(refusals.size).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('skips a socket its peer destroyed, and drops every waiting socket on close', () => {
    const refusals = new SlowRefusals({ delayMs: 1_000, max: 10 });
    const [a, b, c] = [socket(), socket(), socket()];
    refusals.refuse(a.socket, 'later');
    refusals.refuse(b.socket, 'later');
    b.socket.destroy();
    vi.advanceTimersByTime(1_250);
    expect([a.written, b.written]).toEqual([['later'], []]);
    expect(a.socket.isPaused()).toBe(false);
    refusals.refuse(c.socket, 'later');
    refusals.close();
    expect(c.socket.destroyed).toBe(true);
    expect(c.written).toEqual([]);
    expect(refusals.size).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
  });
});
