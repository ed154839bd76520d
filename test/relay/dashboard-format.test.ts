import { describe, expect, it } from 'vitest';

/**
 * The dashboard's pure browser modules, imported as the page imports them (plain ESM served
 * as is, outside the TypeScript program: hence the typed dynamic import).
 */

type Values = readonly (number | null)[];

interface FormatModule {
  formatSi(value: number): string;
  formatUnit(value: number | null, unit: string): string;
  formatCount(value: number): string;
  formatDuration(seconds: number): string;
  shortHex(hex: string): string;
}

interface RatesModule {
  ratesOf(times: readonly number[], totals: Values, per: number): (number | null)[];
  recentRate(
    times: readonly number[],
    totals: Values,
    windowSeconds: number,
    per: number,
  ): number | null;
  labelled(series: Record<string, Values>, name: string): Record<string, Values>;
  minus(a: Values, b: Values): (number | null)[];
  sum(parts: readonly Values[], length: number): (number | null)[];
  latest(values: Values): number | null;
}

async function browserModule<T>(file: string): Promise<T> {
  const url = new URL(`../../src/relay/dashboard/public/${file}`, import.meta.url).href;
  return (await import(url)) as T;
}

const format = await browserModule<FormatModule>('format.js');
const rates = await browserModule<RatesModule>('rates.js');

describe('dashboard number formatting (format.js)', () => {
  it('keeps the zeros of whole numbers and drops only those after a decimal point', () => {
    const cases: [number, string][] = [
      [0, '0'],
      [-0, '0'],
      [1, '1'],
      [10, '10'],
      [100, '100'],
      [150, '150'],
      [200, '200'],
      [999, '999'],
      [1000, '1 k'],
      [1500, '1.5 k'],
      [1e5, '100 k'],
      [1.5e6, '1.5 M'],
      [1234567, '1.23 M'],
      [2e9, '2 G'],
      [0.25, '0.25'],
      [0.1, '0.1'],
      [2 ** -10, '9.77e-4'],
      [2 ** -16, '1.53e-5'],
      [1e-6, '1e-6'],
      [9.996, '10'],
      [99.96, '100'],
      [999.6, '1 k'],
      [-150, '-150'],
      [-1.5e6, '-1.5 M'],
      [-(2 ** -16), '-1.53e-5'],
    ];
    for (const [value, text] of cases) expect(format.formatSi(value), String(value)).toBe(text);
  });

  it('shows a dash for what is not a number', () => {
    for (const value of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
      expect(format.formatSi(value)).toBe('–');
      expect(format.formatCount(value)).toBe('–');
    }
    expect(format.formatUnit(null, 'H/s')).toBe('–');
  });

  it('labels a hash-rate axis with every digit (issue 16: it read "2 / 15 / 1 / 50 / 0")', () => {
    expect([200, 150, 100, 50, 0].map((v) => format.formatSi(v))).toEqual([
      '200',
      '150',
      '100',
      '50',
      '0',
    ]);
    expect([2000, 1500, 1000, 500].map((v) => format.formatSi(v))).toEqual([
      '2 k',
      '1.5 k',
      '1 k',
      '500',
    ]);
  });

  it('joins the SI prefix to a unit, and a per-time unit to the number', () => {
    expect(format.formatUnit(1320, 'H/s')).toBe('1.32 kH/s');
    expect(format.formatUnit(150, 'H/s')).toBe('150 H/s');
    expect(format.formatUnit(2.5, '/min')).toBe('2.5/min');
    expect(format.formatUnit(1.5e6, 'bit/s')).toBe('1.5 Mbit/s');
  });

  it('groups counts, and shortens durations and hashes', () => {
    expect(format.formatCount(12345.4)).toBe('12,345');
    expect(format.formatDuration(42)).toBe('42s');
    expect(format.formatDuration(3725)).toBe('1h 2m');
    expect(format.formatDuration(600)).toBe('10m');
    expect(format.formatDuration(86_400 + 60)).toBe('1d');
    expect(format.formatDuration(-1)).toBe('–');
    expect(format.shortHex('ab'.repeat(32))).toBe('abababababab…ababab');
    expect(format.shortHex('abcd')).toBe('abcd');
  });
});

describe('dashboard rates from the history of totals (rates.js)', () => {
  const times = [100, 110, 120, 130, 140];

  it('gives the rate between each sample and the one before, per unit of time', () => {
    expect(rates.ratesOf(times, [0, 5, 5, 20, 30], 60)).toEqual([null, 30, 0, 90, 60]);
    // A gap, or a total that went down (a restart), has no rate.
    expect(rates.ratesOf(times, [0, null, 5, 2, 4], 1)).toEqual([null, null, null, null, 0.2]);
    expect(rates.ratesOf([100, 100], [1, 2], 1)).toEqual([null, null]);
  });

  it('gives the rate over the newest window, or over all there is while it is shorter', () => {
    expect(rates.recentRate(times, [0, 5, 5, 20, 30], 20, 60)).toBe(((30 - 5) / 20) * 60);
    expect(rates.recentRate(times, [0, 5, 5, 20, 30], 300, 1)).toBe(30 / 40);
    // A window shorter than one interval still uses the last two samples.
    expect(rates.recentRate(times, [0, 5, 5, 20, 30], 5, 1)).toBe(1);
    expect(rates.recentRate([100], [3], 300, 1)).toBeNull();
    expect(rates.recentRate(times, [0, 5, 5, 20, null], 300, 1)).toBeNull();
  });

  it('picks the labels of one series name, and adds and subtracts series', () => {
    const series = {
      'shares.accepted': [1],
      'shares.rejected:stale': [2],
      'shares.rejected:low-difficulty': [3],
      'qos.bytesSent:a:b': [4],
    };
    expect(rates.labelled(series, 'shares.rejected')).toEqual({
      stale: [2],
      'low-difficulty': [3],
    });
    expect(rates.labelled(series, 'qos.bytesSent')).toEqual({ 'a:b': [4] });
    expect(
      rates.sum(
        [
          [1, 2, null],
          [3, 4, 5],
        ],
        3,
      ),
    ).toEqual([4, 6, null]);
    expect(rates.sum([], 2)).toEqual([0, 0]);
    expect(rates.minus([5, null, 7], [1, 2, 3])).toEqual([4, null, 4]);
    expect(rates.latest([1, 2, null])).toBe(2);
    expect(rates.latest([null])).toBeNull();
  });
});
