import { loadavg } from 'node:os';
import { createBlindSignerPool } from '../src/tickets/blind-signer.js';
import { utcDay } from '../src/tickets/keyring.js';
import { median, medianRate, benchOptions } from './lib/report.js';
import { startTsWorker } from './lib/worker.js';
import { aoUnderLatency, rsaUnderLatency, type LatencyOptions } from './tickets-latency.js';
import { issuanceOp, verificationOp } from './tickets-ops.js';
import { poolRate } from './tickets-pool.js';
import { redemptionRate, rsaRedemptionRate } from './tickets-redeem.js';
import { rsaSchemeFigures, storedKey } from './tickets-rsa.js';

/**
 * Ticket throughput, both schemes side by side in one run (issues 4 and 14):
 * - Abe–Okamoto (v1): signer-side issuance, verification and durable redemption (verify +
 *   fsync'd SQLite check-and-insert), with and without the window tables, 1 and 2 threads;
 * - partially blind RSA (v2, docs/design.md §6.5): the scheme alone (bench/tickets-rsa.ts),
 *   issuance through the relay's signer pool (2 and 1 threads, batch-screened, and with every
 *   signature checked alone as the baseline), durable redemption, the client's blind + finalize;
 * - issuance with simulated round trips, many circuits at once: RSA against AO with K = 4.
 * Baselines are measured in the same run. The pool runs dist/workers: `npm run build` first.
 *
 *   npm run bench -- tickets [--json] [--reps 5] [--slice 1]
 */

const { report, reps: REPS, sliceMs: SLICE_MS } = benchOptions('tickets');
const LATENCY: LatencyOptions = { circuits: 1000, rttMs: 200, warmupMs: 1000, windowMs: 5000 };
const AO_SESSIONS = 4;

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

async function medianOf(reps: number, measure: () => Promise<number>): Promise<number> {
  const values: number[] = [];
  for (let i = 0; i < reps; i++) values.push(await measure());
  return median(values);
}

/** Abe–Okamoto; returns the redemption rate one at a time (tables), for the RSA ratio. */
async function aoFigures(): Promise<number> {
  report.say('Abe–Okamoto (v1 tickets):');
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
  const redeemNoTables = await medianOf(REPS, () => redemptionRate(200, false, 1));
  const redeemTables = await medianOf(REPS, () => redemptionRate(200, true, 1));
  report.figure('redemption (fsync) 1 at a time, no tables', redeemNoTables, 'tickets/s');
  report.figure('redemption (fsync) 1 at a time, tables', redeemTables, 'tickets/s', [
    'redemption 1 at a time, no tables',
    redeemNoTables,
  ]);
  const redeemConcurrent = await medianOf(REPS, () => redemptionRate(200, true, 16));
  report.figure(
    'redemption (fsync) 16 concurrent, group commit, tables',
    redeemConcurrent,
    'tickets/s',
    ['redemption 1 at a time, tables', redeemTables],
  );
  return redeemTables;
}

async function rsaFigures(aoRedeem: number): Promise<void> {
  report.say('Partially blind RSA (v2 tickets):');
  const key = storedKey();
  const day = utcDay(Date.now() / 1000);
  const inline = await rsaSchemeFigures(report, key, day, { reps: REPS, sliceMs: SLICE_MS });

  const pool = (threads: number, maxBatch?: number) =>
    poolRate(key, day, { threads, reps: REPS, ms: SLICE_MS, ...(maxBatch ? { maxBatch } : {}) });
  const alone = await pool(2, 1);
  const screened = await pool(2);
  const oneThread = await pool(1);
  report.figure('RSA issuance, pool 2 threads, each checked alone', alone.wall, 'tickets/s', [
    'sign + check 1 thread',
    inline,
  ]);
  report.figure('RSA issuance, pool 2 threads, batch-screened', screened.wall, 'tickets/s', [
    'pool 2 threads, each checked alone',
    alone.wall,
  ]);
  report.figure('RSA issuance, pool 1 thread, batch-screened', oneThread.wall, 'tickets/s', [
    'sign + check 1 thread',
    inline,
  ]);
  report.figure('RSA issuance, pool, each checked alone, per CPU-second', alone.cpu, 'tickets/s');
  report.figure('RSA issuance, pool, batch-screened, per CPU-second', screened.cpu, 'tickets/s', [
    'each checked alone, per CPU-second',
    alone.cpu,
  ]);

  const redeem = await medianOf(REPS, () => rsaRedemptionRate(key, 200, 1));
  report.figure('RSA redemption (fsync) 1 at a time', redeem, 'tickets/s', [
    'AO redemption 1 at a time, tables',
    aoRedeem,
  ]);
  const redeemConcurrent = await medianOf(REPS, () => rsaRedemptionRate(key, 200, 16));
  report.figure(
    'RSA redemption (fsync) 16 concurrent, group commit',
    redeemConcurrent,
    'tickets/s',
    ['RSA redemption 1 at a time', redeem],
  );
}

/** Many circuits at once over slow round trips: where Abe–Okamoto's K slots bite. */
async function latencyFigures(): Promise<void> {
  const { circuits, rttMs } = LATENCY;
  report.say(`Issuance with ${circuits} concurrent circuits, ${rttMs} ms simulated round trips:`);
  const ao = await aoUnderLatency(AO_SESSIONS, LATENCY);
  report.figure(`AO issuance, K = ${AO_SESSIONS}, ${circuits} circuits`, ao, 'tickets/s');
  const signer = createBlindSignerPool({ threads: 2 });
  try {
    const rsa = await rsaUnderLatency(storedKey(), signer, LATENCY);
    report.figure(`RSA issuance, pool 2 threads, ${circuits} circuits`, rsa, 'tickets/s', [
      `AO K = ${AO_SESSIONS}`,
      ao,
    ]);
  } finally {
    await signer.close();
  }
}

async function main(): Promise<void> {
  const load = loadavg()
    .map((l) => l.toFixed(1))
    .join(' ');
  report.say(
    `tickets: Node ${process.versions.node}, median of ${REPS} × ${SLICE_MS / 1000} s, load average ${load}`,
  );
  const aoRedeem = await aoFigures();
  await rsaFigures(aoRedeem);
  await latencyFigures();
  report.say(
    `load average at the end: ${loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}`,
  );
}

await main();
