import { describe, expect, it } from 'vitest';
import { eventually, live, next, share, startClient, startPool } from './stratum-pool-harness.js';

describe('StratumPool: failover', () => {
  it('treats a pool that refuses authorize as failed and moves to the next', async () => {
    const primary = await startPool();
    const secondary = await startPool({ extranonce1: 'b0000002' });
    primary.handlers['mining.authorize'] = (m, c) =>
      c.reply(m.id, null, [24, 'Unauthorized worker', null]);
    const client = startClient([primary, secondary], { primaryRetryMs: 60_000 });

    await live(client);
    expect(client.pool.status()).toMatchObject({
      upstream: secondary.url,
      terms: { session: 1, extranonce1: 'b0000002' },
    });
    expect(primary.received('mining.authorize')).toHaveLength(1);
    // The refused connection is closed, not left hanging.
    await (
      await primary.connection(0)
    ).closed;
    expect(client.logs.join('')).toContain(
      'pool failed: authorize refused for user alice.rig1: 24 Unauthorized worker',
    );
  });

  it('treats a pool that never answers subscribe as failed', async () => {
    const primary = await startPool();
    const secondary = await startPool();
    primary.handlers['mining.subscribe'] = undefined;
    const client = startClient([primary, secondary], {
      requestTimeoutMs: 150,
      primaryRetryMs: 60_000,
    });
    await live(client);
    expect(client.pool.status().upstream).toBe(secondary.url);
    expect(client.logs.join('')).toContain('pool failed: subscribe timed out');
  });

  it('returns to the primary when it completes subscribe + authorize again', async () => {
    const primary = await startPool({ extranonce1: 'a0000001' });
    const secondary = await startPool({ extranonce1: 'b0000002' });
    primary.accepting = false;
    const client = startClient([primary, secondary], { primaryRetryMs: 80 });
    await live(client);
    expect(client.pool.status().upstream).toBe(secondary.url);
    const onSecondary = await secondary.connection(0);

    // Probes while the primary is down do not disturb mining on the secondary.
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(client.pool.status().upstream).toBe(secondary.url);

    primary.accepting = true;
    const [terms] = await next(client.pool, 'terms', ([t]) => t.extranonce1 === 'a0000001');
    expect(terms.session).toBe(2);
    expect(client.pool.status()).toMatchObject({ state: 'live', upstream: primary.url });
    await onSecondary.closed;
    // The switch was seamless: no state change away from live.
    expect(client.states).toEqual(['connecting', 'live']);
    // Shares of the secondary's session are now stale.
    expect(await client.pool.submit(share(1))).toMatchObject({ accepted: false });
    expect(await client.pool.submit(share(2))).toEqual({ accepted: true });
    expect(secondary.received('mining.submit')).toEqual([]);
    expect(primary.received('mining.submit')).toHaveLength(1);
  });

  it('reports down when every pool fails, then retries with backoff until one is back', async () => {
    const pool = await startPool();
    pool.accepting = false;
    const started = performance.now();
    const client = startClient([pool], { backoff: { minMs: 40, maxMs: 80 } });
    const rounds = (): number => client.states.filter((s) => s === 'down').length;
    // Three failed rounds (counted, not timed: the deadline only catches a hang), then the
    // pool is back.
    await eventually(() => expect(rounds()).toBeGreaterThanOrEqual(3));
    const waited = performance.now() - started;
    pool.accepting = true;
    await live(client);
    // connecting/down alternate while the pool is down.
    expect(client.states.slice(0, 4)).toEqual(['connecting', 'down', 'connecting', 'down']);
    expect(client.states.at(-1)).toBe('live');
    // Each round first waits out its backoff (30 ms, then 60 ms at the cap, with random 0.5):
    // a handful of rounds in the time waited, not a tight loop. Timers never fire early, so
    // a busy machine only makes fewer rounds; one more may have been under way at the switch.
    expect(rounds()).toBeLessThanOrEqual(2 + waited / 30);
  });
});

describe('StratumPool: client.reconnect', () => {
  it('reconnects to the same host on the given port', async () => {
    const pool = await startPool();
    const other = await startPool({ extranonce1: 'c0000003' });
    const client = startClient([pool]);
    await live(client);
    const conn = await pool.connection(0);
    conn.notify('client.reconnect', ['127.0.0.1', other.port, 0]);
    await conn.closed;
    const [terms] = await next(client.pool, 'terms', ([t]) => t.extranonce1 === 'c0000003');
    expect(terms.session).toBe(2);
    expect(client.pool.status().upstream).toBe(`stratum+tcp://127.0.0.1:${other.port}`);
    expect(pool.connections).toHaveLength(1);
  });

  it('honours the wait, capped by maxReconnectWaitMs', async () => {
    const pool = await startPool();
    const client = startClient([pool], { maxReconnectWaitMs: 250 });
    await live(client);
    const conn = await pool.connection(0);
    const asked = Date.now();
    // No host: same host; no port: same port; wait 30 s, capped to 250 ms.
    conn.notify('client.reconnect', [null, null, 30]);
    // The reconnect comes after the capped wait (timers never fire early), not after the
    // 30 s asked for: the deadline only tells the cap apart from no cap.
    await pool.connection(1, 10_000);
    expect(Date.now() - asked).toBeGreaterThanOrEqual(240);
  });

  it('ignores a reconnect to another host and stays connected', async () => {
    const pool = await startPool();
    const client = startClient([pool]);
    await live(client);
    const conn = await pool.connection(0);
    conn.notify('client.reconnect', ['evil.example', 3333, 0]);
    conn.request('after', 'mining.ping');
    await pool.waitFor((m) => m.id === 'after');
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(conn.isClosed).toBe(false);
    expect(pool.connections).toHaveLength(1);
    expect(client.states).toEqual(['connecting', 'live']);
    await eventually(() =>
      expect(client.logs.join('')).toContain('ignoring client.reconnect to another host'),
    );
  });
});
