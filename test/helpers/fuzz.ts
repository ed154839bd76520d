import { appendFileSync } from 'node:fs';
import fc from 'fast-check';
import { inject, it } from 'vitest';

/**
 * The fuzz suite's knobs (test/fuzz, CONTRIBUTING.md "Fuzzing"). `npm test` runs every property
 * a hundred times (the ones over sockets fewer); `npm run fuzz` runs the same properties with
 * FUZZ_RUNS set high enough that the suite totals over a million cases.
 *
 * - FUZZ_RUNS: cases per property of weight 1 (default 100). A property's weight scales it:
 *   a case that opens a socket or touches SQLite counts for more than a pure parse.
 * - FUZZ_SEED (and FUZZ_PATH): replay a failure; fast-check prints both when a property fails.
 * - FUZZ_TIMEOUT_MS: each property's time limit (default 60 s, or 10 ms a case above that).
 */

declare module 'vitest' {
  export interface ProvidedContext {
    /** A file the fuzz config's global setup sums (vitest.fuzz.config.ts); absent in npm test. */
    fuzzTally: string;
  }
}

const DEFAULT_RUNS = 100;

function envInteger(name: string): number | undefined {
  const text = process.env[name];
  if (text === undefined || text === '') return undefined;
  const value = Number(text);
  if (!Number.isSafeInteger(value)) throw new Error(`${name}: expected an integer, got ${text}`);
  return value;
}

export const fuzzRuns = envInteger('FUZZ_RUNS') ?? DEFAULT_RUNS;
const seed = envInteger('FUZZ_SEED');
const path = process.env.FUZZ_PATH;
const timeoutOverride = envInteger('FUZZ_TIMEOUT_MS');
/** Progress lines only where a property runs long enough to need them (npm run fuzz). */
const PROGRESS_EVERY_MS = 15_000;

export interface FuzzOptions {
  /** Cases relative to FUZZ_RUNS (default 1). */
  weight?: number;
}

function runsOf(options: FuzzOptions): number {
  return Math.max(1, Math.round(fuzzRuns * (options.weight ?? 1)));
}

function timeoutOf(runs: number): number {
  return timeoutOverride ?? Math.max(60_000, runs * 10);
}

function parameters<T>(runs: number, timeoutMs: number): fc.Parameters<T> {
  return {
    numRuns: runs,
    includeErrorInReport: true,
    // Stop before vitest's time limit would, so a failure found late still gets reported
    // (shrunk as far as time allowed) instead of lost in a timeout.
    interruptAfterTimeLimit: timeoutMs - Math.min(10_000, timeoutMs / 10),
    ...(seed !== undefined ? { seed } : {}),
    ...(path !== undefined ? { path } : {}),
  };
}

/** Counts the cases a property ran, prints progress on long runs and adds to the tally. */
class CaseCounter {
  count = 0;
  private readonly started = Date.now();
  private lastReport = this.started;

  constructor(
    private readonly name: string,
    private readonly runs: number,
  ) {}

  tick(): void {
    this.count++;
    if ((this.count & 0x3ff) !== 0) return;
    const now = Date.now();
    if (now - this.lastReport < PROGRESS_EVERY_MS) return;
    this.lastReport = now;
    const seconds = ((now - this.started) / 1000).toFixed(0);
    process.stderr.write(`[fuzz] ${this.name}: ${this.count}/${this.runs} cases, ${seconds} s\n`);
  }

  done(): void {
    const tally = inject('fuzzTally');
    if (typeof tally === 'string' && tally !== '') {
      appendFileSync(tally, `${JSON.stringify({ name: this.name, cases: this.count })}\n`);
    }
  }
}

/**
 * Fails the property if `check` found a problem: fast-check's report carries seed and path.
 * A run cut short by its time limit passes with the cases it ran, and says so.
 */
function report<T>(name: string, details: fc.RunDetails<T>): void {
  if (details.failed) {
    throw new Error(fc.defaultReportMessage(details), { cause: details.errorInstance });
  }
  if (details.interrupted) {
    process.stderr.write(`[fuzz] ${name}: time limit, stopped after ${details.numRuns} cases\n`);
  }
}

/** A property over one generated value that must hold for every value: `check` throws if not. */
export function fuzz<T>(
  name: string,
  arbitrary: fc.Arbitrary<T>,
  check: (value: T) => void,
  options: FuzzOptions = {},
): void {
  const runs = runsOf(options);
  const timeoutMs = timeoutOf(runs);
  it(
    name,
    () => {
      const counter = new CaseCounter(name, runs);
      try {
        report(
          name,
          fc.check(
            fc.property(arbitrary, (value) => {
              counter.tick();
              check(value);
            }),
            parameters(runs, timeoutMs),
          ),
        );
      } finally {
        counter.done();
      }
    },
    timeoutMs,
  );
}

/**
 * The same for async code. A rejection nobody handled while a case ran (or just after: one
 * turn of the event loop) fails that case, so a stray promise is pinned to the input.
 */
export function fuzzAsync<T>(
  name: string,
  arbitrary: fc.Arbitrary<T>,
  check: (value: T) => Promise<void>,
  options: FuzzOptions = {},
): void {
  const runs = runsOf(options);
  const timeoutMs = timeoutOf(runs);
  it(
    name,
    async () => {
      const counter = new CaseCounter(name, runs);
      const stray: unknown[] = [];
      const onRejection = (reason: unknown) => void stray.push(reason);
      process.on('unhandledRejection', onRejection);
      try {
        report(
          name,
          await fc.check(
            fc.asyncProperty(arbitrary, async (value) => {
              counter.tick();
              stray.length = 0;
              await check(value);
              await new Promise((resolve) => setImmediate(resolve));
              if (stray.length > 0) {
                throw new Error(`unhandled rejection: ${String(stray[0])}`);
              }
            }),
            parameters(runs, timeoutMs),
          ),
        );
      } finally {
        process.off('unhandledRejection', onRejection);
        counter.done();
      }
    },
    timeoutMs,
  );
}

/**
 * Resolves once `done()` holds, polling each millisecond; after `limitMs` (a hang limit, far
 * above the time it takes) resolves anyway and the caller's assertion says what is wrong.
 */
export async function settled(done: () => boolean, limitMs = 5_000): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!done() && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

// ---- arbitraries shared by the fuzz files ------------------------------------------------------

/** Lowercase hex of exactly `bytes` bytes. */
export function hexOf(bytes: number): fc.Arbitrary<string> {
  return fc
    .uint8Array({ minLength: bytes, maxLength: bytes })
    .map((b) => Buffer.from(b).toString('hex'));
}

/** Lowercase hex of `min`..`max` bytes. */
export function hexBetween(min: number, max: number): fc.Arbitrary<string> {
  return fc
    .uint8Array({ minLength: min, maxLength: max })
    .map((b) => Buffer.from(b).toString('hex'));
}

/**
 * Any code point but a lone surrogate, mostly ASCII (control characters included). fast-check's
 * own 'binary' unit costs over a second to build, in every test file that uses it.
 */
export const anyCodePoint: fc.Arbitrary<string> = fc
  .oneof(
    { weight: 6, arbitrary: fc.integer({ min: 0, max: 0x7f }) },
    { weight: 2, arbitrary: fc.integer({ min: 0x80, max: 0xd7ff }) },
    { weight: 1, arbitrary: fc.integer({ min: 0xe000, max: 0x10ffff }) },
  )
  .map((code) => String.fromCodePoint(code));

/** Any JSON value, deep enough to reach nested schemas, with the odd huge string. */
export const anyJson: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 8, arbitrary: fc.jsonValue({ maxDepth: 4 }) },
  { weight: 1, arbitrary: fc.string({ unit: anyCodePoint, maxLength: 300 }) },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      '',
      -0,
      0,
      -1,
      1e308,
      2 ** 53,
      2 ** 32,
      0xffffffff,
      'x'.repeat(70_000),
      '00'.repeat(300),
      '__proto__',
      [],
      {},
    ),
  },
);

/**
 * A valid object with one key broken: dropped, replaced by any JSON value, or joined by an
 * unknown key. Most schema bugs sit one field away from a valid message.
 */
export function mutatedRecord(
  valid: fc.Arbitrary<Record<string, unknown>>,
): fc.Arbitrary<{ value: Record<string, unknown>; field: string | null }> {
  return fc
    .tuple(valid, fc.nat(), fc.constantFrom('drop', 'replace', 'add'), anyJson, fc.string())
    .map(([record, index, how, replacement, extraKey]) => {
      const keys = Object.keys(record);
      const key = keys.length > 0 ? keys[index % keys.length] : undefined;
      const value: Record<string, unknown> = { ...record };
      if (how === 'add' || key === undefined) {
        const field = Object.hasOwn(value, extraKey) ? `${extraKey}_` : extraKey;
        Object.defineProperty(value, field, {
          value: replacement,
          enumerable: true,
          writable: true,
          configurable: true,
        });
        return { value, field };
      }
      if (how === 'drop') delete value[key];
      else value[key] = replacement;
      return { value, field: key };
    });
}

/**
 * Text cut at random places into chunks, as TCP delivers it: `cuts` positions (any numbers,
 * folded into the text's length).
 */
export function chunked(bytes: Uint8Array, cuts: readonly number[]): Uint8Array[] {
  const points = [...new Set(cuts.map((c) => (bytes.length === 0 ? 0 : c % bytes.length)))].sort(
    (a, b) => a - b,
  );
  const chunks: Uint8Array[] = [];
  let start = 0;
  for (const point of points) {
    if (point <= start) continue;
    chunks.push(bytes.subarray(start, point));
    start = point;
  }
  chunks.push(bytes.subarray(start));
  return chunks;
}
