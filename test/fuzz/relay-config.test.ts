import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { parse as parseToml, stringify as stringifyToml } from 'smol-toml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ConfigError,
  loadRelayConfig,
  parseRelayConfig,
  relayConfigSchema,
} from '../../src/relay/config.js';
import { anyCodePoint, anyJson, fuzz } from '../helpers/fuzz.js';

/**
 * The relay's TOML config (src/relay/config.ts): whatever the file holds, the relay starts
 * with a config or refuses with a ConfigError whose every line names a key ("limits.maxClients:
 * …", "(top level): unknown key …"); nothing else is thrown. Inputs: the example config, and
 * variants that reach the optional tables (pools, peers, the class tree and ticket groups),
 * with one value changed, dropped or added anywhere in the tree, as objects (parseRelayConfig)
 * and as TOML text, some of it broken (loadRelayConfig).
 */

const example = parseToml(
  readFileSync(new URL('../../config/relay.example.toml', import.meta.url), 'utf8'),
) as Record<string, unknown>;

/** The example with its commented-out tables filled in: pools, peers, classes and groups. */
const full = {
  ...example,
  source: {
    ...(example.source as object),
    type: 'pool',
    pools: [
      { url: 'stratum+tcp://pool.example.org:3333', user: 'operator.relay1', password: 'x' },
      { url: 'stratum+ssl://backup.example.org:3334', user: 'u', tlsCaFile: 'ca.pem' },
    ],
  },
  tunnel: {
    ...(example.tunnel as object),
    classes: [
      { name: 'root', rate: '10mbit' },
      { name: 'free', parent: 'root', rate: '2mbit', ceil: '4mbit', prio: 7 },
      { name: 'paid', parent: 'root', rate: '8mbit', ceil: '10mbit' },
      { name: 'group1', parent: 'paid', rate: '4mbit', ceil: '10mbit', prio: 0 },
      { name: 'group4', parent: 'paid', rate: '1.5mbit', ceil: '10mbit', prio: 3 },
    ],
    groups: [
      { minTickets: 1, leaf: 'group4' },
      { minTickets: 4, leaf: 'group1' },
    ],
  },
  peers: [{ name: 'backup', url: 'http://127.0.0.1:8641', identity: 'ab'.repeat(32) }],
};

/** Top-level sections: every line of a refusal starts with one of them or "(top level)". */
const SECTIONS = Object.keys(relayConfigSchema.shape);

/** Every path into a value (tables and arrays), the root included. */
function paths(value: unknown, prefix: (string | number)[] = []): (string | number)[][] {
  const out = [prefix];
  if (Array.isArray(value)) value.forEach((v, i) => out.push(...paths(v, [...prefix, i])));
  else if (typeof value === 'object' && value !== null) {
    for (const [k, v] of Object.entries(value)) out.push(...paths(v, [...prefix, k]));
  }
  return out;
}

function clone<T>(value: T): T {
  return structuredClone(value);
}

type Edit = 'replace' | 'drop' | 'add' | 'wrap';

/** `base` with one edit at a path chosen by `pick`. */
function edited(base: object, pick: number, edit: Edit, value: unknown, key: string): unknown {
  const copy = clone(base);
  const all = paths(copy);
  const path = all[pick % all.length] ?? [];
  if (path.length === 0) return edit === 'replace' ? value : copy;
  let parent: unknown = copy;
  for (const part of path.slice(0, -1)) parent = (parent as Record<string, unknown>)[part];
  const last = path[path.length - 1] ?? 0;
  const holder = parent as Record<string | number, unknown>;
  switch (edit) {
    case 'replace':
      holder[last] = value;
      break;
    case 'drop':
      if (Array.isArray(holder)) holder.splice(Number(last), 1);
      else delete holder[last];
      break;
    case 'add': {
      const target = holder[last];
      if (Array.isArray(target)) target.push(value);
      else if (typeof target === 'object' && target !== null) {
        Object.defineProperty(target, key, { value, enumerable: true, writable: true });
      } else holder[last] = value;
      break;
    }
    case 'wrap':
      holder[last] = [holder[last]];
      break;
  }
  return copy;
}

/** Values TOML can hold (no null), some of them the kinds the schema is picky about. */
const tomlValue: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.string({ maxLength: 30 }),
    fc.constantFrom('', '127.0.0.1:8640', '[::1]:99999', 'stratum+tcp://x:1', '10mbit', 'rsa'),
    fc.integer(),
    fc.constantFrom(0, -1, 1, 2 ** 31, 2 ** 53, 65_536, 100_001),
    fc.double(),
    fc.boolean(),
    fc.array(tie('value'), { maxLength: 3 }),
    fc.dictionary(fc.string({ maxLength: 10 }), tie('value'), { maxKeys: 3 }),
  ),
})).value;

const edit = fc.constantFrom<Edit>('replace', 'drop', 'add', 'wrap');
const base = fc.constantFrom<object>(example, full);

/** Checks a refusal: a ConfigError whose lines after the first each name a key. */
function expectRefusal(err: unknown, origin: string): void {
  if (!(err instanceof ConfigError)) throw err;
  const [head, ...lines] = err.message.split('\n');
  expect(head?.startsWith(origin)).toBe(true);
  if (lines.length === 0) {
    // The file could not be read or parsed: one line, the file and why.
    expect(head).toMatch(/: (not valid TOML|cannot read)/);
    return;
  }
  for (const line of lines) {
    const named = line.startsWith('(top level): ') || SECTIONS.some((s) => line.startsWith(s));
    if (!named) expect.fail(`refusal line names no key: ${JSON.stringify(line)}`);
  }
}

describe('relay config: found by the fuzzer', () => {
  it('refuses a tunnel.linkMbit out of bounds by its key, not with an error of the HTB', () => {
    for (const linkMbit of [0, -1, 1e9]) {
      const config = { ...example, tunnel: { ...(example.tunnel as object), linkMbit } };
      expect(() => parseRelayConfig(config, 'relay.toml')).toThrow(ConfigError);
      expect(() => parseRelayConfig(config, 'relay.toml')).toThrow(
        /^relay\.toml:\ntunnel\.linkMbit: /,
      );
    }
  });
});

describe('fuzz: relay config', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'powbridge-fuzz-config-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  fuzz(
    'parseRelayConfig: a config or a ConfigError naming the key, for any object',
    fc.oneof(
      {
        weight: 6,
        arbitrary: fc.tuple(base, fc.nat(), edit, fc.oneof(tomlValue, anyJson), fc.string()),
      },
      // Two edits: a fix in one place and a fault in another.
      {
        weight: 2,
        arbitrary: fc
          .tuple(base, fc.nat(), edit, tomlValue, fc.string(), fc.nat(), edit, tomlValue)
          .map(
            ([b, p1, e1, v1, k, p2, e2, v2]) =>
              [edited(b, p1, e1, v1, k) as object, p2, e2, v2, k] as const,
          ),
      },
      { weight: 1, arbitrary: fc.tuple(fc.constant({}), fc.nat(), edit, anyJson, fc.string()) },
    ),
    ([b, pick, how, value, key]) => {
      const input = edited(b, pick, how, value, key);
      try {
        parseRelayConfig(input, 'fuzz.toml');
      } catch (err) {
        expectRefusal(err, 'fuzz.toml');
      }
    },
    { weight: 0.5 },
  );

  fuzz(
    'loadRelayConfig: a config or a ConfigError naming the key, for any TOML text',
    fc.tuple(
      base,
      fc.nat(),
      edit,
      tomlValue,
      fc.string({ maxLength: 10 }),
      // Text edits after stringifying: broken syntax, duplicate keys, stray characters.
      fc.array(
        fc.tuple(fc.nat(), fc.nat({ max: 8 }), fc.string({ unit: anyCodePoint, maxLength: 6 })),
        { maxLength: 2 },
      ),
    ),
    ([b, pick, how, value, key, textEdits]) => {
      let text: string;
      try {
        text = stringifyToml(edited(b, pick, how, value, key));
      } catch {
        // Not a table TOML can hold (an edit replaced the root): the base then.
        text = stringifyToml(b);
      }
      for (const [at, cut, insert] of textEdits) {
        const i = at % (text.length + 1);
        text = text.slice(0, i) + insert + text.slice(i + cut);
      }
      const file = join(dir, 'relay.toml');
      writeFileSync(file, text);
      try {
        const config = loadRelayConfig(file, {});
        // Relative paths come back resolved against the file's folder.
        expect(config.relay.dataDir.startsWith('/')).toBe(true);
      } catch (err) {
        expectRefusal(err, file);
      }
    },
    { weight: 0.3 },
  );
});
