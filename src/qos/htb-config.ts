import { z } from 'zod';

/**
 * The class tree of the hierarchical token bucket (docs/design.md §8), from a plain object or
 * the relay config's [[tunnel.classes]]. Parameters and defaults follow Linux `sch_htb` and
 * `tc`: rates in bytes per second, burst and cburst in bytes, prio 0..7 and quantum on leaves
 * only. The zod schemas below check a tree once (the relay config embeds them, so its errors
 * name the key); htbSpec then fills in the defaults and the warnings, which cannot fail.
 */

/** Linux TC_HTB_MAXDEPTH: class levels are 0..7, so a tree is at most 8 classes deep. */
export const MAX_DEPTH = 8;
export const MAX_PRIO = 7;
/** `tc` default r2q: a leaf's quantum defaults to rate / r2q bytes. */
export const DEFAULT_R2Q = 10;
/** sch_htb warns outside these and clamps; we clamp the default quantum to them. */
export const MIN_QUANTUM = 1000;
export const MAX_QUANTUM = 200_000;
/** `tc` default burst = rate / HZ + mtu, with HZ = 1000 and mtu = 1600. */
const DEFAULT_BURST_SECONDS = 0.001;
const DEFAULT_MTU = 1600;
/** Default byte limit of a leaf queue; beyond it enqueue refuses (the tunnel pauses). */
export const DEFAULT_LIMIT = 256 * 1024;

/** A validated class with every default filled in. */
export interface ClassSpec {
  name: string;
  parent: string | null;
  /** Bytes per second. */
  rate: number;
  ceil: number;
  /** Bytes. */
  burst: number;
  cburst: number;
  prio: number;
  quantum: number;
  limit: number;
}

export interface HtbSpec {
  /** Parents before children (the root first). */
  classes: ClassSpec[];
  warnings: string[];
}

export class HtbConfigError extends Error {
  override name = 'HtbConfigError';
}

const BIT_UNITS: Record<string, number> = { bit: 1, kbit: 1e3, mbit: 1e6, gbit: 1e9 };
/** `tc` spells bytes per second "bps" (kbps = kilobytes/s); kept for operators used to it. */
const BYTE_UNITS: Record<string, number> = { bps: 1, kbps: 1e3, mbps: 1e6, gbps: 1e9 };

/** Bits per second → bytes per second. */
export function bitsPerSecond(bits: number): number {
  return bits / 8;
}

/** Megabits per second → bytes per second. */
export function mbit(megabits: number): number {
  return (megabits * 1e6) / 8;
}

/** Bytes per second → megabits per second (for status lines). */
export function toMbit(bytesPerSecond: number): number {
  return (bytesPerSecond * 8) / 1e6;
}

/** A rate in bytes/s from a number (bytes/s) or a `tc`-style string: "10mbit", "500kbps". */
export function parseRate(value: number | string): number {
  if (typeof value === 'number') return value;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*$/i.exec(value);
  const unit = m?.[2]?.toLowerCase() ?? '';
  const bits = BIT_UNITS[unit];
  const bytes = BYTE_UNITS[unit];
  if (!m || (bits === undefined && bytes === undefined)) {
    throw new HtbConfigError(`bad rate "${value}" (use e.g. "10mbit", "800kbit", "125000bps")`);
  }
  const n = Number(m[1]);
  return bits !== undefined ? (n * bits) / 8 : n * (bytes as number);
}

/** A rate in bytes/s, from a number (bytes/s) or a `tc`-style string such as "8mbit". */
const rateSchema = z
  .union([z.number(), z.string()], {
    // Only `rate` is required, so a missing value is always a missing rate.
    error: (issue) =>
      issue.input === undefined
        ? 'needs a rate'
        : 'must be a number of bytes/s or a string like "8mbit"',
  })
  .transform((value, ctx) => {
    let rate: number;
    try {
      rate = parseRate(value);
    } catch (e) {
      ctx.issues.push({ code: 'custom', message: (e as Error).message, input: value });
      return z.NEVER;
    }
    if (!Number.isFinite(rate) || rate <= 0) {
      ctx.issues.push({ code: 'custom', message: 'must be > 0', input: value });
      return z.NEVER;
    }
    return rate;
  });

function integer(min: number, max: number) {
  const error = `must be an integer in [${min}, ${max}]`;
  return z.number({ error }).refine((n) => Number.isInteger(n) && n >= min && n <= max, { error });
}

const NAME_ERROR = 'needs a non-empty string "name"';

/** One class as written in a config; the output has its rates in bytes/s. */
export const htbClassSchema = z
  .strictObject(
    {
      name: z.string({ error: NAME_ERROR }).min(1, { error: NAME_ERROR }),
      /** Omitted for the root. */
      parent: z
        .string({ error: 'must be a class name' })
        .min(1, { error: 'must be a class name' })
        .optional(),
      rate: rateSchema,
      /** Default: the rate. */
      ceil: rateSchema.optional(),
      burst: integer(1, 2 ** 31).optional(),
      cburst: integer(1, 2 ** 31).optional(),
      prio: integer(0, MAX_PRIO).optional(),
      quantum: integer(1, 2 ** 31).optional(),
      limit: integer(1, 2 ** 40).optional(),
    },
    { error: (issue) => (issue.code === 'invalid_type' ? 'not an object' : undefined) },
  )
  .superRefine((c, ctx) => {
    if (c.parent === c.name) {
      ctx.addIssue({ code: 'custom', path: ['parent'], message: 'is its own parent' });
    }
    if (c.ceil !== undefined && c.ceil < c.rate) {
      ctx.addIssue({
        code: 'custom',
        path: ['ceil'],
        message: `ceil (${c.ceil} B/s) below rate (${c.rate} B/s)`,
      });
    }
  });

/** A class as written in a config: rates in bytes/s, or strings such as "8mbit". */
export type ClassInput = z.input<typeof htbClassSchema>;
/** A checked class, rates in bytes/s; defaults still unfilled (htbSpec fills them). */
export type HtbClass = z.output<typeof htbClassSchema>;

/**
 * A list of classes that forms one tree: names unique, one root, every parent known, no
 * cycle, at most MAX_DEPTH levels. The output is the same classes with parents before
 * children, branded so that only a checked tree reaches htbSpec.
 */
export const htbClassTreeSchema = z
  .array(htbClassSchema, { error: 'needs a non-empty "classes" list' })
  .min(1, { error: 'needs a non-empty "classes" list' })
  .transform((classes, ctx) => {
    const fail = (path: (string | number)[], message: string): typeof z.NEVER => {
      ctx.issues.push({ code: 'custom', path, message, input: classes });
      return z.NEVER;
    };
    const byName = new Map<string, HtbClass>();
    for (const [i, c] of classes.entries()) {
      if (byName.has(c.name)) return fail([i, 'name'], 'duplicate name');
      byName.set(c.name, c);
    }
    const roots = classes.filter((c) => c.parent === undefined);
    const [root] = roots;
    if (roots.length !== 1 || root === undefined) {
      const names = roots.map((c) => `"${c.name}"`).join(', ');
      return fail(
        [],
        `need exactly one root (class without parent), found ${roots.length}${names ? `: ${names}` : ''}`,
      );
    }
    const children = new Map<string, HtbClass[]>();
    for (const [i, c] of classes.entries()) {
      if (c.parent === undefined) continue;
      if (!byName.has(c.parent)) return fail([i, 'parent'], `unknown parent "${c.parent}"`);
      children.set(c.parent, [...(children.get(c.parent) ?? []), c]);
    }
    // Breadth-first from the root: parents come first, and classes not reached form a cycle.
    const ordered: HtbClass[] = [];
    let level = [root];
    for (let depth = 0; level.length > 0; depth++) {
      if (depth >= MAX_DEPTH) {
        const deep = level[0] ?? root;
        return fail([classes.indexOf(deep)], `tree deeper than ${MAX_DEPTH} levels`);
      }
      ordered.push(...level);
      level = level.flatMap((c) => children.get(c.name) ?? []);
    }
    if (ordered.length !== classes.length) {
      const lost = classes.findIndex((c) => !ordered.includes(c));
      return fail([lost, 'parent'], 'not under the root (parent cycle)');
    }
    return ordered;
  })
  .brand<'HtbClassTree'>();

/** A checked class tree, parents first (the relay config's `tunnel.classes`). */
export type HtbClassTree = z.output<typeof htbClassTreeSchema>;

/** A whole HTB config: the class tree and `tc`'s r2q (a leaf's default quantum is rate / r2q). */
export const htbConfigSchema = z.strictObject(
  {
    classes: htbClassTreeSchema,
    r2q: z.number({ error: 'must be > 0' }).positive({ error: 'must be > 0' }).default(DEFAULT_R2Q),
  },
  {
    error: (issue) =>
      issue.code === 'invalid_type' ? 'expected an object with "classes"' : undefined,
  },
);

export type HtbInput = z.input<typeof htbConfigSchema>;

/** Validates a class tree and fills in defaults; throws HtbConfigError naming the class. */
export function parseHtbConfig(input: unknown): HtbSpec {
  const result = htbConfigSchema.safeParse(input);
  if (!result.success) {
    throw new HtbConfigError(
      result.error.issues.map((issue) => describeIssue(issue, input)).join('\n'),
    );
  }
  return htbSpec(result.data.classes, result.data.r2q);
}

/**
 * A checked tree with every default filled in, and what is legal but odd about it as
 * warnings: children promised more than their parent has, ceils that cannot be reached,
 * leaf-only fields on inner classes.
 */
export function htbSpec(tree: HtbClassTree, r2q: number = DEFAULT_R2Q): HtbSpec {
  const children = new Map<string, HtbClass[]>();
  for (const c of tree) {
    if (c.parent !== undefined) children.set(c.parent, [...(children.get(c.parent) ?? []), c]);
  }
  const warnings: string[] = [];
  const classes = tree.map((c): ClassSpec => {
    const kids = children.get(c.name) ?? [];
    const ceil = c.ceil ?? c.rate;
    if (kids.length > 0) {
      for (const key of ['prio', 'quantum', 'limit'] as const) {
        if (c[key] !== undefined) {
          warnings.push(`class "${c.name}": ${key} is ignored on an inner class`);
        }
      }
      const sum = kids.reduce((s, k) => s + k.rate, 0);
      if (sum > c.rate) {
        warnings.push(
          `class "${c.name}": children's rates add up to ${sum} B/s, more than its rate ${c.rate} B/s (their guarantees cannot all be met)`,
        );
      }
    }
    for (const k of kids) {
      if ((k.ceil ?? k.rate) > ceil) {
        warnings.push(
          `class "${k.name}": ceil above its parent's ceil "${c.name}" can never be reached`,
        );
      }
    }
    return {
      name: c.name,
      parent: c.parent ?? null,
      rate: c.rate,
      ceil,
      burst: c.burst ?? Math.ceil(c.rate * DEFAULT_BURST_SECONDS + DEFAULT_MTU),
      cburst: c.cburst ?? Math.ceil(ceil * DEFAULT_BURST_SECONDS + DEFAULT_MTU),
      prio: c.prio ?? 0,
      quantum: c.quantum ?? clamp(Math.floor(c.rate / r2q), MIN_QUANTUM, MAX_QUANTUM),
      limit: c.limit ?? DEFAULT_LIMIT,
    };
  });
  return { classes, warnings };
}

/**
 * One problem as `class "<name>": <field> <problem>` (or `classes[<i>]` while the class has
 * no usable name). A message that already names its field ("bad rate …") is not prefixed.
 */
function describeIssue(issue: z.core.$ZodIssue, input: unknown): string {
  const [section, index, field] = issue.path;
  const message =
    issue.code === 'unrecognized_keys'
      ? `unknown field${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}`
      : typeof field === 'string' && !new RegExp(`\\b${field}\\b`).test(issue.message)
        ? `${field} ${issue.message}`
        : issue.message;
  if (section === 'classes' && typeof index === 'number') {
    const list = isObject(input) ? input.classes : undefined;
    const raw: unknown = Array.isArray(list) ? list[index] : undefined;
    const name = isObject(raw) ? raw.name : undefined;
    const where =
      typeof name === 'string' && name.length > 0 ? `class "${name}"` : `classes[${index}]`;
    return `${where}: ${message}`;
  }
  if (typeof section === 'string' && section !== 'classes' && !message.includes(section)) {
    return `${section} ${message}`;
  }
  return message;
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function clamp(x: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, x));
}
