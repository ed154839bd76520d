import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CircuitClient } from '../../src/client/circuit-client.js';
import type { JobParams } from '../../src/protocol/messages.js';
import { CircuitConnector } from '../../src/relay/circuit-connector.js';
import type { ClientSession } from '../../src/relay/client-session.js';
import type { PeerApiStatus } from '../../src/peers/peer-api-guard.js';
import type { PeerStatus } from '../../src/peers/peer-status.js';
import { HtbShaper } from '../../src/qos/htb-shaper.js';
import { createHttpApi, relayDescriptor } from '../../src/relay/http-api.js';
import { RelayMetrics } from '../../src/relay/metrics.js';
import { hashesPerDifficulty, RelayStats } from '../../src/relay/stats.js';
import { relayStatusSchema, relayStatusWithPeersSchema } from '../../src/relay/status-schema.js';
import type { Stratifier } from '../../src/relay/stratifier.js';
import { headerFromJob } from '../../src/work/header.js';
import { u32ToHex } from '../../src/work/hex.js';
import type { ShareSubmission } from '../../src/work/job.js';
import { createPowHasher, type PowHasher } from '../../src/work/pow.js';
import { difficultyToTarget, hashMeetsTarget, nbitsToTarget } from '../../src/work/target.js';
import { ManualSource } from '../helpers/manual-source.js';
import { testHttpApi } from '../helpers/http-api.js';
import { startTestStratifier } from '../helpers/test-stratifier.js';
import { metricTypes, parseMetrics } from '../helpers/metrics-text.js';

const ZERO_REJECTS = {
  other: 0,
  stale: 0,
  duplicate: 0,
  'low-difficulty': 0,
  unauthorized: 0,
  'not-registered': 0,
};

const DIFFICULTY = 2 ** -28;
const H = hashesPerDifficulty('sha256d');

let clock: number;
let hasher: PowHasher;
let source: ManualSource;
let stratifier: Stratifier;
let stats: RelayStats;
let metrics: RelayMetrics;
let app: FastifyInstance;
let logLines: string[];

const descriptor = relayDescriptor({
  algorithm: 'sha256d',
  initialDifficulty: DIFFICULTY,
  ticketDifficulty: DIFFICULTY,
  vardiffTargetSeconds: 15,
});

beforeEach(async () => {
  clock = 5_000;
  hasher = await createPowHasher('sha256d');
  source = new ManualSource('sha256d');
  stratifier = await startTestStratifier(source, { difficulty: DIFFICULTY, pinned: true, hasher });
  stats = new RelayStats({ now: () => clock });
  stats.attach(stratifier);
  // Process metrics start observers that live as long as the process: one test covers them.
  metrics = new RelayMetrics(stats, { processMetrics: false });
  logLines = [];
  const logStream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      logLines.push(chunk.toString('utf8'));
      done();
    },
  });
  app = createHttpApi({
    stratifier,
    stats,
    metrics,
    descriptor: () => descriptor,
    upstreamUrl: () => 'stratum+tcp://pool.example:3333',
    logger: pino(logStream),
  });
});

afterEach(async () => {
  await app.close();
  stats.detach();
  stratifier.stop();
});

async function getJson(url: string): Promise<{ status: number; body: unknown }> {
  const response = await app.inject({ method: 'GET', url });
  expect(response.headers['content-type']).toMatch(/^application\/json/);
  return { status: response.statusCode, body: response.json() };
}

describe('http api (injected requests)', () => {
  it('serves the status with exactly the declared fields', async () => {
    const status = await getJson('/v1/status');
    expect(relayStatusSchema.parse(status.body)).toEqual(status.body);
    expect(status).toEqual({
      status: 200,
      body: {
        upstream: {
          state: 'connecting',
          url: 'stratum+tcp://pool.example:3333',
          difficulty: null,
          extranonce2Size: null,
          since: 5_000,
        },
        clients: 0,
        hashrate: { hps: 0, windowSeconds: 300 },
        shares: { accepted: 0, rejected: ZERO_REJECTS },
        forwarded: { accepted: 0, rejected: 0, stale: 0, lastRejectReason: null },
        blocks: { found: 0, accepted: 0, rejected: 0, stale: 0, recent: [] },
        jobs: 0,
      },
    });
  });

  it('reflects scripted stratifier events in status and metrics', async () => {
    clock = 5_010;
    source.goLive({ difficulty: 512, extranonce2Size: 8 });
    const session = {} as ClientSession; // stats never look inside the session
    stratifier.emit('client-open', session);
    stratifier.emit('share', { session, difficulty: 3, code: null });
    stratifier.emit('share', { session, difficulty: 5, code: null });
    for (const code of [20, 21, 22, 23, 24, 25, 23]) {
      stratifier.emit('share', { session, difficulty: 0, code });
    }
    stratifier.emit('forwarded', { session, outcome: { accepted: true } });
    stratifier.emit('forwarded', { session, outcome: { accepted: false, reason: 'stale' } });
    stratifier.emit('block', { session, hash: 'aa', outcome: { accepted: true } });
    stratifier.emit('block', { session, hash: 'bb', outcome: { accepted: false, reason: 'no' } });
    stratifier.emit('block', { session, hash: 'cc', outcome: null });
    clock = 5_020;

    const { body } = await getJson('/v1/status');
    expect(relayStatusSchema.parse(body)).toEqual(body);
    expect(body).toEqual({
      upstream: {
        state: 'live',
        url: 'stratum+tcp://pool.example:3333',
        difficulty: 512,
        extranonce2Size: 8,
        since: 5_010,
      },
      clients: 1,
      hashrate: { hps: (8 * H) / 20, windowSeconds: 300 },
      shares: {
        accepted: 2,
        rejected: {
          other: 1,
          stale: 1,
          duplicate: 1,
          'low-difficulty': 2,
          unauthorized: 1,
          'not-registered': 1,
        },
      },
      forwarded: { accepted: 1, rejected: 1, stale: 1, lastRejectReason: 'stale' },
      blocks: {
        found: 3,
        accepted: 1,
        rejected: 1,
        stale: 0,
        recent: [
          { at: 5_010, height: null, hash: 'cc', result: 'unsubmitted', reason: null, count: 1 },
          { at: 5_010, height: null, hash: 'bb', result: 'rejected', reason: 'no', count: 1 },
          { at: 5_010, height: null, hash: 'aa', result: 'accepted', reason: null, count: 1 },
        ],
      },
      jobs: 1,
    });

    const response = await app.inject({ method: 'GET', url: '/metrics' });
    expect(response.statusCode).toBe(200);
    expect(response.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8');
    const samples = parseMetrics(response.body);
    expect(Object.fromEntries(samples)).toEqual({
      'powbridge_shares_total{result="accepted"}': 2,
      'powbridge_shares_total{result="rejected",reason="other"}': 1,
      'powbridge_shares_total{result="rejected",reason="stale"}': 1,
      'powbridge_shares_total{result="rejected",reason="duplicate"}': 1,
      'powbridge_shares_total{result="rejected",reason="low-difficulty"}': 2,
      'powbridge_shares_total{result="rejected",reason="unauthorized"}': 1,
      'powbridge_shares_total{result="rejected",reason="not-registered"}': 1,
      powbridge_share_difficulty_total: 8,
      'powbridge_forwarded_total{result="accepted"}': 1,
      'powbridge_forwarded_total{result="rejected"}': 1,
      'powbridge_blocks_total{result="accepted"}': 1,
      'powbridge_blocks_total{result="rejected"}': 1,
      'powbridge_blocks_total{result="unsubmitted"}': 1,
      powbridge_jobs_total: 1,
      powbridge_clients: 1,
      powbridge_hashrate_hps: (8 * H) / 20,
      powbridge_upstream_up: 1,
      powbridge_upstream_difficulty: 512,
    });
    expect(Object.fromEntries(metricTypes(response.body))).toEqual({
      powbridge_shares_total: 'counter',
      powbridge_share_difficulty_total: 'counter',
      powbridge_forwarded_total: 'counter',
      powbridge_blocks_total: 'counter',
      powbridge_jobs_total: 'counter',
      powbridge_clients: 'gauge',
      powbridge_hashrate_hps: 'gauge',
      powbridge_upstream_up: 'gauge',
      powbridge_upstream_difficulty: 'gauge',
    });
  });

  it('is live while serving, ready only while the upstream is live', async () => {
    expect(await getJson('/healthz')).toEqual({
      status: 200,
      body: { ok: true, upstream: 'connecting' },
    });
    expect(await getJson('/readyz')).toEqual({
      status: 503,
      body: { ready: false, upstream: 'connecting' },
    });
    source.goLive();
    expect(await getJson('/readyz')).toEqual({
      status: 200,
      body: { ready: true, upstream: 'live' },
    });
    source.setState('down');
    expect(await getJson('/readyz')).toEqual({
      status: 503,
      body: { ready: false, upstream: 'down' },
    });
    expect(await getJson('/healthz')).toEqual({
      status: 200,
      body: { ok: true, upstream: 'down' },
    });
  });

  it('serves the descriptor', async () => {
    expect(await getJson('/v1/descriptor')).toEqual({
      status: 200,
      body: {
        version: 1,
        algorithm: 'sha256d',
        endpoints: { circuit: '/v1/circuit' },
        difficulty: { initial: DIFFICULTY, ticketDifficulty: DIFFICULTY, vardiffTargetSeconds: 15 },
      },
    });
  });

  it('answers unknown routes and methods with a JSON 404', async () => {
    expect(await getJson('/nope')).toEqual({ status: 404, body: { error: 'not found' } });
    expect(await getJson('/v1/status/extra?x=1')).toEqual({
      status: 404,
      body: { error: 'not found' },
    });
    const post = await app.inject({ method: 'POST', url: '/v1/status', payload: {} });
    expect(post.statusCode).toBe(404);
    expect(post.json()).toEqual({ error: 'not found' });
  });

  it('answers failures with a bare 500 and logs no client address', async () => {
    app.get('/boom', () => {
      throw new Error('kaput');
    });
    const response = await app.inject({
      method: 'GET',
      url: '/boom',
      remoteAddress: '203.0.113.7',
      headers: { 'x-forwarded-for': '198.51.100.9' },
    });
    expect(response.statusCode).toBe(500);
    expect(response.json()).toEqual({ error: 'internal error' });
    expect(logLines).toHaveLength(1);
    expect(JSON.parse(logLines[0]!)).toMatchObject({ err: 'kaput', route: '/boom' });
    expect(logLines[0]).not.toMatch(/203\.0\.113\.7|198\.51\.100\.9|remote/);
  });
});

describe('/v1/status and its schema (src/relay/status-schema.ts)', () => {
  const peer: PeerStatus = {
    name: 'backup',
    url: 'http://127.0.0.1:8641',
    identity: 'ab'.repeat(32),
    acceptTickets: true,
    refusing: null,
    refused: {
      notAccepted: 0,
      unpaidLimit: 0,
      peerRefused: 0,
      offline: 0,
      spent: 1,
      unknownKey: 0,
    },
    up: null,
    lastContactAt: null,
    lastError: null,
    keys: ['k1'],
    balance: {
      served: 3,
      unbilled: 1,
      billed: 2,
      settledToUs: 1,
      unpaidToUs: 1,
      billedToUs: 0,
      settledByUs: 0,
      weOwe: 0,
      owedSync: 0,
      pendingRequests: 0,
      pendingSettlements: 0,
      conflicts: 0,
      conflictsNotBilled: 0,
      conflictsNotOwed: 0,
      pulled: 5,
      acked: 4,
    },
  };

  const peerApi: PeerApiStatus = {
    refused: {
      missingHeaders: 3,
      unknownPeer: 1,
      staleTimestamp: 0,
      badSignature: 2,
      replay: 0,
      rateLimited: 7,
    },
  };

  it('serves every section as the schema describes it, and nothing more', async () => {
    const shaper = new HtbShaper({ linkBitsPerSecond: 1e6, clock: () => 100 });
    const api = testHttpApi({
      qos: () => shaper.stats(),
      tickets: () => ({
        issued: 4,
        redeemed: 3,
        refused: { malformed: 0, unknownKey: 1, wrongDay: 0, badSignature: 0, spent: 0 },
      }),
      sections: { peers: () => [peer], peerApi: () => peerApi },
    });
    try {
      const body: unknown = (await api.inject({ method: 'GET', url: '/v1/status' })).json();
      // Strict schemas: a field served but not declared, or declared but not served, fails.
      const status = relayStatusWithPeersSchema.parse(body);
      expect(status.qos?.classes.map((c) => c.name)).toEqual([
        'root',
        'free',
        'paid',
        'group1',
        'group4',
      ]);
      expect(status.tickets?.refused.unknownKey).toBe(1);
      expect(status.peers).toEqual([peer]);
      expect(status.peerApi).toEqual(peerApi);
    } finally {
      shaper.close();
      await api.close();
    }
  });

  it('refuses an answer that drifted from the schema', () => {
    const served = {
      upstream: { state: 'live', url: null, difficulty: 1, extranonce2Size: 4, since: 1 },
      clients: 0,
      hashrate: { hps: 0, windowSeconds: 300 },
      shares: { accepted: 0, rejected: ZERO_REJECTS },
      forwarded: { accepted: 0, rejected: 0, stale: 0, lastRejectReason: null },
      blocks: { found: 0, accepted: 0, rejected: 0, stale: 0, recent: [] },
      jobs: 0,
    };
    expect(relayStatusSchema.safeParse(served).success).toBe(true);
    expect(relayStatusSchema.safeParse({ ...served, uptime: 5 }).success).toBe(false);
    const { jobs: _jobs, ...withoutJobs } = served;
    expect(relayStatusSchema.safeParse(withoutJobs).success).toBe(false);
    expect(
      relayStatusWithPeersSchema.safeParse({ ...served, peers: [{ name: 'x' }] }).success,
    ).toBe(false);
  });
});

describe('metrics registry', () => {
  it('prefixes process metrics and keeps registries apart', async () => {
    const withProcess = new RelayMetrics(stats);
    const text = await withProcess.text();
    const names = [...metricTypes(text).keys()];
    expect(names).toContain('powbridge_process_cpu_user_seconds_total');
    expect(names).toContain('powbridge_nodejs_eventloop_lag_seconds');
    expect(names.filter((name) => !name.startsWith('powbridge_'))).toEqual([]);
    // The per-test registry does not see the other one's process metrics.
    expect(parseMetrics(await metrics.text()).has('powbridge_process_start_time_seconds')).toBe(
      false,
    );
  });
});

describe('http api on a real port with a circuit connector', () => {
  let connector: CircuitConnector;
  let client: CircuitClient | null = null;

  afterEach(async () => {
    await client?.close();
    client = null;
    connector.close();
  });

  /** Search nonces for a share that passes the client's target but is not a block. */
  async function craft(job: JobParams, extranonce1: string): Promise<ShareSubmission> {
    const pass = difficultyToTarget(DIFFICULTY, 'sha256d');
    const network = nbitsToTarget(Number.parseInt(job.nbits, 16));
    for (let nonce = 0; nonce < 100_000; nonce++) {
      const share = {
        jobId: job.jobId,
        extranonce2: '000000000001',
        ntime: job.ntime,
        nonce: u32ToHex(nonce),
      };
      const hash = await hasher(headerFromJob(job, extranonce1, share, null).header);
      if (hashMeetsTarget(hash, pass) && !hashMeetsTarget(hash, network)) return share;
    }
    throw new Error('no share found');
  }

  it('serves a circuit on the same port and counts its share', async () => {
    connector = new CircuitConnector(stratifier);
    connector.attach(app.server);
    await app.listen({ port: 0, host: '127.0.0.1' });
    const address = app.server.address();
    if (address === null || typeof address === 'string') throw new Error('no port');
    const base = `127.0.0.1:${address.port}`;

    source.setTerms({ difficulty: DIFFICULTY });
    source.newJob({ clean: true, nbits: '1d00ffff' });
    source.setState('live');
    source.answer = () => ({ accepted: false, reason: 'above target' });

    client = await CircuitClient.connect(`ws://${base}/v1/circuit`, { timeoutMs: 5_000 });
    const firstJob = new Promise<JobParams>((resolve) => client?.once('job', resolve));
    const session = await client.request('mining.register', { agent: 'test', mode: 'tickets' });
    const job = await firstJob;
    const result = await client.request('mining.submit', await craft(job, session.extranonce1));
    expect(result.accepted).toBe(true);
    await expect.poll(() => stats.snapshot().forwarded.rejected).toBe(1);
    clock = 5_030;

    const status = await fetch(`http://${base}/v1/status`);
    expect(status.status).toBe(200);
    expect(await status.json()).toMatchObject({
      upstream: { state: 'live', difficulty: DIFFICULTY, extranonce2Size: 8 },
      clients: 1,
      hashrate: { hps: (DIFFICULTY * H) / 30, windowSeconds: 300 },
      shares: { accepted: 1, rejected: ZERO_REJECTS },
      forwarded: { accepted: 0, rejected: 1, stale: 0, lastRejectReason: 'above target' },
      blocks: { found: 0, accepted: 0, rejected: 0, stale: 0, recent: [] },
      jobs: 1,
    });
    const samples = parseMetrics(await (await fetch(`http://${base}/metrics`)).text());
    expect(samples.get('powbridge_clients')).toBe(1);
    expect(samples.get('powbridge_shares_total{result="accepted"}')).toBe(1);
    expect(samples.get('powbridge_share_difficulty_total')).toBe(DIFFICULTY);
    expect(samples.get('powbridge_forwarded_total{result="rejected"}')).toBe(1);
    expect(samples.get('powbridge_hashrate_hps')).toBe((DIFFICULTY * H) / 30);

    await client.close();
    client = null;
    await expect.poll(() => stats.snapshot().clients).toBe(0);
    const after = parseMetrics(await (await fetch(`http://${base}/metrics`)).text());
    expect(after.get('powbridge_clients')).toBe(0);
  });
});
