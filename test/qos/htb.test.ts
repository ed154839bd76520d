import { describe, expect, it } from 'vitest';
import { Bucket } from '../../src/qos/htb-bucket.js';
import { LeafQueue } from '../../src/qos/htb-queue.js';
import {
  DEFAULT_LIMIT,
  Htb,
  HtbConfigError,
  mbit,
  parseHtbConfig,
  parseRate,
  toMbit,
} from '../../src/qos/htb.js';
import type { ClassInput } from '../../src/qos/htb.js';

const root: ClassInput = { name: 'root', rate: '10mbit' };

function configError(classes: unknown[]): string {
  try {
    parseHtbConfig({ classes });
  } catch (e) {
    expect(e).toBeInstanceOf(HtbConfigError);
    return (e as Error).message;
  }
  throw new Error('expected a config error');
}

describe('rates', () => {
  it('parses tc-style units (bits for *bit, bytes for *bps) into bytes/s', () => {
    expect(parseRate('10mbit')).toBe(1_250_000);
    expect(parseRate('800kbit')).toBe(100_000);
    expect(parseRate('1.5mbit')).toBe(187_500);
    expect(parseRate('1gbit')).toBe(125_000_000);
    expect(parseRate('125000bps')).toBe(125_000);
    expect(parseRate('2kbps')).toBe(2000);
    expect(parseRate(4242)).toBe(4242);
    expect(mbit(8)).toBe(1_000_000);
    expect(toMbit(1_250_000)).toBe(10);
  });
  it('rejects unknown units', () => {
    expect(() => parseRate('10 furlongs')).toThrow(/bad rate "10 furlongs"/);
    expect(() => parseRate('fast')).toThrow(HtbConfigError);
  });
});

describe('parseHtbConfig', () => {
  it('fills in sch_htb/tc defaults', () => {
    const spec = parseHtbConfig({
      classes: [
        root,
        { name: 'big', parent: 'root', rate: '100mbit' },
        { name: 'mid', parent: 'root', rate: '4mbit', ceil: '10mbit', prio: 2 },
        { name: 'tiny', parent: 'root', rate: 5000 },
      ],
    });
    const [r, big, mid, tiny] = spec.classes;
    expect(r?.parent).toBeNull();
    expect(mid).toMatchObject({ rate: 500_000, ceil: 1_250_000, prio: 2, quantum: 50_000 });
    expect(mid?.burst).toBe(Math.ceil(500 + 1600));
    expect(mid?.cburst).toBe(Math.ceil(1250 + 1600));
    expect(tiny).toMatchObject({ ceil: 5000, prio: 0, quantum: 1000, limit: DEFAULT_LIMIT });
    expect(big?.quantum).toBe(200_000);
  });

  it('orders parents before children whatever the input order', () => {
    const spec = parseHtbConfig({
      classes: [
        { name: 'leaf', parent: 'mid', rate: 100 },
        { name: 'mid', parent: 'root', rate: 1000 },
        { name: 'root', rate: 1000 },
      ],
    });
    expect(spec.classes.map((c) => c.name)).toEqual(['root', 'mid', 'leaf']);
  });

  it('warns (not fails) when children are promised more than the parent has', () => {
    const spec = parseHtbConfig({
      classes: [
        root,
        { name: 'a', parent: 'root', rate: '6mbit' },
        { name: 'b', parent: 'root', rate: '6mbit', ceil: '20mbit' },
      ],
    });
    expect(spec.warnings).toEqual([
      expect.stringMatching(
        /class "root": children's rates add up to 1500000 B\/s, more than its rate 1250000/,
      ),
      expect.stringMatching(/class "b": ceil above its parent's ceil "root"/),
    ]);
  });

  it('warns about leaf-only fields on inner classes', () => {
    const spec = parseHtbConfig({
      classes: [
        { ...root, prio: 3 },
        { name: 'a', parent: 'root', rate: 1000 },
      ],
    });
    expect(spec.warnings).toEqual(['class "root": prio is ignored on an inner class']);
  });

  it('names the class and the problem', () => {
    expect(configError([{ name: 'free', rate: '4mbit', ceil: '2mbit' }])).toBe(
      'class "free": ceil (250000 B/s) below rate (500000 B/s)',
    );
    expect(configError([root, { name: 'x', parent: 'root', rate: 1, prio: 8 }])).toMatch(
      /class "x": prio must be an integer in \[0, 7\]/,
    );
    expect(configError([root, { name: 'x', parent: 'root', rate: 1, prio: 1.5 }])).toMatch(
      /class "x": prio/,
    );
    expect(configError([root, { name: 'root', parent: 'root', rate: 1 }])).toMatch(
      /class "root": is its own parent/,
    );
    expect(
      configError([
        root,
        { name: 'a', parent: 'root', rate: 1 },
        { name: 'a', parent: 'root', rate: 2 },
      ]),
    ).toBe('class "a": duplicate name');
    expect(configError([root, { name: 'other', rate: 1 }])).toBe(
      'need exactly one root (class without parent), found 2: "root", "other"',
    );
    expect(
      configError([
        { name: 'a', parent: 'b', rate: 1 },
        { name: 'b', parent: 'a', rate: 1 },
      ]),
    ).toMatch(/found 0/);
    expect(
      configError([root, { name: 'a', parent: 'b', rate: 1 }, { name: 'b', parent: 'a', rate: 1 }]),
    ).toBe('class "a": not under the root (parent cycle)');
    expect(configError([root, { name: 'a', parent: 'nope', rate: 1 }])).toBe(
      'class "a": unknown parent "nope"',
    );
    expect(configError([root, { name: 'a', parent: 'root' }])).toBe('class "a": needs a rate');
    expect(configError([root, { name: 'a', parent: 'root', rate: 0 }])).toBe(
      'class "a": rate must be > 0',
    );
    expect(configError([root, { name: 'a', parent: 'root', rate: '3 parsecs' }])).toMatch(
      /class "a": bad rate/,
    );
    expect(configError([root, { name: 'a', parent: 'root', rate: 1, colour: 'red' }])).toBe(
      'class "a": unknown field "colour"',
    );
    expect(configError([root, { name: 'a', parent: 'root', rate: 1, burst: -1 }])).toMatch(
      /class "a": burst/,
    );
    expect(configError([root, { rate: 1 }])).toBe('classes[1]: needs a non-empty string "name"');
    expect(configError([root, 7])).toBe('classes[1]: not an object');
    expect(() => parseHtbConfig({ classes: [] })).toThrow(/non-empty "classes"/);
    expect(() => parseHtbConfig(null)).toThrow(HtbConfigError);
    expect(() => parseHtbConfig({ classes: [root], r2q: 0 })).toThrow(/r2q/);
  });

  it('allows at most 8 levels (TC_HTB_MAXDEPTH)', () => {
    const chain = (n: number): ClassInput[] =>
      Array.from({ length: n }, (_, i) => ({
        name: `c${i}`,
        rate: 1000,
        ...(i > 0 ? { parent: `c${i - 1}` } : {}),
      }));
    expect(parseHtbConfig({ classes: chain(8) }).classes).toHaveLength(8);
    expect(configError(chain(9))).toBe('class "c8": tree deeper than 8 levels');
    expect(new Htb(parseHtbConfig({ classes: chain(8) })).leafNames).toEqual(['c7']);
  });
});

describe('Bucket (time credit)', () => {
  it('starts full, refills one second per second up to burst/rate, charges len/rate', () => {
    const b = new Bucket(1000, 500); // cap 0.5 s
    expect(b.credit(0)).toBe(0.5);
    b.charge(800, 10); // 0.5 − 0.8
    expect(b.credit(10)).toBeCloseTo(-0.3, 12);
    expect(b.zeroAt).toBeCloseTo(10.3, 12);
    expect(b.credit(10.1)).toBeCloseTo(-0.2, 12);
    expect(b.credit(11)).toBe(0.5);
  });
  it('floors debt at 60 s like sch_htb mbuffer', () => {
    const b = new Bucket(1, 1);
    b.charge(1000, 0);
    expect(b.credit(0)).toBe(-60);
  });
});

describe('LeafQueue', () => {
  it('is a FIFO bounded in bytes', () => {
    const q = new LeafQueue<number>(3000);
    expect(q.push({ bytes: 1500, ref: 1 })).toBe(true);
    expect(q.push({ bytes: 1500, ref: 2 })).toBe(true);
    expect(q.push({ bytes: 1, ref: 3 })).toBe(false);
    expect(q.bytes).toBe(3000);
    expect(q.shift()?.ref).toBe(1);
    expect(q.push({ bytes: 1, ref: 3 })).toBe(true);
    expect([q.shift()?.ref, q.shift()?.ref, q.shift()]).toEqual([2, 3, undefined]);
    expect(q.bytes).toBe(0);
  });
  it('keeps order across compaction', () => {
    const q = new LeafQueue<number>(1e9);
    const out: number[] = [];
    for (let i = 0; i < 1000; i++) {
      q.push({ bytes: 1, ref: i });
      if (i % 3 === 0) out.push(q.shift()?.ref as number);
    }
    while (q.length > 0) out.push(q.shift()?.ref as number);
    expect(out).toEqual(Array.from({ length: 1000 }, (_, i) => i));
  });
});

/** root 1000 B/s; a 400/1000 prio 0 (cburst 3000) and b 400/600 prio 1; bursts 1000 bytes. */
function small(): Htb<string> {
  return Htb.fromConfig<string>({
    classes: [
      { name: 'root', rate: 1000, burst: 1000, cburst: 1000 },
      {
        name: 'a',
        parent: 'root',
        rate: 400,
        ceil: 1000,
        burst: 1000,
        cburst: 3000,
        prio: 0,
        limit: 3000,
      },
      {
        name: 'b',
        parent: 'root',
        rate: 400,
        ceil: 600,
        burst: 1000,
        cburst: 1000,
        prio: 1,
        limit: 3000,
      },
    ],
  });
}

describe('Htb', () => {
  it('rejects packets for unknown or inner classes, bad lengths, and beyond the byte limit', () => {
    const h = small();
    expect(() => h.enqueue('nope', { bytes: 1, ref: 'x' })).toThrow(/no class "nope"/);
    expect(() => h.enqueue('root', { bytes: 1, ref: 'x' })).toThrow(/"root" is not a leaf/);
    expect(() => h.enqueue('a', { bytes: 0, ref: 'x' })).toThrow(/not a positive number/);
    expect(() => h.enqueue('a', { bytes: 4000, ref: 'x' })).toThrow(
      /can never fit class "a" \(limit 3000\)/,
    );
    expect(h.enqueue('a', { bytes: 2000, ref: 'x' })).toBe(true);
    expect(h.enqueue('a', { bytes: 1001, ref: 'y' })).toBe(false);
    expect(h.enqueue('a', { bytes: 1000, ref: 'y' })).toBe(true);
    expect(h.queuedBytes('a')).toBe(3000);
    expect(h.stats('a', 0)).toMatchObject({ refused: 1, queuedBytes: 3000, queuedPackets: 2 });
    expect(h.stats('root', 0)).toMatchObject({ queuedBytes: 3000, queuedPackets: 2 });
    expect(h.backlog).toBe(2);
  });

  it('returns null and no event when idle', () => {
    const h = small();
    expect(h.dequeue(0)).toBeNull();
    expect(h.nextEventTime(0)).toBeNull();
  });

  it('walks CAN_SEND → MAY_BORROW → CANT_SEND and wakes exactly at the bucket zero time', () => {
    const h = small();
    for (let i = 0; i < 3; i++) h.enqueue('b', { bytes: 1000, ref: `b${i}` });
    expect(h.stats('b', 0)).toMatchObject({ mode: 'CAN_SEND', tokens: 2.5, ctokens: 1000 / 600 });
    // Level 0: b's own tokens (2.5 s) pay 1000/400 = 2.5 s.
    expect(h.dequeue(0)?.ref).toBe('b0');
    expect(h.stats('b', 0).mode).toBe('CAN_SEND'); // tokens exactly 0
    // Still level 0; now tokens −2.5 s and ctokens 1000/600 − 2·1000/600 < 0.
    expect(h.dequeue(0)?.ref).toBe('b1');
    expect(h.stats('b', 0)).toMatchObject({ mode: 'CANT_SEND', bytesBorrowed: 0 });
    expect(h.dequeue(0)).toBeNull();
    const wake = h.nextEventTime(0) as number;
    expect(wake).toBeCloseTo(1000 / 600, 12);
    expect(h.dequeue(wake - 1e-9)).toBeNull();
    // ctokens back to 0 but tokens still negative: MAY_BORROW, root CAN_SEND → level 7.
    expect(h.stats('b', wake).mode).toBe('MAY_BORROW');
    expect(h.dequeue(wake)?.ref).toBe('b2');
    expect(h.stats('b', wake)).toMatchObject({
      bytesBorrowed: 1000,
      bytesSent: 3000,
      packetsSent: 3,
    });
    expect(h.stats('root', wake)).toMatchObject({
      bytesLent: 1000,
      bytesSent: 3000,
      bytesBorrowed: 0,
    });
    expect(h.nextEventTime(wake)).toBeNull();
  });

  it('serves a lower level first, then the lower prio, and borrowers only while the lender can send', () => {
    const h = small();
    for (let i = 0; i < 3; i++) {
      h.enqueue('a', { bytes: 1000, ref: `a${i}` });
      h.enqueue('b', { bytes: 1000, ref: `b${i}` });
    }
    // Both CAN_SEND at level 0: prio 0 (a) first, then a again while a has tokens.
    expect(h.dequeue(0)?.ref).toBe('a0'); // a tokens 2.5 → 0
    expect(h.dequeue(0)?.ref).toBe('a1'); // tokens 0 is CAN_SEND; a now −2.5, MAY_BORROW
    expect(h.stats('a', 0).mode).toBe('MAY_BORROW');
    // a could only borrow from root, which has spent its tokens: b (level 0) wins despite prio.
    expect(h.dequeue(0)?.ref).toBe('b0');
    // b: tokens and ctokens exactly 0 → still CAN_SEND at level 0.
    expect(h.dequeue(0)?.ref).toBe('b1');
    // Root has paid 4000 bytes at 1000 B/s (tokens and ctokens 1 − 4 = −3 s): no lender.
    expect(h.stats('root', 0).mode).toBe('CANT_SEND');
    expect(h.dequeue(0)).toBeNull();
    // a's tokens are back at t = 2.5 (level 0); the root only at t = 3.
    expect(h.nextEventTime(0)).toBeCloseTo(2.5, 12);
    expect(h.dequeue(2.5)?.ref).toBe('a2');
  });

  it('estimates the send rate over its window', () => {
    const h = Htb.fromConfig<number>({ classes: [{ name: 'only', rate: 1000, burst: 100 }] });
    let t = 0;
    for (let i = 0; i < 1000; i++) {
      h.enqueue('only', { bytes: 100, ref: i });
      t = h.nextEventTime(t) as number;
      expect(h.dequeue(t)?.ref).toBe(i);
    }
    expect(t).toBeCloseTo(99.8, 6); // the first 100 bytes went on the full bucket
    expect(h.stats('only', t).rate).toBeGreaterThan(900);
    expect(h.stats('only', t).rate).toBeLessThan(1100); // includes the last packet's impulse
    expect(h.stats('only', t + 10).rate).toBeLessThan(1);
    expect(h.allStats(t).map((s) => s.name)).toEqual(['only']);
  });

  it('exposes config warnings and leaf names', () => {
    const h = Htb.fromConfig({ classes: [root, { name: 'x', parent: 'root', rate: '20mbit' }] });
    expect(h.leafNames).toEqual(['x']);
    expect(h.warnings).toHaveLength(2); // rates and ceil both above the root's
  });
});
