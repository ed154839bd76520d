import { describe, expect, it } from 'vitest';
import { POOL_RETRY_BACKOFF } from '../../src/sources/stratum-pool.js';
import { DEFAULT_MASK, NODE_STRATUM_POOL_IGNORES, notifyParams } from '../helpers/scripted-pool.js';
import {
  eventually,
  next,
  share,
  startClient,
  startPool,
  type Client,
  VirtualClock,
} from './stratum-pool-harness.js';

/**
 * Issue 13: how fast the pool client gets (back) to work. A pool that ignores
 * mining.configure (node-stratum-pool) is live without waiting for it; while no pool is live
 * the rounds are at most 4 s apart; failover and the return to the primary take the waits the
 * client chose and no request timeout. Waits run on a virtual clock (exact on a loaded
 * machine); real-time bounds only tell "waited out a long request timeout" apart from not.
 */

/** Live, with a deadline generous enough for a loaded machine. */
function live(client: Client): Promise<unknown> {
  return next(client.pool, 'state', ([s]) => s === 'live', 10_000);
}

/** The request timeout these tests set: waiting it out anywhere shows as a test timeout. */
const LONG_TIMEOUT_MS = 60_000;

describe('StratumPool: handshake without waiting on mining.configure', () => {
  it('sends configure, subscribe and authorize together, and is live with configure unanswered', async () => {
    const pool = await startPool();
    pool.ignore(...NODE_STRATUM_POOL_IGNORES);
    // Subscribe is answered only once authorize has arrived: a client that waited for the
    // subscribe answer before authorizing would never get there.
    pool.handlers['mining.subscribe'] = undefined;
    pool.handlers['mining.authorize'] = (m, c) => {
      const subscribe = pool.received('mining.subscribe')[0];
      const subscriptions = [
        ['mining.set_difficulty', 's1'],
        ['mining.notify', 's1'],
      ];
      c.reply(subscribe?.id ?? null, [subscriptions, 'f0000001', 4]);
      c.notify('mining.set_difficulty', [2]);
      c.notify('mining.notify', notifyParams('first'));
      c.reply(m.id, true);
    };
    const started = performance.now();
    const client = startClient([pool], { requestTimeoutMs: LONG_TIMEOUT_MS });
    await live(client);
    // Only tells "did not wait for configure" apart from "waited out the 60 s timeout"; the
    // timing target (< 2 s) is measured in bench/pool-recovery.ts.
    expect(performance.now() - started).toBeLessThan(10_000);

    await pool.waitFor('mining.extranonce.subscribe');
    expect(pool.messages.map((m) => m.method)).toEqual([
      'mining.configure',
      'mining.subscribe',
      'mining.authorize',
      'mining.extranonce.subscribe',
    ]);
    // No mask granted yet: the first job is mined without version rolling.
    expect(client.order).toEqual(['state:connecting', 'terms', 'job', 'state:live']);
    expect(client.terms).toEqual([
      { session: 1, extranonce1: 'f0000001', extranonce2Size: 4, difficulty: 2, versionMask: null },
    ]);
    expect(client.jobs.map((j) => [j.jobId, j.session])).toEqual([['first', 1]]);
  });

  it('takes a configure answer that comes after going live: new terms, same session', async () => {
    const pool = await startPool();
    pool.ignore('mining.configure');
    const client = startClient([pool], { requestTimeoutMs: LONG_TIMEOUT_MS });
    await live(client);
    expect(client.pool.status().terms?.versionMask).toBeNull();

    const configure = await pool.waitFor('mining.configure');
    const conn = await pool.connection(0);
    conn.reply(configure.id, { 'version-rolling': true, 'version-rolling.mask': DEFAULT_MASK });
    const [terms] = await next(client.pool, 'terms');
    expect(terms).toEqual({
      session: 1,
      extranonce1: 'f0000001',
      extranonce2Size: 4,
      difficulty: 1,
      versionMask: 0x1fffe000,
    });
    expect(client.states).toEqual(['connecting', 'live']);
    expect(pool.connections).toHaveLength(1);
  });

  it('keeps a mining.set_version_mask over a configure answer that comes after it', async () => {
    const pool = await startPool();
    pool.ignore('mining.configure');
    const client = startClient([pool], { requestTimeoutMs: LONG_TIMEOUT_MS });
    await live(client);
    const conn = await pool.connection(0);
    conn.notify('mining.set_version_mask', ['00ffe000']);
    await next(client.pool, 'terms', ([t]) => t.versionMask === 0x00ffe000);

    const configure = await pool.waitFor('mining.configure');
    conn.reply(configure.id, { 'version-rolling': true, 'version-rolling.mask': DEFAULT_MASK });
    // The client handles lines in order: once the ping is answered, the late answer was read.
    conn.request('after', 'mining.ping');
    await pool.waitFor((m) => m.id === 'after');
    expect(client.terms.map((t) => t.versionMask)).toEqual([null, 0x00ffe000]);
    expect(client.pool.status().terms?.versionMask).toBe(0x00ffe000);
  });

  it('goes back to a primary that ignores configure on the first probe after it is back', async () => {
    const clock = new VirtualClock();
    const primary = await startPool({ extranonce1: 'a0000001' });
    const secondary = await startPool({ extranonce1: 'b0000002' });
    primary.ignore(...NODE_STRATUM_POOL_IGNORES);
    primary.accepting = false;
    const client = startClient([primary, secondary], {
      requestTimeoutMs: LONG_TIMEOUT_MS,
      primaryRetryMs: 30_000,
      sleep: clock.sleep,
    });
    await live(client);
    expect(client.pool.status().upstream).toBe(secondary.url);

    // Two probes find the primary still down.
    expect([await clock.fire(), await clock.fire()]).toEqual([30_000, 30_000]);
    await eventually(() => expect(clock.waiting).toBe(1));
    // It is back right after the second probe: the third one, 30 s later, switches.
    primary.accepting = true;
    const back = clock.now;
    const switched = next(client.pool, 'terms', ([t]) => t.extranonce1 === 'a0000001', 10_000);
    expect(await clock.fire()).toBe(30_000);
    const [terms] = await switched;
    expect(clock.now - back).toBe(30_000);
    expect(terms).toMatchObject({ session: 2, versionMask: null });
    expect(client.pool.status()).toMatchObject({ state: 'live', upstream: primary.url });
    expect(client.states).toEqual(['connecting', 'live']);
    // Shares for the secondary's jobs are refused here, never sent to either pool.
    expect(await client.pool.submit(share(1))).toEqual({
      accepted: false,
      reason: 'stale: job from an earlier upstream session',
    });
    expect(secondary.received('mining.submit')).toEqual([]);
    expect(primary.received('mining.submit')).toEqual([]);
  });
});

describe('StratumPool: outage and failover', () => {
  it('retries a lone pool at most 4 s apart and resumes one wait after it is back', async () => {
    const clock = new VirtualClock();
    const pool = await startPool();
    const client = startClient([pool], {
      backoff: undefined, // the production default
      random: () => 1, // the longest delay of each step
      sleep: clock.sleep,
    });
    await live(client);
    pool.accepting = false;
    (await pool.connection(0)).destroy();

    // Ten failed rounds: the steps double from 0.5 s and stay at the 4 s cap.
    const waits: number[] = [];
    for (let round = 0; round < 10; round++) waits.push(await clock.fire());
    expect(waits).toEqual([500, 1_000, 2_000, 4_000, 4_000, 4_000, 4_000, 4_000, 4_000, 4_000]);
    // Back just as the client starts its next wait: mining resumes one wait (4 s) later.
    await eventually(() => expect(clock.waiting).toBe(1));
    expect(client.states.filter((s) => s === 'down')).toHaveLength(10);
    pool.accepting = true;
    const back = clock.now;
    expect(await clock.fire()).toBe(4_000);
    await live(client);
    expect(clock.now - back).toBeLessThanOrEqual(5_000);
    expect(client.pool.status().terms?.session).toBe(2);
    expect(client.states.at(-1)).toBe('live');
  });

  it('defaults to 0.5 s doubling to a 4 s cap, with jitter inside each step', async () => {
    const clock = new VirtualClock();
    const pool = await startPool();
    pool.accepting = false;
    const draws = [0, 0.25, 0.99];
    startClient([pool], {
      backoff: undefined,
      random: () => draws.shift() ?? 0.5,
      sleep: clock.sleep,
    });
    const waits: number[] = [];
    for (let round = 0; round < 5; round++) waits.push(await clock.fire());
    // Equal jitter: a delay is in [step/2, step].
    expect(waits).toEqual([250, 625, 1_990, 3_000, 3_000]);
  });

  it('fails over one backoff step after the primary closes the connection', async () => {
    const clock = new VirtualClock();
    const primary = await startPool({ extranonce1: 'a0000001' });
    const secondary = await startPool({ extranonce1: 'b0000002' });
    const client = startClient([primary, secondary], {
      backoff: undefined,
      random: () => 1,
      requestTimeoutMs: LONG_TIMEOUT_MS,
      primaryRetryMs: 60_000,
      sleep: clock.sleep,
    });
    await live(client);
    const onPrimary = await primary.connection(0);
    onPrimary.notify('mining.notify', notifyParams('p1'));
    await next(client.pool, 'job');

    // The primary's process dies: its socket closes, new connections are dropped.
    primary.accepting = false;
    const died = clock.now;
    onPrimary.destroy();
    const moved = next(client.pool, 'terms', ([t]) => t.extranonce1 === 'b0000002', 10_000);
    // Tried from the top after the first step of the backoff; the primary drops the
    // connection, the secondary takes over in the same round.
    expect(await clock.fire()).toBe(POOL_RETRY_BACKOFF.minMs);
    const [terms] = await moved;
    expect(clock.now - died).toBeLessThan(5_000);
    expect(terms.session).toBe(2);
    expect(client.states).toEqual(['connecting', 'live', 'connecting', 'live']);
    expect(client.logs.join('')).toContain('"retryInMs":500');

    // A share for the primary's job is refused here, not sent to the secondary.
    expect(await client.pool.submit(share(1, { jobId: 'p1' }))).toMatchObject({
      accepted: false,
    });
    expect(secondary.received('mining.submit')).toEqual([]);
  });

  it('fails over at once when the live pool stops answering submits, trying it last', async () => {
    const clock = new VirtualClock();
    const primary = await startPool({ extranonce1: 'a0000001' });
    const secondary = await startPool({ extranonce1: 'b0000002' });
    const client = startClient([primary, secondary], {
      requestTimeoutMs: 300,
      primaryRetryMs: 60_000,
      sleep: clock.sleep,
    });
    await live(client);

    // The primary hangs: connections stay open, nothing is answered.
    primary.answering = false;
    const moved = next(client.pool, 'terms', ([t]) => t.extranonce1 === 'b0000002', 10_000);
    expect(await client.pool.submit(share(1))).toEqual({
      accepted: false,
      reason: 'no answer from the pool within 300 ms',
    });
    const [terms] = await moved;
    expect(terms.session).toBe(2);
    // No wait at all, and no new handshake with the hung primary before the secondary: the
    // failover took the one submit timeout.
    expect(clock.now).toBe(0);
    expect(primary.connections).toHaveLength(1);
    expect(client.logs.join('')).toContain(
      'upstream lost: pool stopped answering: no answer to mining.submit within 300 ms',
    );
    // The primary is probed later, not now.
    expect(clock.waiting).toBe(1);
  });

  it('gives up on a live pool that sends nothing for silenceTimeoutMs', async () => {
    const primary = await startPool({ extranonce1: 'a0000001' });
    const secondary = await startPool({ extranonce1: 'b0000002' });
    const client = startClient([primary, secondary], {
      silenceTimeoutMs: 1_000,
      primaryRetryMs: 60_000,
    });
    await live(client);
    const onPrimary = await primary.connection(0);

    // Every line resets the watch: jobs every 50 ms keep the session past the timeout (only
    // an event-loop stall of almost a second could break this).
    let sent = 0;
    await new Promise<void>((resolve) => {
      const ticker = setInterval(() => {
        onPrimary.notify('mining.notify', notifyParams(`p${sent++}`, false));
        if (sent < 30) return;
        clearInterval(ticker);
        resolve();
      }, 50);
    });
    await eventually(() => expect(client.jobs).toHaveLength(30));
    expect(client.pool.status().upstream).toBe(primary.url);

    // Then it falls silent.
    primary.answering = false;
    const [terms] = await next(client.pool, 'terms', ([t]) => t.extranonce1 === 'b0000002', 10_000);
    expect(terms.session).toBe(2);
    await onPrimary.closed;
    expect(primary.connections).toHaveLength(1);
    expect(client.logs.join('')).toContain(
      'upstream lost: pool stopped answering: no message from the pool for 1000 ms',
    );
  });
});
