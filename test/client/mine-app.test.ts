import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { CircuitLink } from '../../src/client/circuit-source.js';
import { CircuitSource } from '../../src/client/circuit-source.js';
import { MineApp } from '../../src/client/mine-app.js';
import { circuitUrl } from '../../src/client/redeem.js';
import { describeLink, formatStatus } from '../../src/client/status-line.js';
import { TicketLoop } from '../../src/client/ticket-loop.js';
import { Wallet } from '../../src/client/wallet.js';
import { CircuitConnector } from '../../src/relay/circuit-connector.js';
import type { UpstreamShare } from '../../src/sources/work-source.js';
import { waitFor } from '../helpers/litecoind.js';
import { ManualSource } from '../helpers/manual-source.js';
import { startTestRelay } from '../helpers/test-relay.js';
import { startTestStratifier } from '../helpers/test-stratifier.js';

// The miner's threads load dist/workers/mine.js: run `npm run build` before these tests.

/** About one sha256d share per 2^18 nonces: several per second on one thread. */
const SHARE_DIFFICULTY = 2 ** -14;

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const until = (what: string, condition: () => boolean, timeoutMs = 15_000) =>
  waitFor(what, () => Promise.resolve(condition()), timeoutMs);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function minerOn(relayUrl: string): Promise<{ app: MineApp; submits: () => number }> {
  const app = new MineApp({
    relayUrl,
    mode: 'donate',
    threads: 1,
    cpuPercent: 100,
    jitterPercent: 0,
  });
  cleanups.push(() => app.stop());
  // Every share the miner hands to the circuit, whatever the relay answers.
  const submit = vi.spyOn(app.source, 'submit');
  app.start();
  await until('mining', () => (app.status().miner?.accepted ?? 0) >= 2);
  return { app, submits: () => submit.mock.calls.length };
}

/** Paused and every thread between tasks: the hash counter is final until work resumes. */
async function idle(app: MineApp): Promise<void> {
  await until('workers idle', () => {
    const m = app.status().miner;
    return !!m?.paused && m.threads.every((t) => t.jobId === null);
  });
}

describe('the miner pauses while there is nothing the relay would take', () => {
  it('relay.state down: no hashing, no submits; relay.state live: mining resumes', async () => {
    const { relay, upstream } = await startTestRelay({
      dataDir: tempDir('powbridge-pause-'),
      clientDifficulty: SHARE_DIFFICULTY,
      upstreamDifficulty: 1e12,
    });
    cleanups.push(() => relay.close());
    const { app, submits } = await minerOn(circuitUrl(relay.url));
    expect(app.status().link).toEqual({ state: 'live' });
    expect(formatStatus(app.status())).toMatch(/^mining \| /);

    upstream.setState('down');
    await until('paused', () => app.status().link.state === 'no-upstream');
    expect(formatStatus(app.status())).toMatch(/^paused: relay has no upstream \| /);
    const submittedAtPause = submits();
    await idle(app);
    const paused = app.status().miner;
    await sleep(500);
    // Counters, not time: nothing was hashed, found or sent while the relay had no upstream.
    expect(app.status().miner?.hashes).toBe(paused?.hashes);
    expect(app.status().miner?.found).toBe(paused?.found);
    expect(submits()).toBe(submittedAtPause);

    // The upstream is back, on a new session: work resumes on its job.
    const accepted = paused?.accepted ?? 0;
    upstream.goLive({ session: 2, difficulty: 1e12 });
    await until('mining again', () => (app.status().miner?.accepted ?? 0) >= accepted + 2);
    expect(app.status().link).toEqual({ state: 'live' });
    expect(app.status().miner?.hashes).toBeGreaterThan(paused?.hashes ?? 0);
    expect(app.status().miner?.rejected).toBe(0);
  }, 60_000);

  it('no circuit: the workers stop until a new circuit has work', async () => {
    const dataDir = tempDir('powbridge-pause-');
    let { relay } = await startTestRelay({
      dataDir,
      clientDifficulty: SHARE_DIFFICULTY,
      upstreamDifficulty: 1e12,
    });
    const listen = relay.url.replace('http://', '');
    const { app, submits } = await minerOn(circuitUrl(relay.url));
    await relay.close();
    await until('reconnecting', () => app.status().link.state === 'retrying');
    expect(formatStatus(app.status())).toMatch(/^reconnecting in \d+ s \(/);
    const submittedAtPause = submits();
    await idle(app);
    const paused = app.status().miner;
    await sleep(500);
    expect(app.status().miner?.hashes).toBe(paused?.hashes);
    expect(submits()).toBe(submittedAtPause);

    ({ relay } = await startTestRelay({
      dataDir,
      listen,
      clientDifficulty: SHARE_DIFFICULTY,
      upstreamDifficulty: 1e12,
    }));
    cleanups.push(() => relay.close());
    const accepted = paused?.accepted ?? 0;
    await until('mining again', () => (app.status().miner?.accepted ?? 0) >= accepted + 2, 30_000);
    expect(app.status().miner?.hashes).toBeGreaterThan(paused?.hashes ?? 0);
  }, 60_000);
});

describe('a relay without upstream work refuses the register (37)', () => {
  it('the miner stays paused, hashing nothing, and mines once a register is taken', async () => {
    // A relay that has never had work: every register is refused with 37, retryAfter 5 s.
    const upstream = new ManualSource('sha256d');
    const stratifier = await startTestStratifier(upstream, { difficulty: SHARE_DIFFICULTY });
    const connector = new CircuitConnector(stratifier);
    const server = createServer((_, res) => res.end());
    connector.attach(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(async () => {
      connector.close();
      stratifier.stop();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    });
    const app = new MineApp({
      relayUrl: `ws://127.0.0.1:${(server.address() as AddressInfo).port}/v1/circuit`,
      mode: 'donate',
      threads: 1,
      cpuPercent: 100,
      jitterPercent: 0,
    });
    cleanups.push(() => app.stop());
    const submit = vi.spyOn(app.source, 'submit');
    const refused = new Promise((resolve) => app.source.updates.once('refused', resolve));
    app.start();
    await refused;
    expect(app.status().link).toMatchObject({ state: 'retrying', refused: true });
    expect(formatStatus(app.status())).toMatch(
      /^paused: relay not ready \(no upstream work yet, retry later\); next try in \d s \| /,
    );
    await sleep(500);
    expect(app.status().miner?.hashes).toBe(0);
    expect(submit).not.toHaveBeenCalled();

    upstream.goLive({ difficulty: 1e12 });
    await until('mining after the retry', () => (app.status().miner?.accepted ?? 0) >= 2);
    expect(app.status().link).toEqual({ state: 'live' });
  }, 30_000);
});

describe('tickets: one request in flight per circuit', () => {
  it('a burst of credit starts one issuance at a time, in either scheme', async () => {
    const dir = tempDir('powbridge-tickets-');
    // Every share earns a whole ticket's price: each credit event makes a ticket due.
    const { relay } = await startTestRelay({ dataDir: join(dir, 'relay'), price: 1 });
    cleanups.push(() => relay.close());
    const url = circuitUrl(relay.url);
    const source = new CircuitSource({ url, mode: 'tickets' });
    cleanups.push(() => source.stop());
    source.start();
    await until('live', () => source.status().state === 'live');
    const circuit = source.circuit;
    if (!circuit) throw new Error('no circuit');

    // Watch the issuances on the wire, in either scheme: ticket.open (Abe–Okamoto) or
    // ticket.issue (RSA) starts one; the end of ticket.finish, of ticket.issue, or a failed
    // open ends it.
    let open = 0;
    let most = 0;
    let opened = 0;
    const request = circuit.request.bind(circuit);
    vi.spyOn(circuit, 'request').mockImplementation(((method: string, params: never) => {
      const answer = request(method as 'ticket.open', params);
      if (method === 'ticket.open' || method === 'ticket.issue') {
        opened += 1;
        open += 1;
        most = Math.max(most, open);
      }
      if (method === 'ticket.open') {
        answer.catch(() => (open -= 1));
      } else if (method === 'ticket.finish' || method === 'ticket.issue') {
        void answer.finally(() => (open -= 1)).catch(() => undefined);
      }
      return answer;
    }) as typeof circuit.request);

    const wallet = Wallet.open(join(dir, 'wallet.sqlite'));
    cleanups.push(() => wallet.close());
    const loop = new TicketLoop({ source, wallet, relayUrl: url });
    cleanups.push(() => loop.close());
    source.updates.on('credit', () => loop.poke());

    // Six shares answered back to back: six credit events while the first session runs.
    const job = source.status().job;
    if (!job) throw new Error('no job');
    const shares: UpstreamShare[] = [1, 2, 3, 4, 5, 6].map((n) => ({
      session: job.session,
      jobId: job.jobId,
      extranonce2: n.toString(16).padStart(12, '0'),
      ntime: job.ntime,
      nonce: '00000000',
    }));
    const outcomes = await Promise.all(shares.map((s) => source.submit(s)));
    expect(outcomes.every((o) => o.accepted)).toBe(true);
    await until('six tickets', () => loop.tickets >= 6);
    expect(most).toBe(1);
    expect(opened).toBe(6);
    expect(wallet.counts().unspent).toBe(6);
    expect(loop.lastError).toBeNull();
  }, 30_000);
});

describe('status line', () => {
  it('says what the circuit is doing', () => {
    const now = 1_000_000;
    const cases: [CircuitLink, string][] = [
      [{ state: 'connecting' }, 'connecting'],
      [{ state: 'waiting' }, 'connected, waiting for work'],
      [{ state: 'live' }, 'mining'],
      [{ state: 'no-upstream', message: 'upstream lost' }, 'paused: relay has no upstream'],
      [
        { state: 'retrying', retryAt: now + 4_200, reason: 'cannot reach x', refused: false },
        'reconnecting in 5 s (cannot reach x)',
      ],
      [
        {
          state: 'retrying',
          retryAt: now + 5_000,
          reason: 'relay not ready (no work)',
          refused: true,
        },
        'paused: relay not ready (no work); next try in 5 s',
      ],
    ];
    for (const [link, text] of cases) expect(describeLink(link, now)).toBe(text);
  });
});
