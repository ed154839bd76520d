/**
 * The class tree of the hierarchical token bucket (DESIGN §8), from a plain object (later
 * from TOML). Parameters and defaults follow Linux `sch_htb` and `tc`: rates in bytes per
 * second, burst and cburst in bytes, prio 0..7 and quantum on leaves only.
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

/** A class as written in a config: rates in bytes/s, or strings such as "8mbit". */
export interface ClassInput {
  name: string;
  /** Omitted for the root. */
  parent?: string;
  rate: number | string;
  ceil?: number | string;
  burst?: number;
  cburst?: number;
  prio?: number;
  quantum?: number;
  limit?: number;
}

export interface HtbInput {
  classes: ClassInput[];
  r2q?: number;
}

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

/** Validates a class tree and fills in defaults; throws HtbConfigError naming the class. */
export function parseHtbConfig(input: unknown): HtbSpec {
  if (!isObject(input) || !Array.isArray(input.classes) || input.classes.length === 0) {
    throw new HtbConfigError('config needs a non-empty "classes" list');
  }
  const r2q = input.r2q ?? DEFAULT_R2Q;
  if (typeof r2q !== 'number' || !(r2q > 0)) throw new HtbConfigError('r2q must be > 0');
  const warnings: string[] = [];
  const partial = (input.classes as unknown[]).map((raw, i) => readClass(raw, i));
  const byName = new Map<string, (typeof partial)[number]>();
  for (const c of partial) {
    if (byName.has(c.name)) throw new HtbConfigError(`class "${c.name}": duplicate name`);
    byName.set(c.name, c);
  }
  const roots = partial.filter((c) => c.parent === null);
  if (roots.length !== 1) {
    const names = roots.map((c) => `"${c.name}"`).join(', ');
    throw new HtbConfigError(
      `need exactly one root (class without parent), found ${roots.length}${names ? `: ${names}` : ''}`,
    );
  }
  const children = new Map<string, typeof partial>();
  for (const c of partial) {
    if (c.parent === null) continue;
    if (!byName.has(c.parent)) {
      throw new HtbConfigError(`class "${c.name}": unknown parent "${c.parent}"`);
    }
    children.set(c.parent, [...(children.get(c.parent) ?? []), c]);
  }
  // Breadth-first from the root: parents come first, and classes not reached form a cycle.
  const ordered: ClassSpec[] = [];
  let level = [roots[0] as (typeof partial)[number]];
  for (let depth = 0; level.length > 0; depth++) {
    if (depth >= MAX_DEPTH) {
      throw new HtbConfigError(`class "${level[0]?.name}": tree deeper than ${MAX_DEPTH} levels`);
    }
    const next: typeof partial = [];
    for (const c of level) {
      const kids = children.get(c.name) ?? [];
      const leaf = kids.length === 0;
      if (!leaf) {
        for (const key of ['prio', 'quantum', 'limit'] as const) {
          if (c[key] !== undefined)
            warnings.push(`class "${c.name}": ${key} is ignored on an inner class`);
        }
        const sum = kids.reduce((s, k) => s + k.rate, 0);
        if (sum > c.rate) {
          warnings.push(
            `class "${c.name}": children's rates add up to ${sum} B/s, more than its rate ${c.rate} B/s (their guarantees cannot all be met)`,
          );
        }
      }
      for (const k of kids) {
        if (k.ceil > c.ceil)
          warnings.push(
            `class "${k.name}": ceil above its parent's ceil "${c.name}" can never be reached`,
          );
      }
      ordered.push({
        name: c.name,
        parent: c.parent,
        rate: c.rate,
        ceil: c.ceil,
        burst: c.burst ?? Math.ceil(c.rate * DEFAULT_BURST_SECONDS + DEFAULT_MTU),
        cburst: c.cburst ?? Math.ceil(c.ceil * DEFAULT_BURST_SECONDS + DEFAULT_MTU),
        prio: c.prio ?? 0,
        quantum: c.quantum ?? clamp(Math.floor(c.rate / r2q), MIN_QUANTUM, MAX_QUANTUM),
        limit: c.limit ?? DEFAULT_LIMIT,
      });
      next.push(...kids);
    }
    level = next;
  }
  if (ordered.length !== partial.length) {
    const lost = partial.find((c) => !ordered.some((o) => o.name === c.name));
    throw new HtbConfigError(`class "${lost?.name}": not under the root (parent cycle)`);
  }
  return { classes: ordered, warnings };
}

interface PartialClass {
  name: string;
  parent: string | null;
  rate: number;
  ceil: number;
  burst?: number;
  cburst?: number;
  prio?: number;
  quantum?: number;
  limit?: number;
}

function readClass(raw: unknown, index: number): PartialClass {
  if (!isObject(raw)) throw new HtbConfigError(`classes[${index}]: not an object`);
  const name = raw.name;
  if (typeof name !== 'string' || name.length === 0) {
    throw new HtbConfigError(`classes[${index}]: needs a non-empty string "name"`);
  }
  const fail = (problem: string): never => {
    throw new HtbConfigError(`class "${name}": ${problem}`);
  };
  const known = ['name', 'parent', 'rate', 'ceil', 'burst', 'cburst', 'prio', 'quantum', 'limit'];
  for (const key of Object.keys(raw)) if (!known.includes(key)) fail(`unknown field "${key}"`);
  const parent = raw.parent ?? null;
  if (parent !== null && (typeof parent !== 'string' || parent.length === 0)) {
    fail('parent must be a class name');
  }
  if (parent === name) fail('is its own parent');
  const rateOf = (key: 'rate' | 'ceil'): number | undefined => {
    const v = raw[key];
    if (v === undefined) return undefined;
    if (typeof v !== 'number' && typeof v !== 'string')
      return fail(`${key} must be a number or a string like "8mbit"`);
    let r: number;
    try {
      r = parseRate(v);
    } catch (e) {
      return fail((e as Error).message);
    }
    if (!Number.isFinite(r) || r <= 0) fail(`${key} must be > 0`);
    return r;
  };
  const rate = rateOf('rate') ?? fail('needs a rate');
  const ceil = rateOf('ceil') ?? rate;
  if (ceil < rate) fail(`ceil (${ceil} B/s) below rate (${rate} B/s)`);
  const int = (key: string, min: number, max: number): number | undefined => {
    const v = raw[key];
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      return fail(`${key} must be an integer in [${min}, ${max}]`);
    }
    return v;
  };
  return {
    name,
    parent: parent as string | null,
    rate,
    ceil,
    burst: int('burst', 1, 2 ** 31),
    cburst: int('cburst', 1, 2 ** 31),
    prio: int('prio', 0, MAX_PRIO),
    quantum: int('quantum', 1, 2 ** 31),
    limit: int('limit', 1, 2 ** 40),
  };
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function clamp(x: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, x));
}
