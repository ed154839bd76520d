import { setTimeout as sleep } from 'node:timers/promises';
import { StratumPool, type StratumPoolOptions } from '../src/sources/stratum-pool.js';
import type { UpstreamTerms } from '../src/sources/work-source.js';
import {
  NODE_STRATUM_POOL_IGNORES,
  notifyParams,
  ScriptedPool,
  type ScriptedPoolOptions,
} from '../test/helpers/scripted-pool.js';
import { benchOptions, median } from './lib/report.js';

/**
 * How fast the relay's pool client (docs/design.md §3.1) gets to work, and back to work, in
 * real time on loopback, with the relay's defaults (`requestTimeoutSeconds` 10, backoff 0.5 s
 * doubling to 4 s). The pools behave like node-stratum-pool: they never answer
 * mining.configure or mining.extranonce.subscribe, and send a difficulty and a job right after
 * the subscribe answer. Figures are seconds, with their ratio to the request timeout (the
 * stall every connect used to cost) or to the primary retry interval.
 *
 *   npm run bench -- pool-recovery [--json] [--reps 5]
 *
 * - connect.*: start → live, against a pool that ignores configure and one that answers it.
 * - outage.resume: the only pool is down (connections refused) for 6–10 s, then back on the
 *   same port: back → live. Outage lengths are spread over one 4 s backoff step, so the
 *   figures sample the phases of the retry cycle.
 * - failover.closed: the primary's process dies (socket closed, connections refused) →
 *   live on the secondary.
 * - failover.hung: the primary stops answering with its socket open; a share is submitted →
 *   live on the secondary (at most 3 reps: each takes one request timeout).
 * - primary.return: mining on the secondary, the primary comes back → switched to it, with
 *   `primaryRetryMs` 5 s (at most 3 reps, spread over the probe interval).
 */

const { report, reps: REPS } = benchOptions('pool-recovery');
const REQUEST_TIMEOUT_MS = 10_000;
const PRIMARY_RETRY_MS = 5_000;
const SLOW_REPS = Math.min(REPS, 3);

const timeout: [string, number] = ['requestTimeout', REQUEST_TIMEOUT_MS / 1000];

async function nodeStratumPool(options: ScriptedPoolOptions = {}): Promise<ScriptedPool> {
  const pool = await ScriptedPool.start(options);
  pool.ignore(...NODE_STRATUM_POOL_IGNORES);
  const subscribe = pool.handlers['mining.subscribe'];
  pool.handlers['mining.subscribe'] = (m, c) => {
    subscribe?.(m, c);
    c.notify('mining.set_difficulty', [8]);
    c.notify('mining.notify', notifyParams('j1'));
  };
  return pool;
}

function startClient(pools: ScriptedPool[], options: Partial<StratumPoolOptions> = {}) {
  const source = new StratumPool({
    pools: pools.map((p) => ({ url: p.url, user: 'bench.rig', password: 'x' })),
    algorithm: 'scrypt',
    requestTimeoutMs: REQUEST_TIMEOUT_MS,
    ...options,
  });
  source.start();
  return source;
}

/** performance.now() when the source emits terms from the pool with this extranonce1. */
function termsFrom(source: StratumPool, extranonce1: string): Promise<number> {
  return new Promise((resolve) => {
    const onTerms = (terms: UpstreamTerms) => {
      if (terms.extranonce1 !== extranonce1) return;
      source.off('terms', onTerms);
      resolve(performance.now());
    };
    source.on('terms', onTerms);
  });
}

/** A port nothing listens on (connections are refused), to restart a pool on later. */
async function downPort(): Promise<number> {
  const pool = await ScriptedPool.start();
  await pool.close();
  return pool.port;
}

/** Rep `rep` of `reps`: evenly spread over [from, from + width), so phases differ. */
function spread(rep: number, reps: number, from: number, width: number): number {
  return from + (rep * width) / reps;
}

async function connect(answersConfigure: boolean): Promise<number> {
  const pool = answersConfigure ? await ScriptedPool.start() : await nodeStratumPool();
  const started = performance.now();
  const source = startClient([pool]);
  const live = await termsFrom(source, pool.extranonce1);
  await source.stop();
  await pool.close();
  return (live - started) / 1000;
}

async function outageResume(rep: number): Promise<number> {
  let pool = await nodeStratumPool();
  const port = pool.port;
  const source = startClient([pool]);
  await termsFrom(source, pool.extranonce1);
  await pool.close();
  await sleep(spread(rep, REPS, 6_000, 4_000));
  pool = await nodeStratumPool({ port, extranonce1: 'f0000002' });
  const back = performance.now();
  const live = await termsFrom(source, 'f0000002');
  await source.stop();
  await pool.close();
  return (live - back) / 1000;
}

async function failoverClosed(): Promise<number> {
  const primary = await nodeStratumPool({ extranonce1: 'a0000001' });
  const secondary = await nodeStratumPool({ extranonce1: 'b0000002' });
  const source = startClient([primary, secondary]);
  await termsFrom(source, 'a0000001');
  const moved = termsFrom(source, 'b0000002');
  const died = performance.now();
  await primary.close();
  const live = await moved;
  await source.stop();
  await secondary.close();
  return (live - died) / 1000;
}

async function failoverHung(): Promise<number> {
  const primary = await nodeStratumPool({ extranonce1: 'a0000001' });
  const secondary = await nodeStratumPool({ extranonce1: 'b0000002' });
  const source = startClient([primary, secondary]);
  await termsFrom(source, 'a0000001');
  const session = source.status().terms?.session ?? 0;
  primary.answering = false;
  const moved = termsFrom(source, 'b0000002');
  const submitted = performance.now();
  void source.submit({
    session,
    jobId: 'j1',
    extranonce2: '00000001',
    ntime: '5f5e1000',
    nonce: '00000001',
  });
  const live = await moved;
  await source.stop();
  await primary.close();
  await secondary.close();
  return (live - submitted) / 1000;
}

async function primaryReturn(rep: number): Promise<number> {
  const port = await downPort();
  const secondary = await nodeStratumPool({ extranonce1: 'b0000002' });
  const primaryUrl = `stratum+tcp://127.0.0.1:${port}`;
  const source = new StratumPool({
    pools: [
      { url: primaryUrl, user: 'bench.rig', password: 'x' },
      { url: secondary.url, user: 'bench.rig', password: 'x' },
    ],
    algorithm: 'scrypt',
    requestTimeoutMs: REQUEST_TIMEOUT_MS,
    primaryRetryMs: PRIMARY_RETRY_MS,
  });
  const onSecondary = termsFrom(source, 'b0000002');
  source.start();
  await onSecondary;
  await sleep(spread(rep, SLOW_REPS, 1_000, PRIMARY_RETRY_MS));
  const switched = termsFrom(source, 'a0000001');
  const primary = await nodeStratumPool({ port, extranonce1: 'a0000001' });
  const back = performance.now();
  const live = await switched;
  await source.stop();
  await primary.close();
  await secondary.close();
  return (live - back) / 1000;
}

async function repeat(reps: number, run: (rep: number) => Promise<number>): Promise<number[]> {
  const values: number[] = [];
  for (let rep = 0; rep < reps; rep++) values.push(await run(rep));
  return values;
}

report.say(`pool-recovery: request timeout ${REQUEST_TIMEOUT_MS / 1000} s, ${REPS} reps`);
await connect(true); // warm-up: module loading and the first connection are not the figure

const ignoring = await repeat(REPS, () => connect(false));
report.figure('connect.ignores-configure.median', median(ignoring), 's', timeout);
report.figure('connect.ignores-configure.max', Math.max(...ignoring), 's', timeout);
const answering = await repeat(REPS, () => connect(true));
report.figure('connect.answers-configure.median', median(answering), 's', timeout);

const resumes = await repeat(REPS, outageResume);
report.figure('outage.resume.median', median(resumes), 's', timeout);
report.figure('outage.resume.max', Math.max(...resumes), 's', timeout);

const closed = await repeat(REPS, failoverClosed);
report.figure('failover.closed.median', median(closed), 's', timeout);
report.figure('failover.closed.max', Math.max(...closed), 's', timeout);

const hung = await repeat(SLOW_REPS, failoverHung);
report.figure('failover.hung.median', median(hung), 's', timeout);
report.figure('failover.hung.max', Math.max(...hung), 's', timeout);

const returns = await repeat(SLOW_REPS, primaryReturn);
const retry: [string, number] = ['primaryRetry', PRIMARY_RETRY_MS / 1000];
report.figure('primary.return.median', median(returns), 's', retry);
report.figure('primary.return.max', Math.max(...returns), 's', retry);
