/**
 * The miner's control block: one SharedArrayBuffer that the main thread and every mining
 * worker see. Shared memory, not messages, because a worker inside a synchronous scan loop
 * never runs its event loop: it cannot receive a "stop" message, but it can read a word
 * between two kernel calls (Atomics.load costs nanoseconds), and it can sleep on that word
 * with Atomics.wait so a stop also cuts a duty-cycle pause short.
 *
 * Layout: int32 generation, int32 duty (parts per 10 000), then one int64 hash counter per
 * lane (a lane is one worker's share of the work: lane i mines extranonce2 i, i + threads, ...).
 */

const GENERATION = 0;
const DUTY = 1;
const HEADER_BYTES = 8;
export const FULL_DUTY = 10_000;

export interface ControlViews {
  readonly words: Int32Array;
  readonly hashes: BigInt64Array;
}

export function createControl(lanes: number): SharedArrayBuffer {
  const buffer = new SharedArrayBuffer(HEADER_BYTES + 8 * lanes);
  Atomics.store(controlViews(buffer).words, DUTY, FULL_DUTY);
  return buffer;
}

export function controlViews(buffer: SharedArrayBuffer): ControlViews {
  return {
    words: new Int32Array(buffer, 0, 2),
    hashes: new BigInt64Array(buffer, HEADER_BYTES),
  };
}

export function currentGeneration(views: ControlViews): number {
  return Atomics.load(views.words, GENERATION);
}

/** Start a new generation: every task of an older one returns at its next check. */
export function nextGeneration(views: ControlViews): number {
  const generation = (Atomics.add(views.words, GENERATION, 1) + 1) | 0;
  // Wake workers sleeping out their duty cycle on the generation word.
  Atomics.notify(views.words, GENERATION);
  return generation;
}

/**
 * Sleep up to `ms` unless the generation moves on from `generation`; returns at once when it
 * already has. The only blocking wait in a worker, so a stop never waits out a pause.
 */
export function sleepUnlessStopped(views: ControlViews, generation: number, ms: number): void {
  Atomics.wait(views.words, GENERATION, generation, ms);
}

/** The busy fraction workers aim for, in (0, 1]. */
export function readDuty(views: ControlViews): number {
  return Atomics.load(views.words, DUTY) / FULL_DUTY;
}

export function writeDuty(views: ControlViews, percent: number): void {
  const parts = Math.round((percent / 100) * FULL_DUTY);
  Atomics.store(views.words, DUTY, Math.min(FULL_DUTY, Math.max(1, parts)));
}

export function addHashes(views: ControlViews, lane: number, count: number): void {
  Atomics.add(views.hashes, lane, BigInt(count));
}

export function laneHashes(views: ControlViews, lane: number): number {
  return Number(Atomics.load(views.hashes, lane));
}
