import { expect } from 'vitest';
import type { Stratifier } from '../../src/relay/stratifier.js';
import { settled } from '../helpers/fuzz.js';
import { ManualSource } from '../helpers/manual-source.js';
import { startTestStratifier } from '../helpers/test-stratifier.js';

/**
 * The stratifier behind the fuzzed relay ports (circuit and Stratum): live on a sha256d job at
 * difficulty 2^-31, where half of all nonces meet the target, so fuzzed shares are accepted,
 * duplicated or too low. `current()` names the job a share must name to reach the checks.
 */
export interface LiveStratifier {
  source: ManualSource;
  stratifier: Stratifier;
  current(): { jobId: string; ntime: string };
}

export async function startLiveStratifier(
  options: { extranonce2Size?: number } = {},
): Promise<LiveStratifier> {
  const source = new ManualSource('sha256d');
  const stratifier = await startTestStratifier(source, { pinned: true, difficulty: 2 ** -31 });
  let jobId = '';
  stratifier.on('job', (job) => {
    jobId = job.jobId;
  });
  const { ntime } = source.goLive(
    options.extranonce2Size === undefined ? {} : { extranonce2Size: options.extranonce2Size },
  );
  return { source, stratifier, current: () => ({ jobId, ntime }) };
}

/** Once a fuzzed client is gone, so are its connection and its session. */
export async function expectReleased(
  connections: () => number,
  stratifier: Stratifier,
  clientsBefore: number,
): Promise<void> {
  await settled(() => connections() === 0 && stratifier.clientCount === clientsBefore);
  expect(connections()).toBe(0);
  expect(stratifier.clientCount).toBe(clientsBefore);
}
