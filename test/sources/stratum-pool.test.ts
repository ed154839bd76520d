import { describe, expect, it } from 'vitest';
import { notifyParams, type Received } from '../helpers/scripted-pool.js';
import {
  eventually,
  live,
  next,
  PASSWORD,
  share,
  startClient,
  startPool,
} from './stratum-pool-harness.js';

describe('StratumPool: handshake', () => {
  it('runs configure → subscribe → authorize → extranonce.subscribe and goes live', async () => {
    const pool = await startPool();
    const client = startClient([pool]);
    await live(client);
    await pool.waitFor('mining.extranonce.subscribe');

    expect(pool.messages.map((m) => [m.method, m.params])).toEqual([
      [
        'mining.configure',
        [
          ['version-rolling'],
          { 'version-rolling.mask': '1fffe000', 'version-rolling.min-bit-count': 2 },
        ],
      ],
      ['mining.subscribe', ['powbridge-test/1']],
      ['mining.authorize', ['alice.rig1', PASSWORD]],
      ['mining.extranonce.subscribe', []],
    ]);
    expect(client.states).toEqual(['connecting', 'live']);
    expect(client.terms).toEqual([
      {
        session: 1,
        extranonce1: 'f0000001',
        extranonce2Size: 4,
        difficulty: 1,
        versionMask: 0x1fffe000,
      },
    ]);
    expect(client.pool.status()).toEqual({
      state: 'live',
      upstream: pool.url,
      terms: client.terms[0],
      job: null,
    });
  });

  it('reports the upstream without credentials', async () => {
    const pool = await startPool();
    const client = startClient([`stratum+tcp://bob:hunter2@127.0.0.1:${pool.port}`]);
    await live(client);
    expect(client.pool.status().upstream).toBe(`stratum+tcp://127.0.0.1:${pool.port}`);
  });

  it('goes on without version rolling when the pool refuses configure', async () => {
    const pool = await startPool();
    pool.handlers['mining.configure'] = (m, c) =>
      c.reply(m.id, null, [-32601, 'Method not found', null]);
    pool.handlers['mining.extranonce.subscribe'] = (m, c) =>
      c.reply(m.id, null, [20, 'Not supported.', null]);
    const client = startClient([pool]);
    await live(client);
    expect(client.terms[0]?.versionMask).toBeNull();
    // The extranonce.subscribe error is ignored: still live, still the first connection.
    await pool.waitFor('mining.extranonce.subscribe');
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(client.pool.status().state).toBe('live');
    expect(pool.connections).toHaveLength(1);
  });

  it('sends no configure when version rolling is disabled', async () => {
    const pool = await startPool();
    const client = startClient([pool], { versionRolling: null });
    await live(client);
    expect(pool.messages[0]?.method).toBe('mining.subscribe');
    expect(pool.received('mining.configure')).toEqual([]);
  });

  it('emits a job and difficulty sent before authorize was answered, first job clean', async () => {
    const pool = await startPool();
    pool.handlers['mining.authorize'] = (m, c) => {
      c.notify('mining.set_difficulty', [4]);
      c.notify('mining.notify', notifyParams('early', false));
      c.reply(m.id, true);
    };
    const client = startClient([pool]);
    await live(client);
    expect(client.order).toEqual(['state:connecting', 'terms', 'job', 'state:live']);
    expect(client.terms[0]?.difficulty).toBe(4);
    expect(client.jobs[0]).toMatchObject({ jobId: 'early', clean: true, session: 1 });
    expect(client.pool.status().job).toMatchObject({ jobId: 'early', session: 1 });
  });

  it('sends the agent in answer to client.get_version and "pong" to mining.ping', async () => {
    const pool = await startPool();
    const client = startClient([pool]);
    await live(client);
    const conn = await pool.connection(0);
    conn.request('gv-1', 'client.get_version');
    conn.request(77, 'mining.ping');
    expect(await pool.waitFor((m) => m.id === 'gv-1')).toMatchObject({
      result: 'powbridge-test/1',
      error: null,
    });
    expect(await pool.waitFor((m) => m.id === 77)).toMatchObject({ result: 'pong' });
  });

  it('answers unknown methods with an error only when they carry an id', async () => {
    const pool = await startPool();
    const client = startClient([pool]);
    await live(client);
    const conn = await pool.connection(0);
    await pool.waitFor('mining.extranonce.subscribe');
    const before = conn.received.length;
    conn.notify('mining.some_extension', [1]);
    conn.request(5, 'mining.other_extension', []);
    conn.request(6, 'mining.ping');
    await pool.waitFor((m) => m.id === 6);
    // Nothing for the notification; an error for the request; then the pong.
    expect(conn.received.slice(before)).toEqual([
      { id: 5, result: null, error: [-32601, 'method not found', null], connection: 0 },
      { id: 6, result: 'pong', error: null, connection: 0 },
    ]);
  });

  it("emits the pool's client.show_message text", async () => {
    const pool = await startPool();
    const client = startClient([pool]);
    await live(client);
    (await pool.connection(0)).notify('client.show_message', ['maintenance at 12:00 UTC']);
    const [text] = await next(client.pool, 'message');
    expect(text).toBe('maintenance at 12:00 UTC');
  });
});

describe('StratumPool: jobs and terms', () => {
  it('applies set_difficulty with the next job (terms before job)', async () => {
    const pool = await startPool();
    const client = startClient([pool]);
    await live(client);
    const conn = await pool.connection(0);

    conn.notify('mining.notify', notifyParams('a', true));
    await next(client.pool, 'job');
    conn.notify('mining.set_difficulty', [1024.5]);
    // Nothing changes until the next job arrives.
    conn.request(1, 'mining.ping');
    await pool.waitFor((m) => m.id === 1);
    expect(client.terms).toHaveLength(1);
    expect(client.pool.status().terms?.difficulty).toBe(1);

    conn.notify('mining.notify', notifyParams('b', false));
    await next(client.pool, 'job', ([j]) => j.jobId === 'b');
    expect(client.order.slice(-3)).toEqual(['job', 'terms', 'job']);
    expect(client.terms[1]).toMatchObject({ session: 1, difficulty: 1024.5 });
    expect(client.jobs.map((j) => [j.jobId, j.clean, j.session])).toEqual([
      ['a', true, 1],
      ['b', false, 1],
    ]);
    expect(client.jobs[1]).toEqual({
      jobId: 'b',
      prevhash: `${'00'.repeat(31)}01`,
      coinb1: notifyParams('b')[2],
      coinb2: notifyParams('b')[3],
      merkleBranch: ['11'.repeat(32), '22'.repeat(32)],
      version: '20000000',
      nbits: '1d00ffff',
      ntime: '5f5e1000',
      clean: false,
      session: 1,
    });
  });

  it('set_version_mask: new terms in the same session', async () => {
    const pool = await startPool();
    const client = startClient([pool]);
    await live(client);
    (await pool.connection(0)).notify('mining.set_version_mask', ['00ffe000']);
    const [terms] = await next(client.pool, 'terms');
    expect(terms).toMatchObject({ session: 1, versionMask: 0x00ffe000 });
  });

  it('set_extranonce mid-session: new session, old-session shares refused locally', async () => {
    const pool = await startPool();
    const client = startClient([pool]);
    await live(client);
    const conn = await pool.connection(0);
    conn.notify('mining.notify', notifyParams('job1', true));
    await next(client.pool, 'job');

    conn.notify('mining.set_extranonce', ['abcd0002', 6]);
    const [terms] = await next(client.pool, 'terms');
    expect(terms).toEqual({
      session: 2,
      extranonce1: 'abcd0002',
      extranonce2Size: 6,
      difficulty: 1,
      versionMask: 0x1fffe000,
    });
    expect(client.pool.status().job).toBeNull();

    const stale = await client.pool.submit(share(1));
    expect(stale).toEqual({
      accepted: false,
      reason: 'stale: job from an earlier upstream session',
    });

    conn.notify('mining.notify', notifyParams('job2', false));
    const [job] = await next(client.pool, 'job');
    // First job of the new session: clean, whatever the pool said.
    expect(job).toMatchObject({ jobId: 'job2', clean: true, session: 2 });
    const fresh = await client.pool.submit(
      share(2, { jobId: 'job2', extranonce2: '000000000001' }),
    );
    expect(fresh).toEqual({ accepted: true });
    // Only the fresh share reached the pool.
    expect(pool.received('mining.submit').map((m) => m.params)).toEqual([
      ['alice.rig1', 'job2', '000000000001', '5f5e1000', 'deadbeef'],
    ]);
  });

  it('reassembles a notify split across TCP chunks, mid UTF-8 character', async () => {
    const pool = await startPool();
    const client = startClient([pool]);
    await live(client);
    const line = `${JSON.stringify({ id: null, method: 'mining.notify', params: notifyParams('j€1') })}\n`;
    const euro = Buffer.from(line).indexOf(0xe2);
    // Let the handshake's last answer go out first: it would land inside the split line.
    await pool.waitFor('mining.extranonce.subscribe');
    const jobEvent = next(client.pool, 'job');
    await (await pool.connection(0)).sendSplit(line, [5, euro - 4, 1, 30], 15);
    const [job] = await jobEvent;
    expect(job.jobId).toBe('j€1');
    expect(pool.connections).toHaveLength(1);
  });
});

describe('StratumPool: submit', () => {
  it('sends version bits as the 6th param and maps out-of-order answers back', async () => {
    const pool = await startPool();
    const held: Received[] = [];
    pool.handlers['mining.submit'] = (m, c) => {
      held.push(m);
      if (held.length < 3) return;
      // Answer in reverse order, each in a different format.
      c.send({ id: held[2]!.id, result: false, error: null, 'reject-reason': 'Above target' });
      c.reply(held[1]!.id, null, { code: 23, message: 'Low difficulty share' });
      c.reply(held[0]!.id, true);
    };
    const client = startClient([pool]);
    await live(client);

    const outcomes = await Promise.all([
      client.pool.submit(share(1, { nonce: '00000001', versionBits: '00002000' })),
      client.pool.submit(share(1, { nonce: '00000002' })),
      client.pool.submit(share(1, { nonce: '00000003' })),
    ]);
    expect(outcomes).toEqual([
      { accepted: true },
      { accepted: false, reason: '23 Low difficulty share', code: 23 },
      { accepted: false, reason: 'Above target' },
    ]);
    expect(held.map((m) => m.params)).toEqual([
      ['alice.rig1', 'job1', '00000001', '5f5e1000', '00000001', '00002000'],
      ['alice.rig1', 'job1', '00000001', '5f5e1000', '00000002'],
      ['alice.rig1', 'job1', '00000001', '5f5e1000', '00000003'],
    ]);
  });

  it('maps the array error form and its code', async () => {
    const pool = await startPool();
    pool.handlers['mining.submit'] = (m, c) => c.reply(m.id, null, [21, 'Job not found', null]);
    const client = startClient([pool]);
    await live(client);
    expect(await client.pool.submit(share(1))).toEqual({
      accepted: false,
      reason: '21 Job not found',
      code: 21,
    });
  });

  it('times out a submit the pool never answers', async () => {
    const pool = await startPool();
    pool.handlers['mining.submit'] = undefined;
    const client = startClient([pool], { requestTimeoutMs: 200 });
    await live(client);
    const started = Date.now();
    expect(await client.pool.submit(share(1))).toEqual({
      accepted: false,
      reason: 'no answer from the pool within 200 ms',
    });
    expect(Date.now() - started).toBeGreaterThanOrEqual(190);
    expect(pool.received('mining.submit')).toHaveLength(1);
  });

  it('resolves pending submits when the pool disconnects, then reconnects resuming the session', async () => {
    const pool = await startPool();
    pool.handlers['mining.submit'] = (m, c) => {
      if (m.connection === 0) c.destroy();
      else c.reply(m.id, true);
    };
    const client = startClient([pool]);
    await live(client);

    const outcomes = await Promise.all([
      client.pool.submit(share(1, { nonce: '00000001' })),
      client.pool.submit(share(1, { nonce: '00000002' })),
    ]);
    expect(outcomes).toEqual([
      { accepted: false, reason: 'upstream disconnected' },
      { accepted: false, reason: 'upstream disconnected' },
    ]);

    await next(client.pool, 'terms', ([t]) => t.session === 2);
    // Resume: the second subscribe carries the first session's subscription id.
    const subscribes = pool.received('mining.subscribe');
    expect(subscribes.map((m) => m.params)).toEqual([
      ['powbridge-test/1'],
      ['powbridge-test/1', 'sub-0'],
    ]);
    expect(client.states).toEqual(['connecting', 'live', 'connecting', 'live']);
    expect(await client.pool.submit(share(1))).toMatchObject({ accepted: false });
    expect(await client.pool.submit(share(2))).toEqual({ accepted: true });
  });

  it('refuses shares while no upstream is connected', async () => {
    const pool = await startPool();
    pool.accepting = false;
    const client = startClient([pool]);
    expect(await client.pool.submit(share(1))).toEqual({
      accepted: false,
      reason: 'no upstream connected',
    });
  });
});

describe('StratumPool: garbage from the pool', () => {
  it('drops the connection on a line that is not JSON, and reconnects', async () => {
    const pool = await startPool();
    const client = startClient([pool]);
    await live(client);
    const conn = await pool.connection(0);
    conn.sendRaw('HTTP/1.1 400 Bad Request\r\n');
    await conn.closed;
    await pool.connection(1);
    await live(client);
    await eventually(() => expect(client.logs.join('')).toContain('garbage from pool (not JSON)'));
  });

  it('drops the connection on an invalid notify', async () => {
    const pool = await startPool();
    const client = startClient([pool]);
    await live(client);
    const conn = await pool.connection(0);
    const params = notifyParams('bad');
    params[6] = '1d00ff';
    conn.notify('mining.notify', params);
    await conn.closed;
    expect(client.jobs).toEqual([]);
    await pool.connection(1);
  });

  it('drops the connection on an over-long line', async () => {
    const pool = await startPool();
    const client = startClient([pool]);
    await live(client);
    const conn = await pool.connection(0);
    conn.sendRaw(`{"id":null,"method":"client.show_message","params":["${'x'.repeat(40_000)}`);
    await conn.closed;
    expect(client.messages).toEqual([]);
    await pool.connection(1);
    await eventually(() => expect(client.logs.join('')).toContain('line longer than 32768 bytes'));
  });
});

describe('StratumPool: stop', () => {
  it('closes the connection, leaves state down, and is idempotent', async () => {
    const pool = await startPool();
    const client = startClient([pool]);
    await live(client);
    await client.pool.stop();
    await (
      await pool.connection(0)
    ).closed;
    await client.pool.stop();
    expect(client.pool.status()).toEqual({ state: 'down', upstream: null, terms: null, job: null });
    expect(client.states.at(-1)).toBe('down');
  });

  it('stops promptly while a handshake is waiting for answers', async () => {
    const pool = await startPool();
    pool.handlers['mining.subscribe'] = undefined;
    const client = startClient([pool], { requestTimeoutMs: 60_000 });
    await pool.waitFor('mining.subscribe');
    const started = Date.now();
    await client.pool.stop();
    // It does not wait out the minute-long request timeout (the bound only tells that apart).
    expect(Date.now() - started).toBeLessThan(10_000);
    await (
      await pool.connection(0)
    ).closed;
  });
});

it('never logs the password', async () => {
  const pool = await startPool();
  pool.handlers['mining.authorize'] = (m, c) => c.reply(m.id, false, null);
  const client = startClient([pool]);
  await pool.connection(1);
  await eventually(() => expect(client.logs.length).toBeGreaterThan(2));
  expect(client.logs.join('')).not.toContain(PASSWORD);
});
