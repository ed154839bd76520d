import { z } from 'zod';

/**
 * The relay config's problems in an operator's words: what the key takes and what the file
 * has ("tickets.price: expected a number, got string "sixteen""), an unknown key with the key
 * it most likely meant. Messages a schema sets itself come first; these fill in the rest.
 */

/** What a schema expects, in TOML terms. */
const EXPECTED: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'a whole number',
  boolean: 'true or false',
  array: 'a list',
  object: 'a table',
  date: 'a date',
};

/** Keys whose values are never repeated in a message (they end up in logs and terminals). */
const SECRET_KEY = /password|secret/i;
const MAX_SHOWN = 40;

/** A value as the file spells it: strings quoted and cut short, inf and nan as in TOML. */
function shown(value: unknown): string {
  if (typeof value === 'string') {
    const text = JSON.stringify(value);
    return text.length > MAX_SHOWN ? `${text.slice(0, MAX_SHOWN - 2)}…"` : text;
  }
  if (typeof value === 'number') {
    if (Number.isNaN(value)) return 'nan';
    if (!Number.isFinite(value)) return value > 0 ? 'inf' : '-inf';
  }
  return String(value);
}

/** What the file has: `string "sixteen"`, `number 1.5`, `a table`; a secret's value is not shown. */
function found(value: unknown, path: readonly PropertyKey[]): string {
  if (value instanceof Date) return 'a date';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object' && value !== null) return 'a table';
  if (SECRET_KEY.test(String(path.at(-1) ?? ''))) return `a ${typeof value}`;
  return `${typeof value} ${shown(value)}`;
}

function invalidType(expected: string, input: unknown, path: readonly PropertyKey[]): string {
  if (input === undefined) return 'required';
  // TOML's inf and nan are numbers, just not ones any key takes.
  if (typeof input === 'number' && (expected === 'number' || expected === 'int')) {
    if (!Number.isFinite(input)) return `expected a finite number, got ${shown(input)}`;
  }
  return `expected ${EXPECTED[expected] ?? expected}, got ${found(input, path)}`;
}

function lengthOf(input: unknown): string {
  return typeof input === 'string' || Array.isArray(input) ? String(input.length) : '?';
}

/** A number out of its range, a string or a list too short or too long. */
function bound(
  side: 'min' | 'max',
  origin: string,
  limit: number | bigint,
  inclusive: boolean,
  input: unknown,
): string | undefined {
  const one = Number(limit) === 1;
  if (origin === 'number' || origin === 'int' || origin === 'bigint') {
    const words =
      side === 'min' ? (inclusive ? 'at least' : 'above') : inclusive ? 'at most' : 'below';
    return `must be ${words} ${limit}, got ${shown(input)}`;
  }
  if (origin === 'string') {
    if (side === 'min' && one) return 'must not be empty';
    const chars = `${limit} character${one ? '' : 's'}`;
    return `must be ${side === 'min' ? 'at least' : 'at most'} ${chars}, got ${lengthOf(input)}`;
  }
  if (origin === 'array') {
    if (side === 'min' && one) return 'needs at least one entry';
    const entries = `${limit} ${one ? 'entry' : 'entries'}`;
    return `${side === 'min' ? 'needs at least' : 'takes at most'} ${entries}, got ${lengthOf(input)}`;
  }
  return undefined;
}

/** Edit distance, for "did you mean": typos are a letter or two off. */
function distance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      row.push(
        Math.min((previous[j] ?? 0) + 1, (row[j - 1] ?? 0) + 1, (previous[j - 1] ?? 0) + cost),
      );
    }
    previous = row;
  }
  return previous[b.length] ?? 0;
}

/** The known key closest to `key`, if it is close enough to be a typo of it. */
function closestKey(key: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of known) {
    const d = distance(key.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [candidate, d];
  }
  return bestDistance <= Math.max(1, Math.floor(key.length / 3)) ? best : undefined;
}

/** "lisen (did you mean listen?)", or a section: "[relys] (did you mean [relay]?)". */
function unknownKey(key: string, known: readonly string[], section: boolean): string {
  const name = (k: string) => (section ? `[${k}]` : k);
  const close = closestKey(key, known);
  return close === undefined ? name(key) : `${name(key)} (did you mean ${name(close)}?)`;
}

function unrecognized(
  keys: readonly string[],
  input: unknown,
  path: readonly PropertyKey[],
  inst: unknown,
): string {
  const known = inst instanceof z.ZodObject ? Object.keys(inst.shape) : [];
  // At the top level an unknown key is mostly a section: "[relys]".
  const isSection = (key: string) => {
    const value: unknown = isRecord(input) ? input[key] : undefined;
    return path.length === 0 && isRecord(value) && !Array.isArray(value);
  };
  const names = keys.map((key) => unknownKey(key, known, isSection(key)));
  const s = keys.length > 1 ? 's' : '';
  const what = keys.every(isSection) ? 'section' : 'key';
  return `unknown ${what}${s} ${names.join(', ')}`;
}

/**
 * The error map for `safeParse`: below the schemas' own messages, above zod's defaults. The
 * path is complete here (issues are finalised once parsing is over), so a secret's value can
 * be left out.
 */
export function configErrorMap(issue: z.core.$ZodRawIssue): string | undefined {
  const path = issue.path ?? [];
  switch (issue.code) {
    case 'invalid_type':
      return invalidType(issue.expected, issue.input, path);
    case 'too_small':
      return bound('min', issue.origin, issue.minimum, issue.inclusive ?? true, issue.input);
    case 'too_big':
      return bound('max', issue.origin, issue.maximum, issue.inclusive ?? true, issue.input);
    case 'invalid_value': {
      const values = issue.values.map((v) => shown(v));
      const choices =
        values.length > 1 ? `${values.slice(0, -1).join(', ')} or ${values.at(-1)}` : values[0];
      return `expected ${choices}, got ${found(issue.input, path)}`;
    }
    case 'unrecognized_keys':
      return unrecognized(issue.keys, issue.input, path, issue.inst);
    case 'invalid_union':
      return `not a value this key takes, got ${found(issue.input, path)}`;
    default:
      return undefined;
  }
}

/** An issue's key as written in TOML terms: `source.pools[0].url`, `tunnel.classes[2].rate`. */
function keyOf(path: readonly PropertyKey[], input: unknown): string {
  let key = '';
  let value = input;
  let name: string | null = null;
  for (const part of path) {
    value = isRecord(value) ? value[String(part)] : undefined;
    if (typeof part === 'number') {
      key += `[${part}]`;
      // Tables in a list are found by their name in the file more easily than by index.
      name = isRecord(value) && typeof value['name'] === 'string' ? value['name'] : name;
    } else {
      key += `${key ? '.' : ''}${String(part)}`;
    }
  }
  return `${key}${name === null ? '' : ` (name "${name}")`}`;
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

/** One line per problem, each starting with the key ("(top level)" for the file's own keys). */
export function describeIssues(error: z.ZodError, input: unknown): string {
  return error.issues
    .map((issue) => `${keyOf(issue.path, input) || '(top level)'}: ${issue.message}`)
    .join('\n');
}
