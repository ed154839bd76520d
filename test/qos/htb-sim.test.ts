import { describe, expect, it } from 'vitest';
import { Htb, mbit, parseHtbConfig, toMbit } from '../../src/qos/htb.js';
import type { ClassInput, HtbSpec } from '../../src/qos/htb.js';
import { DEFAULT_TICKET_GROUPS, groupFor } from '../../src/qos/ticket-groups.js';
import { seededRandom } from '../helpers/seeded-random.js';

/**
 * A virtual link drained by the HTB (docs/design.md §8): the link asks for a packet whenever it is
 * free, each packet occupies it bytes / wire seconds, and when the scheduler has nothing
 * eligible the clock jumps to nextEventTime() or the next arrival. Sources either saturate
 * (their leaf queue never runs dry) or emit packets at a fixed demand rate.
 */

const PACKET = 1500;

interface Source {
  leaf: string;
  /** Bytes per second, or Infinity for a saturating source. */
  demand: number;
}

interface SimResult {
  /** Bytes each leaf sent in [warmup, duration). */
  bytes: Map<string, number>;
  /** Every send: time, leaf, bytes. */
  log: { t: number; leaf: string; bytes: number }[];
  window: number;
}

function simulate(
  htb: Htb<string>,
  sources: Source[],
  opts: { wire: number; duration: number; warmup: number },
): SimResult {
  const bytes = new Map<string, number>(sources.map((s) => [s.leaf, 0]));
  const log: SimResult['log'] = [];
  const arrival = sources.map((s) => (Number.isFinite(s.demand) ? 0 : Number.POSITIVE_INFINITY));
  let t = 0;
  while (t < opts.duration) {
    sources.forEach((s, i) => {
      if (!Number.isFinite(s.demand)) {
        while (htb.queuedBytes(s.leaf) < 2 * PACKET)
          htb.enqueue(s.leaf, { bytes: PACKET, ref: s.leaf });
        return;
      }
      while ((arrival[i] as number) <= t) {
        htb.enqueue(s.leaf, { bytes: PACKET, ref: s.leaf });
        arrival[i] = (arrival[i] as number) + PACKET / s.demand;
      }
    });
    const p = htb.dequeue(t);
    if (p !== null) {
      log.push({ t, leaf: p.ref, bytes: p.bytes });
      if (t >= opts.warmup) bytes.set(p.ref, (bytes.get(p.ref) ?? 0) + p.bytes);
      t += p.bytes / opts.wire;
      continue;
    }
    const next = Math.min(
      htb.nextEventTime(t) ?? Number.POSITIVE_INFINITY,
      ...arrival,
      opts.duration,
    );
    if (!(next > t))
      throw new Error(`simulation stuck at ${t}: nothing sendable but next event ${next}`);
    t = next;
  }
  return { bytes, log, window: opts.duration - opts.warmup };
}

function mbitOf(r: SimResult, leaf: string): number {
  return toMbit((r.bytes.get(leaf) ?? 0) / r.window);
}

/** docs/design.md §8 / the paper's Figure 1, in Mbit/s. */
function figure1(): Htb<string> {
  return Htb.fromConfig<string>({
    classes: [
      { name: 'root', rate: '10mbit' },
      { name: 'free', parent: 'root', rate: '2mbit', ceil: '4mbit', prio: 7 },
      { name: 'paid', parent: 'root', rate: '8mbit', ceil: '10mbit' },
      { name: 'group1', parent: 'paid', rate: '4mbit', ceil: '10mbit', prio: 0 },
      { name: 'group4', parent: 'paid', rate: '1.5mbit', ceil: '10mbit', prio: 3 },
    ],
  });
}

const LINK = { wire: mbit(10), duration: 22, warmup: 2 };
const SAT = Number.POSITIVE_INFINITY;

describe('docs/design.md §8 expected allocations (10 Mbit/s link, within 2%)', () => {
  const cases: [string, Source[], Record<string, number>][] = [
    ['only free', [{ leaf: 'free', demand: SAT }], { free: 4 }],
    [
      'only paid',
      [
        { leaf: 'group1', demand: SAT },
        { leaf: 'group4', demand: SAT },
      ],
      { group1: 8.5, group4: 1.5 },
    ],
    [
      'free demands 1, group1 4.8, group4 1.5',
      [
        { leaf: 'free', demand: mbit(1) },
        { leaf: 'group1', demand: mbit(4.8) },
        { leaf: 'group4', demand: mbit(1.5) },
      ],
      { free: 1, group1: 4.8, group4: 1.5 },
    ],
    [
      'all saturating',
      [
        { leaf: 'free', demand: SAT },
        { leaf: 'group1', demand: SAT },
        { leaf: 'group4', demand: SAT },
      ],
      { free: 2, group1: 6.5, group4: 1.5 },
    ],
  ];
  for (const [name, sources, expected] of cases) {
    it(name, () => {
      const r = simulate(figure1(), sources, LINK);
      for (const [leaf, want] of Object.entries(expected)) {
        const got = mbitOf(r, leaf);
        expect(
          Math.abs(got - want) / want,
          `${leaf}: ${got.toFixed(3)} Mbit/s, want ${want}`,
        ).toBeLessThan(0.02);
      }
    });
  }

  it('only paid: group1 takes paid’s spare, then root’s, by strict prio over group4', () => {
    const htb = figure1();
    simulate(
      htb,
      [
        { leaf: 'group1', demand: SAT },
        { leaf: 'group4', demand: SAT },
      ],
      LINK,
    );
    const s = (n: string) => htb.stats(n, LINK.duration);
    // group4 never borrows: group1 is eligible at every level group4 is, and prio 0 < 3.
    expect(s('group4').bytesBorrowed / s('group4').bytesSent).toBeLessThan(0.01);
    // group1 borrows 4.5 of its 8.5 Mbit/s: 2.5 lent by paid (8 − 5.5) and 2 by root.
    expect(s('group1').bytesBorrowed / s('group1').bytesSent).toBeCloseTo(4.5 / 8.5, 1);
    expect(s('paid').bytesLent / s('root').bytesLent).toBeCloseTo(2.5 / 2, 1);
  });
});

describe('docs/design.md §8 allocations by tickets paid (the default mapping)', () => {
  // Streams of a grant go to the group of its tickets in the window: 1–3 → group4, 4+ → group1.
  const leafFor = (tickets: number): string => groupFor(DEFAULT_TICKET_GROUPS, tickets);
  const paidBusy: Source[] = [
    { leaf: leafFor(2), demand: SAT },
    { leaf: leafFor(5), demand: SAT },
  ];
  const scenarios: [string, Source[], number, number][] = [
    ['both groups busy', paidBusy, 1.5, 8.5],
    ['both groups and free busy', [{ leaf: 'free', demand: SAT }, ...paidBusy], 1.5, 6.5],
  ];
  for (const [name, sources, fewWant, manyWant] of scenarios) {
    it(`${name}: 4+ tickets get ${manyWant} Mbit/s, 1–3 get ${fewWant}, never more`, () => {
      const r = simulate(figure1(), sources, LINK);
      const got = (tickets: number): number => mbitOf(r, leafFor(tickets));
      expect(Math.abs(got(2) - fewWant) / fewWant).toBeLessThan(0.02);
      expect(Math.abs(got(5) - manyWant) / manyWant).toBeLessThan(0.02);
      // With both groups busy, no ticket count gets less than a smaller one.
      for (let fewer = 1; fewer <= 8; fewer++) {
        for (let more = fewer + 1; more <= 8; more++) {
          expect(got(more), `${more} vs ${fewer} tickets`).toBeGreaterThanOrEqual(got(fewer));
        }
      }
    });
  }
});

// --- Property tests on random trees -----------------------------------------------------

/** A random tree under a 10 Mbit/s root with Σ(children's rates) ≤ parent rate everywhere. */
function randomTree(rnd: () => number): ClassInput[] {
  const classes: ClassInput[] = [{ name: 'root', rate: mbit(10) }];
  let n = 0;
  const grow = (parent: string, rate: number, ceil: number, depth: number): void => {
    const kids = 1 + Math.floor(rnd() * 4);
    const weights = Array.from({ length: kids }, () => 0.2 + rnd());
    const total = weights.reduce((a, b) => a + b, 0);
    const share = 0.6 + 0.4 * rnd();
    for (const w of weights) {
      const name = `c${n++}`;
      const r = Math.max(1000, Math.floor((rate * share * w) / total));
      const c = Math.floor(r + rnd() * (ceil - r));
      const inner = depth < 3 && rnd() < 0.35;
      classes.push(
        inner
          ? { name, parent, rate: r, ceil: c }
          : { name, parent, rate: r, ceil: c, prio: Math.floor(rnd() * 8) },
      );
      if (inner) grow(name, r, c, depth + 1);
    }
  };
  grow('root', mbit(10), mbit(10), 1);
  return classes;
}

describe('HTB properties on random trees (fixed seeds)', () => {
  const WINDOWS = [0.05, 0.5];
  for (let seed = 1; seed <= 24; seed++) {
    it(`seed ${seed}: ceils hold over every window, leaves get min(demand, rate)`, () => {
      const rnd = seededRandom(seed);
      const spec: HtbSpec = parseHtbConfig({ classes: randomTree(rnd) });
      expect(spec.warnings).toEqual([]);
      const htb = new Htb<string>(spec);
      const leaves = htb.leafNames;
      const sources = leaves.map((leaf) => {
        const rate = spec.classes.find((c) => c.name === leaf)?.rate as number;
        return { leaf, demand: rnd() < 0.5 ? SAT : rate * (0.2 + 1.3 * rnd()) };
      });
      // A 100 Mbit/s wire: the 10 Mbit/s root is the shaper, so "never oversubscribed" is
      // the root's ceil.
      const opts = { wire: mbit(100), duration: 12, warmup: 2 };
      const r = simulate(htb, sources, opts);

      // Guarantee: every leaf gets at least min(demand, rate).
      for (const s of sources) {
        const rate = spec.classes.find((c) => c.name === s.leaf)?.rate as number;
        // 2% plus one packet: a slow leaf sends only a few packets in the window.
        const got = ((r.bytes.get(s.leaf) ?? 0) + PACKET) / r.window;
        expect(got, `leaf ${s.leaf}`).toBeGreaterThanOrEqual(0.98 * Math.min(s.demand, rate));
      }

      // Ceil: a class's subtree sends at most ceil·W + cburst over any window W. Sends at
      // level 0 do not look at ancestors' ctokens (as in sch_htb), so the bursts of the
      // subtree's own buckets are added, plus one packet sent while ctokens was ≥ 0.
      const parent = new Map(spec.classes.map((c) => [c.name, c.parent]));
      for (const cls of spec.classes) {
        const under = (leaf: string): boolean => {
          for (let c: string | null | undefined = leaf; c; c = parent.get(c))
            if (c === cls.name) return true;
          return false;
        };
        const sub = spec.classes.filter((c) => under(c.name));
        const slack = cls.cburst + sub.reduce((a, c) => a + c.burst, 0) + PACKET;
        const sends = r.log.filter((e) => under(e.leaf));
        for (const w of WINDOWS) {
          const worst = maxInWindow(sends, w);
          expect(worst, `class ${cls.name} over ${w}s`).toBeLessThanOrEqual(cls.ceil * w + slack);
        }
      }
    });
  }
});

/** Most bytes sent in any window [t, t + w) starting at a send. */
function maxInWindow(sends: { t: number; bytes: number }[], w: number): number {
  let best = 0;
  let sum = 0;
  let j = 0;
  for (let i = 0; i < sends.length; i++) {
    const start = (sends[i] as { t: number }).t;
    while (j < sends.length && (sends[j] as { t: number }).t < start + w)
      sum += (sends[j++] as { bytes: number }).bytes;
    best = Math.max(best, sum);
    sum -= (sends[i] as { bytes: number }).bytes;
  }
  return best;
}

describe('sharing spare capacity between borrowers', () => {
  const tree = (a: Partial<ClassInput>, b: Partial<ClassInput>): Htb<string> =>
    Htb.fromConfig<string>({
      classes: [
        { name: 'root', rate: '10mbit' },
        { name: 'p', parent: 'root', rate: '10mbit' },
        { name: 'a', parent: 'p', rate: '0.5mbit', ceil: '10mbit', prio: 1, ...a },
        { name: 'b', parent: 'p', rate: '0.5mbit', ceil: '10mbit', prio: 1, ...b },
      ],
    });
  const both: Source[] = [
    { leaf: 'a', demand: SAT },
    { leaf: 'b', demand: SAT },
  ];

  it('DRR: equal prio borrowers share in proportion to quantum (1:3)', () => {
    const htb = tree({ quantum: 1500 }, { quantum: 4500 });
    const r = simulate(htb, both, LINK);
    expect(mbitOf(r, 'a')).toBeCloseTo(0.5 + 9 / 4, 1);
    expect(mbitOf(r, 'b')).toBeCloseTo(0.5 + (9 * 3) / 4, 1);
    const ratio = htb.stats('b', 22).bytesBorrowed / htb.stats('a', 22).bytesBorrowed;
    expect(Math.abs(ratio - 3) / 3).toBeLessThan(0.02);
  });

  it('DRR: equal default quanta share equally', () => {
    const r = simulate(tree({}, {}), both, LINK);
    expect(Math.abs(mbitOf(r, 'a') - 5) / 5).toBeLessThan(0.02);
    expect(Math.abs(mbitOf(r, 'b') - 5) / 5).toBeLessThan(0.02);
  });

  it('strict prio: the lower prio borrower gets only its rate', () => {
    const r = simulate(tree({ prio: 0 }, { prio: 1 }), both, LINK);
    expect(Math.abs(mbitOf(r, 'a') - 9.5) / 9.5).toBeLessThan(0.02);
    expect(Math.abs(mbitOf(r, 'b') - 0.5) / 0.5).toBeLessThan(0.02);
  });

  it('nearer lender first: a leaf borrows from its parent before a cousin borrows from root', () => {
    // x (prio 0) can only borrow from root; y (prio 7) can borrow from q first (level 6 < 7).
    const htb = Htb.fromConfig<string>({
      classes: [
        { name: 'root', rate: '10mbit' },
        { name: 'x', parent: 'root', rate: '2mbit', ceil: '10mbit', prio: 0 },
        { name: 'q', parent: 'root', rate: '8mbit', ceil: '10mbit' },
        { name: 'y', parent: 'q', rate: '1mbit', ceil: '10mbit', prio: 7 },
      ],
    });
    const r = simulate(
      htb,
      [
        { leaf: 'x', demand: SAT },
        { leaf: 'y', demand: SAT },
      ],
      LINK,
    );
    // y: 1 own + 7 lent by q; x: 2 own; root's 10 is then spent, so x borrows nothing.
    expect(Math.abs(mbitOf(r, 'y') - 8) / 8).toBeLessThan(0.02);
    expect(Math.abs(mbitOf(r, 'x') - 2) / 2).toBeLessThan(0.02);
  });
});
