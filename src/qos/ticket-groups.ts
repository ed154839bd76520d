import { z } from 'zod';
import type { ClassSpec } from './htb-config.js';
import { FREE_CLASS, PAID_CLASS } from './shaper.js';

/**
 * Which paid class a grant's streams get, by the tickets paid into the grant in the current
 * window (docs/design.md §8), and the check that a mapping and a class tree agree: a stream
 * holding more tickets never gets a class with a lower guaranteed rate or a worse prio. The
 * groups are ranks, as in the paper: Group_1 "normally pays for the rate of 4 Mbps" and is
 * served first, so the default sends 4+ tickets to `group1` and 1–3 to `group4`.
 */

/** Most groups a mapping may list (there are 8 prios; a few more thresholds are harmless). */
export const MAX_TICKET_GROUPS = 16;
/** More tickets than anyone pays into one grant in a window; bounds the threshold. */
export const MAX_MIN_TICKETS = 1_000_000;

const MIN_TICKETS_ERROR = `must be an integer in [1, ${MAX_MIN_TICKETS}]`;
const LEAF_ERROR = 'must be a class name';

/** One `[[tunnel.groups]]` entry: grants holding at least `minTickets` tickets go to `leaf`. */
export const ticketGroupSchema = z.strictObject(
  {
    minTickets: z
      .number({ error: MIN_TICKETS_ERROR })
      .refine((n) => Number.isInteger(n) && n >= 1 && n <= MAX_MIN_TICKETS, {
        error: MIN_TICKETS_ERROR,
        abort: true,
      }),
    leaf: z.string({ error: LEAF_ERROR }).min(1, { error: LEAF_ERROR }).max(64),
  },
  { error: (issue) => (issue.code === 'invalid_type' ? 'not a table' : undefined) },
);

export type TicketGroup = z.output<typeof ticketGroupSchema>;

/**
 * A mapping as written: thresholds strictly increasing (so the list reads as the tiers in
 * order and no count matches two entries). Which leaves it names is checked against the
 * tree by ticketGroupProblems.
 */
export const ticketGroupsSchema = z
  .array(ticketGroupSchema, { error: 'expected a list of { minTickets, leaf } tables' })
  // Every check of the list is fatal (abort, continue: false): the refinement over the whole
  // tunnel section, which checks the mapping against the tree, then does not run and repeat it.
  .min(1, { error: 'needs at least one group', abort: true })
  .max(MAX_TICKET_GROUPS, { error: `at most ${MAX_TICKET_GROUPS} groups`, abort: true })
  .superRefine((groups, ctx) => {
    for (const problem of orderProblems(groups)) {
      ctx.addIssue({
        code: 'custom',
        path: [problem.group, problem.field],
        message: problem.message,
        continue: false,
      });
    }
  });

/** The design's mapping (docs/design.md §8): 1–3 tickets → group4, 4 or more → group1. */
export const DEFAULT_TICKET_GROUPS: readonly TicketGroup[] = [
  { minTickets: 1, leaf: 'group4' },
  { minTickets: 4, leaf: 'group1' },
];

/**
 * The leaf for a grant holding `tickets`: the group with the highest threshold it reaches.
 * A live grant below every threshold (0 tickets left in the window) still paid, so it gets
 * the lowest group rather than the free class. `groups` in increasing order, not empty.
 */
export function groupFor(groups: readonly TicketGroup[], tickets: number): string {
  let leaf = groups[0]?.leaf;
  if (leaf === undefined) throw new RangeError('ticket groups: the mapping is empty');
  for (const group of groups) if (tickets >= group.minTickets) leaf = group.leaf;
  return leaf;
}

/** `1+ tickets → "group4", 4+ → "group1"`, for messages and logs. */
export function describeGroups(groups: readonly TicketGroup[]): string {
  return groups
    .map((g, i) => `${g.minTickets}+${i === 0 ? ' tickets' : ''} → "${g.leaf}"`)
    .join(', ');
}

/** What the check reads of a class; htbSpec's ClassSpec has it, with the defaults filled in. */
export type GroupClass = Pick<ClassSpec, 'name' | 'parent' | 'rate' | 'prio'>;

export interface TicketGroupProblem {
  /** Index of the group the problem is about, in the mapping as given. */
  group: number;
  /** The key of that group the message is about. */
  field: 'minTickets' | 'leaf';
  message: string;
}

export interface TicketGroupCheckOptions {
  /** Mapped leaves must be this class or under it (default 'paid'). */
  paidClass?: string;
  /** Streams without a grant; never a paid group (default 'free'). */
  freeLeaf?: string;
}

/**
 * Everything wrong with `groups` on the tree `classes`, or [] when the mapping is sound:
 * - thresholds are integers from 1 up, strictly increasing;
 * - every leaf named exists, is a leaf, is not the free leaf and is `paid` or under it;
 * - more tickets never get a lower guaranteed rate nor a worse (higher) prio.
 *
 * A leaf's guaranteed rate is its rate capped by every class above it: HTB cannot promise a
 * leaf more than its ancestors are promised. Prio is the leaf's own (lower is served first).
 * The mapping is a step function of the ticket count, so comparing each group with the one
 * below it covers every pair of counts.
 */
export function ticketGroupProblems(
  classes: readonly GroupClass[],
  groups: readonly TicketGroup[],
  options: TicketGroupCheckOptions = {},
): TicketGroupProblem[] {
  const paidClass = options.paidClass ?? PAID_CLASS;
  const freeLeaf = options.freeLeaf ?? FREE_CLASS;
  const byName = new Map(classes.map((c) => [c.name, c]));
  const inner = new Set(classes.flatMap((c) => (c.parent === null ? [] : [c.parent])));
  const problems = thresholdProblems(groups);
  if (groups.length === 0) {
    problems.push({ group: 0, field: 'leaf', message: 'needs at least one group' });
  }

  const hasPaid = byName.has(paidClass);
  if (!hasPaid && groups.length > 0) {
    // A fault of the tree rather than of a group: said once, on the first group.
    problems.push({
      group: 0,
      field: 'leaf',
      message: `the tunnel class tree has no "${paidClass}" class for the paid groups to sit under`,
    });
  }
  const leafProblem = (leaf: string): string | null => {
    if (!byName.has(leaf)) return `no class "${leaf}" in the tunnel class tree`;
    if (inner.has(leaf)) return `"${leaf}" has children: streams go to leaf classes only`;
    if (leaf === freeLeaf) return `"${leaf}" is the class of streams without a grant`;
    if (hasPaid && !ancestry(byName, leaf).some((c) => c.name === paidClass)) {
      return `"${leaf}" is not under "${paidClass}": paid groups share the paid class's bandwidth`;
    }
    return null;
  };
  const tiers: { group: TicketGroup; leaf: GroupClass }[] = [];
  groups.forEach((group, i) => {
    const message = leafProblem(group.leaf);
    const leaf = byName.get(group.leaf);
    if (message !== null) problems.push({ group: i, field: 'leaf', message });
    else if (leaf !== undefined) tiers.push({ group, leaf });
  });
  if (problems.length > 0) return problems.sort((a, b) => a.group - b.group);

  // Every group names a sound leaf here, so tiers[i] is groups[i].
  const describe = (g: TicketGroup): string => `"${g.leaf}" (${g.minTickets}+ tickets)`;
  tiers.forEach((upper, i) => {
    const lower = tiers[i - 1];
    if (lower === undefined) return;
    const lowerRate = guaranteedRate(byName, lower.leaf.name);
    const upperRate = guaranteedRate(byName, upper.leaf.name);
    if (upperRate < lowerRate) {
      problems.push({
        group: i,
        field: 'leaf',
        message:
          `${describe(upper.group)} is guaranteed ${upperRate} B/s, less than ` +
          `${describe(lower.group)} with ${lowerRate} B/s: more tickets must never buy a lower ` +
          'guaranteed rate',
      });
    }
    if (upper.leaf.prio > lower.leaf.prio) {
      problems.push({
        group: i,
        field: 'leaf',
        message:
          `${describe(upper.group)} has prio ${upper.leaf.prio}, worse than ` +
          `${describe(lower.group)} with prio ${lower.leaf.prio} (lower is served first): more ` +
          'tickets must never buy a worse prio',
      });
    }
  });
  return problems;
}

/** The rate HTB can promise `leaf`: its own, capped by each ancestor's. */
export function guaranteedRate(byName: ReadonlyMap<string, GroupClass>, leaf: string): number {
  return Math.min(...ancestry(byName, leaf).map((c) => c.rate));
}

/** `name` and every class above it, nearest first (a checked tree has no cycle). */
function ancestry(byName: ReadonlyMap<string, GroupClass>, name: string): GroupClass[] {
  const path: GroupClass[] = [];
  for (
    let c = byName.get(name);
    c !== undefined;
    c = c.parent === null ? undefined : byName.get(c.parent)
  ) {
    if (path.includes(c)) break;
    path.push(c);
  }
  return path;
}

/** Thresholds out of range, or not above the previous group's. */
function thresholdProblems(groups: readonly TicketGroup[]): TicketGroupProblem[] {
  const problems = groups.flatMap((g, i): TicketGroupProblem[] =>
    Number.isInteger(g.minTickets) && g.minTickets >= 1 && g.minTickets <= MAX_MIN_TICKETS
      ? []
      : [{ group: i, field: 'minTickets', message: MIN_TICKETS_ERROR }],
  );
  return [...problems, ...orderProblems(groups)];
}

/** Thresholds not above the previous group's (the schema checks each one's range itself). */
function orderProblems(groups: readonly TicketGroup[]): TicketGroupProblem[] {
  const problems: TicketGroupProblem[] = [];
  groups.forEach((g, i) => {
    const previous = groups[i - 1];
    if (previous !== undefined && g.minTickets <= previous.minTickets) {
      problems.push({
        group: i,
        field: 'minTickets',
        message:
          `${g.minTickets} is not above the previous group's ${previous.minTickets}: ` +
          'list the groups by increasing minTickets',
      });
    }
  });
  return problems;
}
