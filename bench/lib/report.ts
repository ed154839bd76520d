import { parseArgs } from 'node:util';

/**
 * Output of every benchmark (docs/design.md §12): human-readable lines, and with --json one JSON
 * object per figure per line on stdout — {bench, figure, value, unit, baseline, ratio} where
 * ratio = value ÷ a baseline measured in the same run. With --json the human lines go to
 * stderr so stdout stays machine-readable.
 */

export interface Figure {
  bench: string;
  figure: string;
  value: number;
  unit: string;
  baseline?: string;
  ratio?: number;
}

export class Report {
  constructor(
    readonly bench: string,
    readonly json: boolean,
  ) {}

  say(line: string): void {
    (this.json ? process.stderr : process.stdout).write(`${line}\n`);
  }

  /** One figure; `baseline` = [its name, its value in the same unit, same run]. */
  figure(figure: string, value: number, unit: string, baseline?: [string, number]): void {
    const out: Figure = { bench: this.bench, figure, value: round(value, 4), unit };
    if (baseline) {
      out.baseline = baseline[0];
      out.ratio = round(value / baseline[1], 3);
    }
    if (this.json) process.stdout.write(`${JSON.stringify(out)}\n`);
    const ratio = out.ratio === undefined ? '' : `  (${out.ratio}× ${out.baseline})`;
    this.say(`  ${figure}: ${human(value)} ${unit}${ratio}`);
  }
}

export function round(x: number, digits: number): number {
  if (!Number.isFinite(x) || x === 0) return x;
  const scale = 10 ** Math.max(0, digits - Math.ceil(Math.log10(Math.abs(x))));
  return Math.round(x * scale) / scale;
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return Number.NaN;
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

export function human(x: number): string {
  if (Math.abs(x) >= 1e6) return `${(x / 1e6).toFixed(2)} M`;
  if (Math.abs(x) >= 1e4) return `${(x / 1e3).toFixed(1)} k`;
  return x >= 100 ? x.toFixed(0) : x.toPrecision(3);
}

/** Operations per second of `op`, run repeatedly for about `ms` milliseconds. */
export function rate(op: () => void, ms: number): number {
  let n = 0;
  const start = performance.now();
  let now = start;
  while (now - start < ms) {
    for (let i = 0; i < 16; i++) op();
    n += 16;
    now = performance.now();
  }
  return (n * 1000) / (now - start);
}

/** Median of `reps` rate measurements. */
export function medianRate(op: () => void, ms: number, reps: number): number {
  return median(Array.from({ length: reps }, () => rate(op, ms)));
}

/** The flags every measuring benchmark takes: --json, --reps N (median of N), --slice S (s). */
export function benchOptions(bench: string): { report: Report; reps: number; sliceMs: number } {
  const { values } = parseArgs({
    options: {
      json: { type: 'boolean', default: false },
      reps: { type: 'string', default: '5' },
      slice: { type: 'string', default: '1' },
    },
  });
  const reps = Number(values.reps);
  const slice = Number(values.slice);
  if (!Number.isInteger(reps) || reps < 1) throw new Error('--reps: expected a positive integer');
  if (!(slice > 0)) throw new Error('--slice: expected a positive number of seconds');
  return { report: new Report(bench, values.json), reps, sliceMs: slice * 1000 };
}
