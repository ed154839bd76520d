import { describe, expect, it } from 'vitest';
import {
  htbClassTreeSchema,
  htbConfigSchema,
  htbSpec,
  parseHtbConfig,
  type ClassInput,
} from '../../src/qos/htb-config.js';

const tree: ClassInput[] = [
  { name: 'leaf', parent: 'mid', rate: '1mbit', prio: 2 },
  { name: 'mid', parent: 'root', rate: '4mbit', ceil: '10mbit' },
  { name: 'root', rate: '10mbit' },
];

describe('the class tree schema (what the relay config embeds)', () => {
  it('puts each problem at its key, relative to the list', () => {
    const result = htbClassTreeSchema.safeParse([
      { name: 'root', rate: '10mbit' },
      { name: 'a', parent: 'root', rate: '2mbit', ceil: '1mbit', prio: 8, colour: 'red' },
    ]);
    expect(result.success).toBe(false);
    expect(result.error?.issues.map((i) => [i.path.join('.'), i.message])).toEqual([
      ['1.prio', 'must be an integer in [0, 7]'],
      // The relay config says "unknown key colour", parseHtbConfig 'unknown field "colour"'.
      ['1', 'Unrecognized key: "colour"'],
      ['1.ceil', 'ceil (125000 B/s) below rate (250000 B/s)'],
    ]);
    const tree = htbClassTreeSchema.safeParse([
      { name: 'root', rate: 1 },
      { name: 'a', parent: 'b', rate: 1 },
      { name: 'b', parent: 'a', rate: 1 },
    ]);
    expect(tree.error?.issues.map((i) => [i.path.join('.'), i.message])).toEqual([
      ['1.parent', 'not under the root (parent cycle)'],
    ]);
  });

  it('outputs rates in bytes/s with parents first, and parses its own output to itself', () => {
    const checked = htbClassTreeSchema.parse(tree);
    expect(checked.map((c) => [c.name, c.rate, c.ceil])).toEqual([
      ['root', 1_250_000, undefined],
      ['mid', 500_000, 1_250_000],
      ['leaf', 125_000, undefined],
    ]);
    expect(htbClassTreeSchema.parse(checked)).toEqual(checked);
  });

  it('htbSpec of a checked tree is what parseHtbConfig makes of the raw one', () => {
    const checked = htbClassTreeSchema.parse(tree);
    expect(htbSpec(checked)).toEqual(parseHtbConfig({ classes: tree }));
    const { classes, r2q } = htbConfigSchema.parse({ classes: tree, r2q: 5 });
    expect(htbSpec(classes, r2q)).toEqual(parseHtbConfig({ classes: tree, r2q: 5 }));
    expect(htbSpec(classes, r2q).classes.find((c) => c.name === 'leaf')?.quantum).toBe(25_000);
  });

  it('only a checked tree reaches htbSpec', () => {
    const unchecked = [{ name: 'root', rate: 1000 }];
    // @ts-expect-error an array that did not go through the schema is not an HtbClassTree
    expect(htbSpec(unchecked).classes).toHaveLength(1);
  });
});
