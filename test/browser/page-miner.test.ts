import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { type MiningLanes, PageMiner } from '../../src/browser/page-miner.js';
import { addHashes, controlViews } from '../../src/client/miner-control.js';
import { ManualSource } from '../helpers/manual-source.js';

/**
 * The miner page's hash-rate figure (src/browser/page-miner.ts): no rate is claimed before the
 * meter has measured one (the page shows "–" rather than "0 H/s"), a rate after the first
 * one-second sample, and none again once stopped. The lanes are a stand-in that does a fixed
 * amount of work per task, the clock is vitest's.
 */

const HASHES_PER_TASK = 4096;

/** Lanes that count a task's hashes at once and then hold it, as a busy worker does. */
function countingLanes(threads: number): MiningLanes & { tasks: number } {
  const lanes = {
    threads,
    tasks: 0,
    run: (lane: number, task: Parameters<MiningLanes['run']>[1]) => {
      lanes.tasks += 1;
      addHashes(controlViews(task.control), lane, HASHES_PER_TASK);
      return new Promise<never>(() => undefined);
    },
    close: () => undefined,
  };
  return lanes;
}

/** A started miner on a live source's first job, fed as the page feeds it (after start). */
function startedMiner(lanes: MiningLanes): PageMiner {
  const source = new ManualSource('sha256d');
  const job = source.goLive();
  const terms = source.status().terms;
  if (!terms) throw new Error('no terms');
  const miner = new PageMiner({
    algorithm: 'sha256d',
    lanes,
    submit: () => Promise.resolve({ accepted: true }),
    cpuPercent: 100,
    jitterPercent: 0,
    random: () => 0.5,
    onShare: () => undefined,
  });
  expect(miner.measuredHashrate).toBeNull();
  miner.start();
  miner.onTerms(terms);
  miner.onJob(job);
  miner.setLive(true);
  return miner;
}

describe('PageMiner hash rate', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'setInterval', 'clearInterval', 'performance'] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('claims no rate until a second has been measured, then the measured one', async () => {
    const lanes = countingLanes(2);
    const miner = startedMiner(lanes);
    await vi.advanceTimersByTimeAsync(999);
    // Hashes were done, but one sample is no rate: the page shows a dash, not "0 H/s".
    expect(lanes.tasks).toBe(2);
    expect(miner.stats().hashes).toBe(2 * HASHES_PER_TASK);
    expect(miner.measuredHashrate).toBeNull();
    await vi.advanceTimersByTimeAsync(1);
    expect(miner.measuredHashrate).toBe(2 * HASHES_PER_TASK);
    expect(miner.stats().hashrate).toBe(2 * HASHES_PER_TASK);
    miner.stop();
    expect(miner.measuredHashrate).toBeNull();
  });
});
