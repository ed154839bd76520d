import { median, medianRate, benchOptions } from './lib/report.js';
import { startTsWorker } from './lib/worker.js';
import { issuanceOp, verificationOp } from './tickets-ops.js';
import { redemptionRate } from './tickets-redeem.js';

/**
 * Ticket throughput (issue 4): signer-side issuances, verifications and durable redemptions
 * (verify + fsync'd SQLite check-and-insert) per second, with and without the precomputed window tables (y once, z per day), on one thread and on
 * two worker threads (both cores). Baselines are the no-table rates of the same run.
 *
 *   npm run bench -- tickets [--json] [--reps 5] [--slice 1]
 */

const { report, reps: REPS, sliceMs: SLICE_MS } = benchOptions('tickets');

function threaded(kind: 'issue' | 'verify', threads: number): Promise<number> {
  const url = new URL('./tickets-worker.ts', import.meta.url);
  return Promise.all(
    Array.from(
      { length: threads },
      () =>
        new Promise<number>((resolve, reject) => {
          const worker = startTsWorker(url, { workerData: { kind, ms: SLICE_MS * 2 } });
          worker.once('message', (m: { n: number; seconds: number }) => resolve(m.n / m.seconds));
          worker.once('error', reject);
        }),
    ),
  ).then((rates) => rates.reduce((a, b) => a + b, 0));
}

async function main(): Promise<void> {
  report.say(`tickets: Node ${process.versions.node}, median of ${REPS} × ${SLICE_MS / 1000} s`);
  const issueNoTables = medianRate(issuanceOp(false), SLICE_MS, REPS);
  const issueTables = medianRate(issuanceOp(true), SLICE_MS, REPS);
  report.figure('issuance (signer) 1 thread, no tables', issueNoTables, 'tickets/s');
  report.figure('issuance (signer) 1 thread, tables', issueTables, 'tickets/s', [
    'issuance 1 thread, no tables',
    issueNoTables,
  ]);
  const issueTwo = await threaded('issue', 2);
  report.figure('issuance (signer) 2 threads, tables', issueTwo, 'tickets/s', [
    'issuance 1 thread, tables',
    issueTables,
  ]);

  const verifyNoTables = medianRate(verificationOp(false), SLICE_MS, REPS);
  const verifyTables = medianRate(verificationOp(true), SLICE_MS, REPS);
  report.figure('verification 1 thread, no tables', verifyNoTables, 'tickets/s');
  report.figure('verification 1 thread, tables', verifyTables, 'tickets/s', [
    'verification 1 thread, no tables',
    verifyNoTables,
  ]);
  const verifyTwo = await threaded('verify', 2);
  report.figure('verification 2 threads, tables', verifyTwo, 'tickets/s', [
    'verification 1 thread, tables',
    verifyTables,
  ]);

  // Redemption commits each serial with synchronous=FULL before granting: disk-bound. Many
  // circuits redeeming at once share one fsync per round (group commit).
  const redeem = async (tables: boolean, concurrent: number) => {
    const rates: number[] = [];
    for (let i = 0; i < REPS; i++) rates.push(await redemptionRate(200, tables, concurrent));
    return median(rates);
  };
  const redeemNoTables = await redeem(false, 1);
  const redeemTables = await redeem(true, 1);
  report.figure('redemption (fsync) 1 at a time, no tables', redeemNoTables, 'tickets/s');
  report.figure('redemption (fsync) 1 at a time, tables', redeemTables, 'tickets/s', [
    'redemption 1 at a time, no tables',
    redeemNoTables,
  ]);
  const redeemConcurrent = await redeem(true, 16);
  report.figure(
    'redemption (fsync) 16 concurrent, group commit, tables',
    redeemConcurrent,
    'tickets/s',
    ['redemption 1 at a time, tables', redeemTables],
  );
}

await main();
