import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocketServer } from 'ws';
import { CircuitSource, retryDelayMs } from '../../src/client/circuit-source.js';
import { RpcError, RpcErrorCode } from '../../src/protocol/errors.js';
import { encodeNotification, encodeResult } from '../../src/protocol/jsonrpc.js';
import { CircuitConnector } from '../../src/relay/circuit-connector.js';
import type { SourceJob, UpstreamTerms } from '../../src/sources/work-source.js';
import { MIN_DIFFICULTY } from '../../src/work/target.js';
import { ManualSource } from '../helpers/manual-source.js';
import { startTestRelay } from '../helpers/test-relay.js';
import { startTestStratifier } from '../helpers/test-stratifier.js';
import { waitFor } from '../helpers/litecoind.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function relayOn(listen: string, dataDir: string) {
  return startTestRelay({ dataDir, listen, upstreamDifficulty: 1e12 });
}

describe('CircuitSource: the relay as a work source', () => {
  it('registers, follows terms and jobs, submits shares for credit, and reconnects', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'powbridge-csrc-'));
    cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
    let { relay } = await relayOn('127.0.0.1:0', dataDir);
    const listen = relay.url.replace('http://', '');
    const source = new CircuitSource({
      url: `${relay.url.replace('http', 'ws')}/v1/circuit`,
      mode: 'tickets',
      backoff: { minMs: 50, maxMs: 200 },
    });
    cleanups.push(() => source.stop());
    const terms: UpstreamTerms[] = [];
    const jobs: SourceJob[] = [];
    source.on('terms', (t) => terms.push(t));
    source.on('job', (j) => jobs.push(j));
    source.start();
    await waitFor('live', () => Promise.resolve(source.status().state === 'live'));
    expect(source.algorithm).toBe('sha256d');
    expect(source.registered?.ticket?.price).toBeGreaterThan(0);
    const first = terms.at(-1) as UpstreamTerms;
    expect(first).toMatchObject({ session: 1, extranonce2Size: 6, difficulty: MIN_DIFFICULTY });
    const job = jobs.at(-1) as SourceJob;
    expect(job.session).toBe(1);

    const outcome = await source.submit({
      session: 1,
      jobId: job.jobId,
      extranonce2: '000000000001',
      ntime: job.ntime,
      nonce: '00000000',
    });
    expect(outcome).toEqual({ accepted: true });
    expect(source.credit).toBeCloseTo(1, 9);
    const duplicate = await source.submit({
      session: 1,
      jobId: job.jobId,
      extranonce2: '000000000001',
      ntime: job.ntime,
      nonce: '00000000',
    });
    expect(duplicate).toMatchObject({ accepted: false, code: 22 });

    // The relay restarts on the same port: the source reconnects as a new session and a
    // share for the old session's job is refused locally.
    await relay.close();
    await waitFor('down', () => Promise.resolve(source.status().state === 'down'));
    ({ relay } = await relayOn(listen, dataDir));
    cleanups.push(() => relay.close());
    await waitFor(
      'live again',
      () =>
        Promise.resolve(
          source.status().state === 'live' && (source.status().terms?.session ?? 0) === 2,
        ),
      10_000,
    );
    const stale = await source.submit({
      session: 1,
      jobId: job.jobId,
      extranonce2: '000000000002',
      ntime: job.ntime,
      nonce: '00000000',
    });
    expect(stale).toMatchObject({ accepted: false, code: 21 });
    expect(source.status().job?.session).toBe(2);
  }, 30_000);
});

describe('CircuitSource: a relay that refuses the register (37)', () => {
  it('waits the retryAfter the relay asks for, not its own shorter backoff', async () => {
    // A relay without upstream work: every register is refused with 37, retryAfter 5 s.
    const stratifier = await startTestStratifier(new ManualSource('sha256d'));
    const connector = new CircuitConnector(stratifier);
    const server = createServer((_, res) => res.end());
    connector.attach(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(async () => {
      connector.close();
      stratifier.stop();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    });
    const source = new CircuitSource({
      url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}/v1/circuit`,
      mode: 'tickets',
      backoff: { minMs: 50, maxMs: 200 },
    });
    cleanups.push(() => source.stop());
    const refused = new Promise((resolve) => source.updates.once('refused', resolve));
    source.start();
    expect(await refused).toEqual({
      message: 'no upstream work yet, retry later',
      retryInMs: 5_000,
    });
    expect(source.status().state).toBe('down');
  });

  it('takes the longer of backoff and retryAfter, caps retryAfter, and ignores it on other errors', () => {
    const refusal = (data?: unknown) => new RpcError(RpcErrorCode.relayFull, 'relay is full', data);
    expect(retryDelayMs(refusal({ retryAfter: 30 }), 200)).toBe(30_000);
    expect(retryDelayMs(refusal({ retryAfter: 0.05 }), 200)).toBe(200);
    expect(retryDelayMs(refusal({ retryAfter: 1e9 }), 200)).toBe(600_000);
    expect(retryDelayMs(refusal(), 200)).toBe(200);
    expect(retryDelayMs(refusal({ retryAfter: 'soon' }), 200)).toBe(200);
    expect(retryDelayMs(refusal({ retryAfter: -5 }), 200)).toBe(200);
    const busy = new RpcError(RpcErrorCode.issuerBusy, 'busy', { retryAfter: 30 });
    expect(retryDelayMs(busy, 200)).toBe(200);
    expect(retryDelayMs(new Error('connect ECONNREFUSED'), 200)).toBe(200);
  });
});

describe('CircuitSource: a scripted relay', () => {
  /** A relay that answers the register and then sends what the test tells it to. */
  async function scriptedRelay() {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, path: '/v1/circuit' });
    await new Promise<void>((resolve) => wss.once('listening', resolve));
    cleanups.push(() => new Promise<void>((resolve) => wss.close(() => resolve())));
    const registered = new Promise<(method: string, params: object) => void>((resolve) => {
      wss.on('connection', (ws) => {
        ws.on('message', (data) => {
          const text = Buffer.isBuffer(data) ? data.toString('utf8') : '';
          const request = JSON.parse(text) as { id: number; method: string };
          if (request.method !== 'mining.register') return;
          ws.send(
            encodeResult(request.id, {
              algorithm: 'sha256d',
              extranonce1: '00000001',
              extranonce2Size: 4,
              difficulty: 2 ** -10,
              versionMask: null,
              ticket: null,
            }),
          );
          resolve((method, params) => ws.send(encodeNotification(method, params)));
        });
      });
    });
    const { port } = wss.address() as AddressInfo;
    return { url: `ws://127.0.0.1:${port}/v1/circuit`, registered };
  }

  const job = (jobId: string) => ({
    jobId,
    prevhash: '00'.repeat(32),
    coinb1: '01',
    coinb2: '02',
    merkleBranch: [],
    version: '20000000',
    nbits: '207fffff',
    ntime: '00000000',
    clean: true,
  });

  it('a new difficulty applies from the next job on, as for a Stratum miner', async () => {
    const relay = await scriptedRelay();
    const source = new CircuitSource({ url: relay.url, mode: 'donate' });
    cleanups.push(() => source.stop());
    const seen: string[] = [];
    source.on('terms', (t) => seen.push(`terms ${t.difficulty} ${t.versionMask}`));
    source.on('job', (j) => seen.push(`job ${j.jobId}`));
    source.start();
    const send = await relay.registered;
    send('mining.job', job('a'));
    // The relay judges job a at the difficulty it was sent with: keep mining it at that. (The
    // version mask makes new terms at once, showing the difficulty in force meanwhile.)
    send('mining.set_difficulty', { difficulty: 2 ** -12 });
    send('mining.set_version_mask', { versionMask: '1fffe000' });
    send('mining.job', job('b'));
    await waitFor('job b', () => Promise.resolve(seen.includes('job b')));
    expect(seen).toEqual([
      `terms ${2 ** -10} null`,
      'job a',
      `terms ${2 ** -10} ${0x1fffe000}`,
      `terms ${2 ** -12} ${0x1fffe000}`,
      'job b',
    ]);
  });

  it('relay.state down pauses (no job, not live); the job sent meanwhile is mined on live', async () => {
    const relay = await scriptedRelay();
    const source = new CircuitSource({ url: relay.url, mode: 'donate' });
    cleanups.push(() => source.stop());
    const states: string[] = [];
    source.on('state', (s) => states.push(s));
    source.start();
    const send = await relay.registered;
    send('mining.job', job('a'));
    await waitFor('live', () => Promise.resolve(source.status().state === 'live'));
    send('relay.state', { upstream: 'down', message: 'upstream lost' });
    await waitFor('paused', () => Promise.resolve(source.link().state === 'no-upstream'));
    expect(source.status()).toMatchObject({ state: 'connecting', job: null });
    send('mining.job', { ...job('b'), clean: false });
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(source.status()).toMatchObject({ state: 'connecting', job: null });
    send('relay.state', { upstream: 'live', message: 'upstream is back' });
    await waitFor('live again', () => Promise.resolve(source.status().state === 'live'));
    // Mined as a fresh start: the relay forgot every job of before the outage.
    expect(source.status().job).toMatchObject({ jobId: 'b', clean: true });
    expect(states).toEqual(['live', 'connecting', 'live']);
  });
});
