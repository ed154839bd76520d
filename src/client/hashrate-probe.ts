import { randomBytes } from 'node:crypto';
import { availableParallelism, loadavg } from 'node:os';
import type { Algorithm } from '../work/algorithm.js';
import { controlViews, createControl, laneHashes, nextGeneration } from './miner-control.js';
import { createMinePool, type MinePool } from './miner-pool.js';

/**
 * This machine's hash rate with the miner's own worker threads and WebAssembly kernels, for
 * `powbridge terms`: each thread scans a random header's nonces against a target nothing
 * meets, counted through the miner's control block exactly as when mining.
 */

export interface HashrateMeasurement {
  algorithm: Algorithm;
  threads: number;
  /** Seconds measured, after every thread had started hashing. */
  seconds: number;
  hashes: number;
  /** Hashes per second, all threads together. */
  hps: number;
  /**
   * The machine's one-minute load average and CPUs when the measurement ended: other work on
   * a busy machine takes its share of the cores, and the figure comes out low.
   */
  load: { average: number; cpus: number };
}

export interface MeasureOptions {
  algorithm: Algorithm;
  threads: number;
  /** How long to count once every thread hashes (default 2 s). */
  seconds?: number;
  /** The miner's pool by default; tests may pass their own. */
  createPool?: (threads: number) => MinePool;
}

/** Every thread must have hashed within this long, or the kernels failed to load. */
const START_TIMEOUT_MS = 30_000;
const POLL_MS = 20;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export async function measureHashrate(options: MeasureOptions): Promise<HashrateMeasurement> {
  const { algorithm, threads } = options;
  const seconds = options.seconds ?? 2;
  if (!(Number.isInteger(threads) && threads >= 1)) {
    throw new RangeError(`threads must be a whole number >= 1, got ${threads}`);
  }
  const pool = (options.createPool ?? createMinePool)(threads);
  const control = createControl(threads);
  const views = controlViews(control);
  const generation = nextGeneration(views);
  const lanes = Array.from({ length: threads }, (_, lane) => lane);
  const count = () => lanes.reduce((sum, lane) => sum + laneHashes(views, lane), 0);
  // A task that fails (the worker file missing) ends the measurement with its error.
  const failed: { error: Error | null } = { error: null };
  const tasks = lanes.map((lane) =>
    pool
      .run(
        {
          algorithm,
          lane,
          generation,
          header76: randomBytes(76),
          // No hash is 0: nothing is ever found, so only the counting is measured.
          target: 0n,
          control,
        },
        () => {},
      )
      .catch((err: unknown) => {
        failed.error ??= err instanceof Error ? err : new Error(String(err));
      }),
  );
  try {
    // The first kernel call of a thread compiles its WebAssembly: start counting after it.
    const startBy = performance.now() + START_TIMEOUT_MS;
    while (lanes.some((lane) => laneHashes(views, lane) === 0)) {
      if (failed.error !== null) throw failed.error;
      if (performance.now() > startBy) throw new Error('the mining threads did not start');
      await sleep(POLL_MS);
    }
    const startHashes = count();
    const started = performance.now();
    await sleep(seconds * 1000);
    if (failed.error !== null) throw failed.error;
    const hashes = count() - startHashes;
    const elapsed = (performance.now() - started) / 1000;
    return {
      algorithm,
      threads,
      seconds: elapsed,
      hashes,
      hps: hashes / elapsed,
      load: { average: loadavg()[0] ?? 0, cpus: availableParallelism() },
    };
  } finally {
    nextGeneration(views);
    await Promise.all(tasks);
    await pool.close();
  }
}
