import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type ClassInput,
  type ClassSpec,
  htbClassTreeSchema,
  htbSpec,
  mbit,
} from '../../src/qos/htb-config.js';
import { defaultHtbConfig, HtbShaper } from '../../src/qos/htb-shaper.js';
import {
  DEFAULT_TICKET_GROUPS,
  describeGroups,
  groupFor,
  type TicketGroup,
  ticketGroupProblems,
} from '../../src/qos/ticket-groups.js';
import { parseRelayConfig } from '../../src/relay/config.js';

/**
 * Tickets → HTB groups (docs/design.md §8): the check that a mapping agrees with a class tree
 * (more tickets never buy a lower guaranteed rate or a worse prio), on the design's tree and,
 * as a property, on random trees and mappings against a brute-force oracle.
 */

const minimalNode = {
  source: {
    type: 'node',
    node: { rpcUrl: 'http://127.0.0.1:9332', rpcCookieFile: 'c', payoutAddress: 'addr' },
  },
};

function specOf(classes: readonly ClassInput[]): ClassSpec[] {
  return htbSpec(htbClassTreeSchema.parse(classes)).classes;
}

const figure1: ClassInput[] = [
  { name: 'root', rate: '10mbit' },
  { name: 'free', parent: 'root', rate: '2mbit', ceil: '4mbit', prio: 7 },
  { name: 'paid', parent: 'root', rate: '8mbit', ceil: '10mbit' },
  { name: 'group1', parent: 'paid', rate: '4mbit', ceil: '10mbit', prio: 0 },
  { name: 'group4', parent: 'paid', rate: '1.5mbit', ceil: '10mbit', prio: 3 },
];

describe('the default mapping (docs/design.md §8)', () => {
  it('sends 1–3 tickets to group4 and 4 or more to group1, the top tier', () => {
    expect(DEFAULT_TICKET_GROUPS).toEqual([
      { minTickets: 1, leaf: 'group4' },
      { minTickets: 4, leaf: 'group1' },
    ]);
    expect([0, 1, 2, 3, 4, 5, 100].map((t) => groupFor(DEFAULT_TICKET_GROUPS, t))).toEqual([
      'group4', // a live grant whose tickets no longer count: still paid, the lowest group
      'group4',
      'group4',
      'group4',
      'group1',
      'group1',
      'group1',
    ]);
    expect(describeGroups(DEFAULT_TICKET_GROUPS)).toBe('1+ tickets → "group4", 4+ → "group1"');
  });

  it('agrees with the default tree at any link rate, and with Figure 1', () => {
    for (const link of [1e6, 10e6, 1e9]) {
      const classes = specOf(defaultHtbConfig(link).classes);
      expect(ticketGroupProblems(classes, DEFAULT_TICKET_GROUPS)).toEqual([]);
    }
    expect(ticketGroupProblems(specOf(figure1), DEFAULT_TICKET_GROUPS)).toEqual([]);
  });

  it('refuses the old, inverted mapping, naming both groups', () => {
    const inverted = [
      { minTickets: 1, leaf: 'group1' },
      { minTickets: 4, leaf: 'group4' },
    ];
    expect(ticketGroupProblems(specOf(figure1), inverted)).toEqual([
      {
        group: 1,
        field: 'leaf',
        message:
          '"group4" (4+ tickets) is guaranteed 187500 B/s, less than "group1" (1+ tickets) with ' +
          '500000 B/s: more tickets must never buy a lower guaranteed rate',
      },
      {
        group: 1,
        field: 'leaf',
        message:
          '"group4" (4+ tickets) has prio 3, worse than "group1" (1+ tickets) with prio 0 (lower ' +
          'is served first): more tickets must never buy a worse prio',
      },
    ]);
  });
});

describe('ticketGroupProblems', () => {
  const tree = specOf([
    { name: 'root', rate: '10mbit' },
    { name: 'free', parent: 'root', rate: '2mbit', prio: 7 },
    { name: 'paid', parent: 'root', rate: '8mbit' },
    { name: 'bronze', parent: 'paid', rate: '1mbit', prio: 3 },
    // Promised 5 Mbit/s, but under a class of 1: it can be guaranteed no more than 1.
    { name: 'narrow', parent: 'paid', rate: '1mbit' },
    { name: 'silver', parent: 'narrow', rate: '5mbit', prio: 1 },
    { name: 'gold', parent: 'paid', rate: '4mbit', prio: 0 },
    { name: 'other', parent: 'root', rate: '1mbit' },
  ]);
  const messages = (groups: TicketGroup[]) =>
    ticketGroupProblems(tree, groups).map((p) => `${p.group}.${p.field}: ${p.message}`);

  it('accepts tiers that never go down, equal steps included', () => {
    expect(
      messages([
        { minTickets: 1, leaf: 'bronze' },
        { minTickets: 2, leaf: 'silver' },
        { minTickets: 3, leaf: 'silver' },
        { minTickets: 8, leaf: 'gold' },
      ]),
    ).toEqual([]);
  });

  it("caps a leaf's guarantee by the classes above it", () => {
    expect(
      messages([
        { minTickets: 1, leaf: 'bronze' },
        { minTickets: 2, leaf: 'gold' },
        { minTickets: 3, leaf: 'silver' },
      ]),
    ).toEqual([
      '2.leaf: "silver" (3+ tickets) is guaranteed 125000 B/s, less than "gold" (2+ tickets) ' +
        'with 500000 B/s: more tickets must never buy a lower guaranteed rate',
      '2.leaf: "silver" (3+ tickets) has prio 1, worse than "gold" (2+ tickets) with prio 0 ' +
        '(lower is served first): more tickets must never buy a worse prio',
    ]);
  });

  it('wants existing leaves under "paid", never the free class', () => {
    expect(
      messages([
        { minTickets: 1, leaf: 'nope' },
        { minTickets: 2, leaf: 'narrow' },
        { minTickets: 3, leaf: 'free' },
        { minTickets: 4, leaf: 'other' },
      ]),
    ).toEqual([
      '0.leaf: no class "nope" in the tunnel class tree',
      '1.leaf: "narrow" has children: streams go to leaf classes only',
      '2.leaf: "free" is the class of streams without a grant',
      '3.leaf: "other" is not under "paid": paid groups share the paid class\'s bandwidth',
    ]);
    const flat = specOf([
      { name: 'root', rate: '10mbit' },
      { name: 'free', parent: 'root', rate: '2mbit' },
      { name: 'a', parent: 'root', rate: '2mbit' },
      { name: 'b', parent: 'root', rate: '2mbit' },
    ]);
    expect(
      ticketGroupProblems(flat, [
        { minTickets: 1, leaf: 'a' },
        { minTickets: 2, leaf: 'b' },
      ]).map((p) => p.message),
    ).toEqual(['the tunnel class tree has no "paid" class for the paid groups to sit under']);
  });

  it('wants thresholds from 1 up, strictly increasing, and at least one group', () => {
    expect(
      messages([
        { minTickets: 0, leaf: 'bronze' },
        { minTickets: 2, leaf: 'gold' },
        { minTickets: 2, leaf: 'gold' },
        { minTickets: 1.5, leaf: 'gold' },
      ]),
    ).toEqual([
      '0.minTickets: must be an integer in [1, 1000000]',
      "2.minTickets: 2 is not above the previous group's 2: list the groups by increasing minTickets",
      '3.minTickets: must be an integer in [1, 1000000]',
      "3.minTickets: 1.5 is not above the previous group's 2: list the groups by increasing minTickets",
    ]);
    expect(messages([])).toEqual(['0.leaf: needs at least one group']);
  });
});

// --- Property: the check accepts exactly the mappings that keep the invariant ---------------

const RATES = [1000, 2000, 4000, 8000];
const MAX_DEPTH_HERE = 6;

interface Draft {
  parent: number;
  rate: number;
  prio: number | undefined;
}

/**
 * root → free (a leaf) and a paid side (named "paid", or now and then something else, which
 * the check must refuse), then up to 9 classes hung under the paid side, the root or one
 * another. Rates from a small set so that ties happen; prio sometimes left to its default.
 */
function buildTree(drafts: Draft[], paidName: string): ClassInput[] {
  const classes: ClassInput[] = [
    { name: 'root', rate: 16_000 },
    { name: 'free', parent: 'root', rate: 2000, prio: 7 },
    { name: paidName, parent: 'root', rate: 12_000 },
  ];
  const depth = new Map<string, number>([
    ['root', 0],
    [paidName, 1],
  ]);
  drafts.forEach((d, k) => {
    const parents = [...depth.keys()].filter((n) => (depth.get(n) ?? 0) < MAX_DEPTH_HERE);
    const parent = parents[d.parent % parents.length] ?? 'root';
    const name = `c${k}`;
    depth.set(name, (depth.get(parent) ?? 0) + 1);
    classes.push({ name, parent, rate: d.rate, ...(d.prio === undefined ? {} : { prio: d.prio }) });
  });
  return classes;
}

const draftArb = fc.record({
  parent: fc.nat(),
  rate: fc.constantFrom(...RATES),
  prio: fc.option(fc.integer({ min: 0, max: 7 }), { nil: undefined }),
});

const treeArb = fc
  .tuple(
    fc.array(draftArb, { minLength: 0, maxLength: 9 }),
    fc.oneof(
      { weight: 9, arbitrary: fc.constant('paid') },
      { weight: 1, arbitrary: fc.constant('premium') },
    ),
  )
  .map(([drafts, paidName]) => ({ raw: buildTree(drafts, paidName), paidName }));

/** Mostly well-formed mappings onto the paid side's leaves; sometimes anything at all. */
function mappingArb(raw: ClassInput[], paidName: string): fc.Arbitrary<TicketGroup[]> {
  const names = raw.map((c) => c.name);
  const parentOf = new Map(raw.map((c) => [c.name, c.parent]));
  const isLeaf = (n: string) => !raw.some((c) => c.parent === n);
  const onPaidSide = (n: string) => {
    for (let c: string | undefined = n; c !== undefined; c = parentOf.get(c)) {
      if (c === paidName) return true;
    }
    return false;
  };
  const paidLeaves = names.filter((n) => isLeaf(n) && onPaidSide(n));
  const leafArb = fc.oneof(
    { weight: 12, arbitrary: fc.constantFrom(...paidLeaves) },
    { weight: 1, arbitrary: fc.constantFrom(...names, 'nope') },
  );
  const increasing = fc
    .array(fc.integer({ min: 1, max: 3 }), { minLength: 1, maxLength: 5 })
    .map((steps) => steps.map((_, i) => steps.slice(0, i + 1).reduce((a, b) => a + b, 0)));
  const anyThresholds = fc.array(fc.integer({ min: 0, max: 6 }), { minLength: 0, maxLength: 4 });
  return fc
    .oneof({ weight: 9, arbitrary: increasing }, { weight: 1, arbitrary: anyThresholds })
    .chain((thresholds) =>
      fc
        .array(leafArb, { minLength: thresholds.length, maxLength: thresholds.length })
        .map((leaves) =>
          thresholds.map((minTickets, i) => ({ minTickets, leaf: leaves[i] ?? 'nope' })),
        ),
    );
}

type Verdict = 'sound' | 'malformed' | 'not monotone';

/**
 * The oracle, by brute force and independent of ticketGroupProblems: the mapping's form, then
 * for every pair of ticket counts t < u in 1..N the class the shaper really gives each.
 */
function judge(raw: ClassInput[], groups: TicketGroup[]): Verdict {
  const tree = htbClassTreeSchema.parse(raw);
  const spec = htbSpec(tree).classes;
  const byName = new Map(spec.map((c) => [c.name, c]));
  const above = (name: string): ClassSpec[] => {
    const path: ClassSpec[] = [];
    for (let c = byName.get(name); c !== undefined; c = byName.get(c.parent ?? '')) path.push(c);
    return path;
  };
  if (groups.length === 0) return 'malformed';
  for (const [i, g] of groups.entries()) {
    if (!Number.isInteger(g.minTickets) || g.minTickets < 1) return 'malformed';
    if (i > 0 && g.minTickets <= (groups[i - 1]?.minTickets ?? 0)) return 'malformed';
    if (!byName.has(g.leaf) || spec.some((c) => c.parent === g.leaf)) return 'malformed';
    if (g.leaf === 'free' || !above(g.leaf).some((c) => c.name === 'paid')) return 'malformed';
  }
  const guarantee = (leaf: string) => Math.min(...above(leaf).map((c) => c.rate));
  const prio = (leaf: string) => byName.get(leaf)?.prio ?? Number.NaN;
  const shaper = new HtbShaper({ classes: tree, groups });
  try {
    const n = (groups[groups.length - 1]?.minTickets ?? 0) + 2;
    for (let t = 1; t <= n; t++) {
      for (let u = t + 1; u <= n; u++) {
        const fewer = shaper.classify({ tickets: t });
        const more = shaper.classify({ tickets: u });
        if (guarantee(more) < guarantee(fewer) || prio(more) > prio(fewer)) return 'not monotone';
      }
    }
  } finally {
    shaper.close();
  }
  return 'sound';
}

const caseArb = treeArb.chain(({ raw, paidName }) =>
  fc.tuple(fc.constant(raw), mappingArb(raw, paidName)),
);

describe('property: random trees and mappings (fast-check, fixed seed)', () => {
  it('the check accepts a mapping exactly when no two ticket counts break the invariant', () => {
    const seen: Record<Verdict, number> = { sound: 0, malformed: 0, 'not monotone': 0 };
    const runs = 2000;
    fc.assert(
      fc.property(caseArb, ([raw, groups]) => {
        const verdict = judge(raw, groups);
        seen[verdict]++;
        const problems = ticketGroupProblems(specOf(raw), groups);
        expect(problems.length === 0, JSON.stringify({ verdict, problems })).toBe(
          verdict === 'sound',
        );
      }),
      { seed: 13, numRuns: runs },
    );
    // Each kind of case came up often enough for the property to mean something.
    for (const [verdict, count] of Object.entries(seen)) {
      expect(count, verdict).toBeGreaterThan(runs * 0.1);
    }
  });

  it('the relay config refuses exactly those mappings, with a message naming the groups', () => {
    fc.assert(
      fc.property(caseArb, ([raw, groups]) => {
        const verdict = judge(raw, groups);
        const parse = () => parseRelayConfig({ ...minimalNode, tunnel: { classes: raw, groups } });
        if (verdict === 'sound') {
          expect(parse().tunnel.groups).toEqual(groups);
        } else {
          expect(parse).toThrow(/^tunnel\.groups(\[\d+\]\.(leaf|minTickets))?: /m);
        }
      }),
      { seed: 14, numRuns: 300 },
    );
  });
});

describe('the relay config', () => {
  it('keeps the default mapping when [[tunnel.groups]] is not set', () => {
    expect(parseRelayConfig(minimalNode).tunnel.groups).toBeUndefined();
    const shaper = new HtbShaper();
    expect(shaper.classify({ tickets: 2 })).toBe('group4');
    expect(shaper.classify({ tickets: 4 })).toBe('group1');
    shaper.close();
  });

  it('checks the default mapping against a tree of its own, naming the groups', () => {
    expect(() =>
      parseRelayConfig({
        ...minimalNode,
        tunnel: {
          classes: [
            ...figure1.filter((c) => c.name !== 'group1' && c.name !== 'group4'),
            { name: 'group4', parent: 'paid', rate: mbit(4), prio: 0 },
            { name: 'group1', parent: 'paid', rate: mbit(1.5), prio: 3 },
          ],
        },
      }),
    ).toThrow(
      'tunnel.classes: the default [[tunnel.groups]] (1+ tickets → "group4", 4+ → "group1"): ' +
        '"group1" (4+ tickets) is guaranteed 187500 B/s, less than "group4" (1+ tickets) with ' +
        '500000 B/s: more tickets must never buy a lower guaranteed rate',
    );
  });
});
