import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { ClientChannel, ClientSession } from '../../src/relay/client-session.js';
import { Stratifier } from '../../src/relay/stratifier.js';
import { StratumConnector } from '../../src/relay/stratum-connector.js';
import type { StratumDropReason, StratumLimits } from '../../src/relay/stratum-miner-limits.js';
import type { VardiffConfig } from '../../src/relay/vardiff.js';
import { headerFromJob } from '../../src/work/header.js';
import { u32ToHex } from '../../src/work/hex.js';
import type { Job } from '../../src/work/job.js';
import { createPowHasher } from '../../src/work/pow.js';
import { hashDifficulty, MIN_DIFFICULTY } from '../../src/work/target.js';
import { BIP320_MASK } from '../../src/work/version.js';
import { ManualSource } from '../helpers/manual-source.js';
import {
  CpuMiner,
  eventually,
  handshake,
  type Reply,
  SimClock,
  TestMiner,
  within,
  type Work,
} from '../helpers/stratum-miner.js';

// ---- helpers --------------------------------------------------------------------------------

interface Relay {
  source: ManualSource;
  stratifier: Stratifier;
  connector: StratumConnector;
  /** Stratifier sessions of the miners, in subscribe order. */
  sessions: ClientSession[];
  /** Drops and refusals the connector counted, in order. */
  drops: StratumDropReason[];
  miner(): Promise<TestMiner>;
}

const logLines: string[] = [];
const logger = pino({ level: 'debug' }, { write: (line: string) => void logLines.push(line) });
const cleanups: (() => Promise<void>)[] = [];
const miners: TestMiner[] = [];

/** Why the relay closed connections so far, from its debug log. */
function loggedReasons(): string[] {
  return logLines.map((line) => (JSON.parse(line) as { reason?: string }).reason ?? '');
}

async function startRelay(
  options: {
    initialDifficulty?: number;
    /** The Stratum port's own start (config difficulty.stratumInitial). */
    stratumInitial?: number;
    limits?: Partial<StratumLimits>;
    /** Vardiff settings (default: no retarget within a test). */
    vardiff?: Partial<VardiffConfig>;
    now?: () => number;
    /** Circuit places (limits.maxClients) and the Stratum port's own (maxStratumClients). */
    maxClients?: number;
    maxStratumClients?: number;
  } = {},
): Promise<Relay> {
  const source = new ManualSource('sha256d');
  const stratifier = new Stratifier({
    source,
    algorithm: 'sha256d',
    hasher: await createPowHasher('sha256d'),
    // MIN_DIFFICULTY: every nonce is a valid share.
    initialDifficulty: options.initialDifficulty ?? MIN_DIFFICULTY,
    ticketDifficulty: MIN_DIFFICULTY,
    vardiff: options.vardiff ?? {
      minDifficulty: MIN_DIFFICULTY,
      retargetShares: 1_000,
      fastShares: 1_000,
    },
    ...(options.now ? { now: options.now } : {}),
    ...(options.maxClients !== undefined ? { maxClients: options.maxClients } : {}),
    ...(options.maxStratumClients !== undefined
      ? { maxStratumClients: options.maxStratumClients }
      : {}),
  });
  stratifier.start();
  const sessions: ClientSession[] = [];
  stratifier.on('client-open', (session) => sessions.push(session));
  const connector = new StratumConnector(stratifier, {
    limits: options.limits,
    initialDifficulty: options.stratumInitial,
    logger,
  });
  const drops: StratumDropReason[] = [];
  connector.on('drop', (reason) => drops.push(reason));
  await connector.listen('127.0.0.1', 0);
  cleanups.push(async () => {
    await connector.close();
    stratifier.stop();
  });
  const port = connector.address()?.port ?? 0;
  return {
    source,
    stratifier,
    connector,
    sessions,
    drops,
    async miner() {
      const miner = await TestMiner.connect(port);
      miners.push(miner);
      return miner;
    },
  };
}

/**
 * Run `test` with setTimeout faked, so deadlines are checked to the millisecond however busy
 * the machine is (sockets, setImmediate and the vardiff interval stay real).
 */
async function withFakeTimers(test: () => Promise<void>): Promise<void> {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
  try {
    await test();
  } finally {
    vi.useRealTimers();
  }
}

/** Subscribe, never authorize. */
async function subscribeOnly(miner: TestMiner): Promise<void> {
  const reply = await miner.request('mining.subscribe', []);
  expect(reply.error).toBeNull();
}

let nonceCounter = 0;

/** mining.submit params; a fresh nonce each time so shares are never duplicates by accident. */
function share(
  work: Work,
  fields: { job?: Job; extranonce2?: string; ntime?: string; nonce?: string; versionBits?: string },
): unknown[] {
  const job = fields.job ?? work.job;
  const params: unknown[] = [
    'any.worker',
    job.jobId,
    fields.extranonce2 ?? '00'.repeat(work.extranonce2Size),
    fields.ntime ?? job.ntime,
    fields.nonce ?? u32ToHex(++nonceCounter),
  ];
  if (fields.versionBits !== undefined) params.push(fields.versionBits);
  return params;
}

function errorCode(reply: Reply): unknown {
  return Array.isArray(reply.error) ? reply.error[0] : reply.error;
}

function ntimePlus(job: Job, seconds: number): string {
  return u32ToHex(Number.parseInt(job.ntime, 16) + seconds);
}

function activeTimers(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
}

let timersBefore = 0;
beforeEach(() => {
  timersBefore = activeTimers();
});

afterEach(async () => {
  for (const miner of miners) expect(miner.garbage).toEqual([]);
  await Promise.all(miners.splice(0).map((miner) => miner.close()));
  for (const cleanup of cleanups.splice(0)) await cleanup();
  // Peer addresses never reach the log.
  expect(logLines.join('')).not.toContain('127.0.0.1');
  logLines.length = 0;
  // Nothing left listening or connected (libuv frees a handle a loop turn after 'close').
  const sockets = () =>
    process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap' || r === 'TCPServerWrap');
  await eventually(() => sockets().length === 0, 'every socket closed', 1_000);
  // No idle, handshake, grace or vardiff timer outlives the relay. (A connection clears its
  // timers on 'close', which can come a few turns after its handle is gone: wait on
  // setImmediate, which is no timer itself.)
  for (let turn = 0; turn < 100 && activeTimers() > timersBefore; turn++) {
    await new Promise((resolve) => setImmediate(resolve));
  }
  expect(activeTimers()).toBeLessThanOrEqual(timersBefore);
});

// ---- tests ----------------------------------------------------------------------------------

describe('stratum connector: handshake and work', () => {
  it('configures version rolling as requested ∩ upstream, subscribes a donor, then sends difficulty and a job', async () => {
    const relay = await startRelay();
    relay.source.goLive({ difficulty: 1e12 }); // upstream mask: BIP320 1fffe000
    const miner = await relay.miner();

    const configured = await miner.request('mining.configure', [
      ['version-rolling', 'minimum-difficulty'],
      { 'version-rolling.mask': '00fff000', 'version-rolling.min-bit-count': 2 },
    ]);
    expect(configured.result).toEqual({
      'version-rolling': true,
      'version-rolling.mask': '00ffe000',
      'minimum-difficulty': false,
    });

    const subscribed = await miner.request('mining.subscribe', ['cgminer/4.11']);
    expect(subscribed.error).toBeNull();
    const [subscriptions, extranonce1, extranonce2Size] = subscribed.result as unknown[];
    expect(subscriptions).toEqual([
      ['mining.set_difficulty', expect.stringMatching(/^[0-9a-f]{16}$/)],
      ['mining.notify', expect.stringMatching(/^[0-9a-f]{16}$/)],
    ]);
    expect(extranonce1).toMatch(/^[0-9a-f]{4}$/); // two slot bytes of an 8-byte extranonce2
    expect(extranonce2Size).toBe(6);
    const [session] = relay.sessions;
    expect(session?.mode).toBe('donate');
    expect(session?.versionMask).toBe(0x00ffe000);
    // No work before authorize.
    expect(miner.methods).toEqual([]);

    expect((await miner.request('mining.extranonce.subscribe')).result).toBe(true);
    expect((await miner.request('mining.authorize', ['bc1q.anything', ''])).result).toBe(true);
    expect((await miner.next('mining.set_difficulty')).difficulty).toBe(MIN_DIFFICULTY);
    const job = await miner.next('mining.notify');
    expect(miner.methods).toEqual(['mining.set_difficulty', 'mining.notify']);
    expect(job).toMatchObject({ clean: true, version: '20000000', nbits: '207fffff' });
    expect(job.coinb1.endsWith('f000000d')).toBe(true); // upstream extranonce1 folded in

    // Later jobs follow as the upstream sends them.
    relay.source.newJob({ clean: false });
    expect((await miner.next('mining.notify')).clean).toBe(false);
    // Optional keep-alive answered; string ids echoed as given.
    expect(await miner.request('mining.ping', [], 'p-1')).toEqual({
      id: 'p-1',
      result: 'pong',
      error: null,
    });
  });

  it('subscribe and authorize may come in either order', async () => {
    const relay = await startRelay();
    relay.source.goLive({ difficulty: 1e12 });
    const miner = await relay.miner();
    expect((await miner.request('mining.authorize', ['w', 'x'])).result).toBe(true);
    expect(miner.methods).toEqual([]);
    await miner.request('mining.subscribe', []);
    await miner.next('mining.set_difficulty');
    expect((await miner.next('mining.notify')).clean).toBe(true);
    // The mask is fixed at subscribe; one subscription per connection.
    const late = await miner.request('mining.configure', [
      ['version-rolling'],
      { 'version-rolling.mask': '1fffe000' },
    ]);
    expect(late.error).toEqual([20, 'mining.configure must precede mining.subscribe', null]);
    expect(errorCode(await miner.request('mining.subscribe', []))).toBe(20);
    expect(relay.stratifier.clientCount).toBe(1);
  });

  it('accepts a share below the upstream difficulty without forwarding it; donors earn no credit', async () => {
    const relay = await startRelay();
    relay.source.goLive({ difficulty: 1e12 });
    const submit = vi.spyOn(relay.stratifier, 'submit');
    const miner = await relay.miner();
    const work = await handshake(miner);
    const reply = await miner.request('mining.submit', share(work, {}));
    expect(reply).toMatchObject({ result: true, error: null });
    await expect(submit.mock.results[0]?.value).resolves.toEqual({ accepted: true, credit: 0 });
    expect(relay.sessions[0]).toMatchObject({ accepted: 1, credit: 0 });
    expect(relay.source.submitted).toEqual([]);
  });

  it('forwards a share that meets the upstream difficulty as slot ‖ extranonce2, with version bits', async () => {
    const relay = await startRelay();
    relay.source.goLive({ difficulty: MIN_DIFFICULTY });
    const miner = await relay.miner();
    const work = await handshake(miner, { mask: BIP320_MASK });
    const reply = await miner.request(
      'mining.submit',
      share(work, { extranonce2: '0000000000ab', nonce: '0000abcd', versionBits: '00002000' }),
    );
    expect(reply.result).toBe(true);
    expect(relay.source.submitted).toEqual([
      {
        session: 1,
        jobId: 'up1',
        extranonce2: `${work.extranonce1}0000000000ab`,
        ntime: work.job.ntime,
        nonce: '0000abcd',
        versionBits: '00002000',
      },
    ]);
    expect(relay.sessions[0]?.credit).toBe(0);
  });
});

describe('stratum connector: rejections', () => {
  it('answers each rejected share with its Stratum code as [code, message, null]', async () => {
    const relay = await startRelay();
    relay.source.goLive({ difficulty: 1e12 });
    const miner = await relay.miner();
    const submit = (params: unknown[]) => miner.request('mining.submit', params);
    const early = ['w', '1', '000000000000', '00000000', '00000000'];

    // 25 before subscribe, 24 after subscribe but before authorize.
    const notSubscribed = await submit(early);
    expect(notSubscribed.error).toEqual([25, 'not subscribed', null]);
    expect(notSubscribed.result).toBeNull();
    await miner.request('mining.subscribe', []);
    expect(errorCode(await submit(early))).toBe(24);

    const work = await handshake(await relay.miner(), { mask: BIP320_MASK });
    const other = miners[1] as TestMiner;
    const send = (params: unknown[]) => other.request('mining.submit', params);

    // 22: the same share twice.
    const once = share(work, {});
    expect((await send(once)).result).toBe(true);
    const duplicate = await send(once);
    expect(duplicate.error).toEqual([22, 'duplicate share', null]);

    // 20: ntime past the roll window or before the job; version bits outside the mask;
    // extranonce2 of the wrong size.
    expect(errorCode(await send(share(work, { ntime: ntimePlus(work.job, 8_000) })))).toBe(20);
    expect(errorCode(await send(share(work, { ntime: ntimePlus(work.job, -1) })))).toBe(20);
    expect(errorCode(await send(share(work, { versionBits: '00000001' })))).toBe(20);
    expect(errorCode(await send(share(work, { extranonce2: '00' })))).toBe(20);

    // 21: unknown job, then a job cleared by a new block.
    expect(errorCode(await send(share(work, { job: { ...work.job, jobId: 'ffff' } })))).toBe(21);
    relay.source.newJob({ clean: true });
    const fresh = await other.next('mining.notify');
    expect(errorCode(await send(share(work, {})))).toBe(21);
    expect((await send(share(work, { job: fresh }))).result).toBe(true);
    expect(relay.source.submitted).toEqual([]);
  });

  it('a miner that did not configure rolling may not roll version bits', async () => {
    const relay = await startRelay();
    relay.source.goLive({ difficulty: 1e12 });
    const miner = await relay.miner();
    const work = await handshake(miner);
    expect(relay.sessions[0]?.versionMask).toBeNull();
    const reply = await miner.request('mining.submit', share(work, { versionBits: '00002000' }));
    expect(reply.error).toEqual([20, 'version bits outside the negotiated mask', null]);
  });

  it('23: a share below the client difficulty', async () => {
    const relay = await startRelay({ initialDifficulty: 1e6 });
    relay.source.goLive({ difficulty: 1e12 });
    const miner = await relay.miner();
    const work = await handshake(miner);
    expect(work.difficulty).toBe(1e6);
    const reply = await miner.request('mining.submit', share(work, {}));
    expect(reply.error).toEqual([23, 'low difficulty share', null]);
  });
});

describe('stratum connector: abuse and limits', () => {
  it('drops garbage, over-long lines, invalid UTF-8 and floods; other miners keep working', async () => {
    const relay = await startRelay({
      limits: { maxInvalidMessages: 3, maxRequestsPerSecond: 10, burstSeconds: 1 },
    });
    relay.source.goLive({ difficulty: 1e12 });
    const good = await relay.miner();
    const work = await handshake(good);

    const garbage = await relay.miner();
    const first = await garbage.request('mining.subscribe', 'not an array' as unknown as []);
    expect(errorCode(first)).toBe(-32602);
    garbage.send('{not json\n[1,2]\n');
    await within(garbage.closed, 'garbage miner dropped');
    expect(loggedReasons()).toContain('too many invalid messages');

    const long = await relay.miner();
    long.send(`${'x'.repeat(5_000)}\n`);
    await within(long.closed, 'over-long line dropped');
    expect(loggedReasons()).toContain('line longer than 4096 bytes');

    const noNewline = await relay.miner();
    noNewline.send('{'.repeat(5_000)); // the cap applies before the line ends
    await within(noNewline.closed, 'unterminated line dropped');

    const binary = await relay.miner();
    binary.send(Uint8Array.from([0xff, 0xfe, 0x0a]));
    await within(binary.closed, 'invalid UTF-8 dropped');
    expect(loggedReasons()).toContain('line is not valid UTF-8');

    const flood = await relay.miner();
    flood.send('{"id":1,"method":"mining.ping","params":[]}\n'.repeat(50));
    await within(flood.closed, 'flooding miner dropped');
    expect(loggedReasons()).toContain('too many requests');

    relay.source.newJob({ clean: true });
    const job = await good.next('mining.notify');
    expect((await good.request('mining.submit', share(work, { job }))).result).toBe(true);
    expect(good.open).toBe(true);
    await eventually(() => relay.connector.size === 1, 'only the good miner left');
    expect(relay.stratifier.clientCount).toBe(1);
    expect(relay.drops).toEqual(Array.from({ length: 5 }, () => 'abuse'));
  });

  it('answers unknown methods and pool-side methods with -32601 and the id, and keeps the miner', async () => {
    const relay = await startRelay();
    relay.source.goLive();
    const miner = await relay.miner();
    const unknown = await miner.request('mining.suggest_target', ['00000000ffff'], 'abc');
    expect(unknown.id).toBe('abc');
    expect(unknown.error).toEqual([-32601, 'unknown method mining.suggest_target', null]);
    const poolSide = await miner.request('mining.set_difficulty', [1]);
    expect(errorCode(poolSide)).toBe(-32601);
    expect((await miner.request('mining.ping')).result).toBe('pong');
  });

  it('drops a miner that does not finish the handshake, and an idle one', async () => {
    const relay = await startRelay({ limits: { handshakeTimeoutMs: 150, idleTimeoutMs: 400 } });
    relay.source.goLive({ difficulty: 1e12 });
    const silent = await relay.miner();
    await subscribeOnly(silent);
    await within(silent.closed, 'handshake timeout', 5_000);
    expect(loggedReasons()).toContain('handshake timeout');
    await eventually(() => relay.stratifier.clientCount === 0, 'its slot to go back');

    const idle = await relay.miner();
    await handshake(idle);
    // Jobs keep flowing to it, but only what it sends counts as a sign of life: it gets the
    // new job and is still dropped as idle. (The deadline only catches a hang.)
    relay.source.newJob({ clean: false });
    await idle.next('mining.notify');
    await within(idle.closed, 'idle timeout', 5_000);
    expect(loggedReasons()).toContain('idle');
    expect(relay.drops).toEqual(['handshake-timeout', 'idle']);
  });

  it('refuses connections beyond the maximum', async () => {
    const relay = await startRelay({ limits: { maxConnections: 1 } });
    relay.source.goLive({ difficulty: 1e12 });
    const first = await relay.miner();
    const second = await relay.miner();
    await within(second.closed, 'second connection refused');
    await handshake(first);
    expect(first.open).toBe(true);
    expect(relay.drops).toEqual(['connection-limit']);
  });

  it('drops a miner that stops reading', async () => {
    const relay = await startRelay({ limits: { maxBufferedBytes: 16 * 1024 } });
    relay.source.goLive({ difficulty: 1e12 });
    const slow = await relay.miner();
    await handshake(slow);
    slow.socket.pause();
    // 40 KB jobs: a few hundred fill the loopback socket buffers, then ours.
    const coinb1 = `01${'00'.repeat(40_000)}`;
    for (let i = 0; i < 600 && relay.connector.size > 0; i++) {
      relay.source.newJob({ clean: false, coinb1 });
      if (i % 50 === 49) await new Promise((resolve) => setImmediate(resolve));
    }
    await eventually(() => relay.connector.size === 0, 'slow reader dropped');
    expect(loggedReasons()).toContain('slow reader');
    expect(relay.stratifier.clientCount).toBe(0);
    expect(relay.drops).toEqual(['slow-reader']);
  });
});

describe('stratum connector: places are for work', () => {
  it('20 miners on 10 places: 10 work, the rest get error 20 and a close, as cpuminer expects; circuits keep theirs', async () => {
    const relay = await startRelay({ maxClients: 5, maxStratumClients: 10 });
    relay.source.goLive({ difficulty: 1e12 });
    const crowd = await Promise.all(Array.from({ length: 20 }, () => relay.miner()));
    // cpuminer's first subscribe: id 1, its user agent.
    const answers = await Promise.all(
      crowd.map((miner) => miner.request('mining.subscribe', ['cpuminer/2.5.1'], 1)),
    );
    const placed = crowd.filter((_, i) => answers[i]?.error === null);
    const refused = crowd.filter((_, i) => answers[i]?.error !== null);
    expect(placed).toHaveLength(10);
    for (const [i, miner] of crowd.entries()) {
      if (!refused.includes(miner)) continue;
      // The error cpuminer and cgminer print, in the array form they parse.
      expect(answers[i]).toEqual({
        id: 1,
        result: null,
        error: [20, 'stratum port is full, retry later', null],
      });
      // cpuminer retries once on the same connection with no params, then reads the close and
      // pauses before it connects again (cgminer: a new connection, then the pool is dead).
      miner.send('{"id": 1, "method": "mining.subscribe", "params": []}\n');
    }
    await within(Promise.all(refused.map((miner) => miner.closed)), 'refused miners closed');
    expect(relay.drops).toEqual(Array.from({ length: 10 }, () => 'full'));
    expect(relay.stratifier.clientsOn('stratum')).toBe(10);

    // The ten placed miners work as usual.
    for (const miner of placed) {
      expect((await miner.request('mining.authorize', ['w', 'x'])).result).toBe(true);
      await miner.next('mining.set_difficulty');
      await miner.next('mining.notify');
    }
    // The donors took none of the circuits' five places.
    const circuit: ClientChannel = {
      sendJob: () => {},
      sendDifficulty: () => {},
      sendExtranonce: () => {},
      sendVersionMask: () => {},
      sendUpstreamState: () => {},
      close: () => {},
    };
    for (let i = 0; i < 5; i++) relay.stratifier.register(circuit, 'tickets');
    expect(relay.stratifier.clientsOn('circuit')).toBe(5);
    // A place that frees up takes the next miner.
    await placed[0]?.close();
    await eventually(() => relay.stratifier.clientsOn('stratum') === 9, 'a place freed');
    const next = await relay.miner();
    expect((await next.request('mining.subscribe', [])).error).toBeNull();
  });

  it('a working miner must get a share accepted in time: pings, bad shares and stray bytes do not keep it', async () => {
    await withFakeTimers(async () => {
      const relay = await startRelay({ limits: { shareTimeoutMs: 60_000 } });
      relay.source.goLive({ difficulty: 1e12 });
      const idler = await relay.miner();
      const idlerWork = await handshake(idler);
      const worker = await relay.miner();
      const work = await handshake(worker);

      // 57 s: a stray byte every 3 s (whitespace before its next line), a ping and a share
      // of an unknown job every 15 s from the idler; an accepted share every 15 s from the
      // worker.
      for (let second = 3; second <= 57; second += 3) {
        await vi.advanceTimersByTimeAsync(3_000);
        idler.send(' ');
        if (second % 15 !== 0) continue;
        expect((await idler.request('mining.ping')).result).toBe('pong');
        const stale = share(idlerWork, { job: { ...idlerWork.job, jobId: 'ffff' } });
        expect(errorCode(await idler.request('mining.submit', stale))).toBe(21);
        expect((await worker.request('mining.submit', share(work, {}))).result).toBe(true);
      }
      await vi.advanceTimersByTimeAsync(2_999);
      expect(relay.drops).toEqual([]);
      await vi.advanceTimersByTimeAsync(1);
      expect(relay.drops).toEqual(['no-share']);
      expect((await idler.next('client.show_message')).message).toBe(
        'no accepted share in 60 s: closing',
      );
      await idler.closed;
      expect(loggedReasons()).toContain('no accepted share in time');

      // The worker's last share came at 45 s, so it has until 105 s; each share gives it
      // another 60 s. Ten minutes on, it is still there.
      for (let i = 0; i < 12; i++) {
        await vi.advanceTimersByTimeAsync(i === 0 ? 44_999 : 50_000);
        expect((await worker.request('mining.submit', share(work, {}))).result).toBe(true);
      }
      expect(worker.open).toBe(true);
      expect(relay.drops).toEqual(['no-share']);
      expect(relay.stratifier.clientCount).toBe(1);
    });
  });

  it('the share deadline waits while the upstream gives no work, then starts afresh', async () => {
    await withFakeTimers(async () => {
      const relay = await startRelay({ limits: { shareTimeoutMs: 60_000 } });
      relay.source.goLive({ difficulty: 1e12 });
      const miner = await relay.miner();
      await handshake(miner);
      await vi.advanceTimersByTimeAsync(50_000);
      relay.source.setState('down');
      expect((await miner.next('client.show_message')).message).toMatch(/upstream lost/);
      // Five times the deadline (within the idle timeout: it sent nothing meanwhile).
      await vi.advanceTimersByTimeAsync(300_000);
      expect(relay.drops).toEqual([]);

      relay.source.goLive({ session: 2, extranonce1: '0badcafe', difficulty: 1e12 });
      await miner.next('mining.notify');
      await vi.advanceTimersByTimeAsync(59_999);
      expect(relay.drops).toEqual([]);
      await vi.advanceTimersByTimeAsync(1);
      expect(relay.drops).toEqual(['no-share']);
      await miner.closed;
    });
  });

  it('without a share deadline (a miner client’s own local miners) only the idle timeout applies', async () => {
    await withFakeTimers(async () => {
      const relay = await startRelay({ limits: { shareTimeoutMs: null, idleTimeoutMs: 600_000 } });
      relay.source.goLive({ difficulty: 1e12 });
      const miner = await relay.miner();
      await handshake(miner);
      // An hour of pings and no share: kept.
      for (let minute = 1; minute <= 60; minute++) {
        await vi.advanceTimersByTimeAsync(60_000);
        expect((await miner.request('mining.ping')).result).toBe('pong');
      }
      expect(relay.drops).toEqual([]);
      expect(miner.open).toBe(true);
      // Silence still ends it.
      await vi.advanceTimersByTimeAsync(600_000);
      expect(relay.drops).toEqual(['idle']);
      await miner.closed;
    });
  });

  it('slowloris: a connection that dribbles bytes, or only pings, is dropped at the handshake deadline', async () => {
    await withFakeTimers(async () => {
      const relay = await startRelay({ limits: { handshakeTimeoutMs: 20_000 } });
      relay.source.goLive({ difficulty: 1e12 });
      const dribbler = await relay.miner();
      const pinger = await relay.miner();
      await subscribeOnly(pinger);
      const line = '{"id":1,"method":"mining.subscribe","params":[]}\n';
      for (let second = 3; second < 20; second += 3) {
        await vi.advanceTimersByTimeAsync(3_000);
        dribbler.send(line.slice(second / 3 - 1, second / 3));
        expect((await pinger.request('mining.ping')).result).toBe('pong');
      }
      // 18 s so far: the deadline is at 20 s from connecting, whatever came meanwhile.
      await vi.advanceTimersByTimeAsync(1_999);
      expect(relay.drops).toEqual([]);
      await vi.advanceTimersByTimeAsync(1);
      expect(relay.drops).toEqual(['handshake-timeout', 'handshake-timeout']);
      await Promise.all([dribbler.closed, pinger.closed]);
      await eventually(() => relay.stratifier.clientCount === 0, 'the pinger’s place back');
    });
  });
});

describe('stratum connector: upstream changes', () => {
  it('sends set_extranonce to miners that subscribed to it and hangs up on the others', async () => {
    const relay = await startRelay();
    relay.source.goLive({ difficulty: MIN_DIFFICULTY, extranonce2Size: 8 });
    const follower = await relay.miner();
    const work = await handshake(follower, { extranonceUpdates: true });
    const legacy = await relay.miner();
    await handshake(legacy);
    expect(relay.stratifier.clientCount).toBe(2);

    // 3 bytes upstream: one slot byte, two for each miner.
    relay.source.setTerms({ extranonce2Size: 3, difficulty: MIN_DIFFICULTY });
    const update = await follower.next('mining.set_extranonce');
    expect(update).toEqual({ extranonce1: work.extranonce1.slice(2), extranonce2Size: 2 });
    expect(await legacy.next('client.reconnect')).toEqual({
      host: null,
      port: null,
      waitSeconds: 0,
    });
    await within(legacy.closed, 'legacy miner closed');
    await eventually(() => relay.stratifier.clientCount === 1, 'legacy session closed');

    // The current job comes again as clean work (docs/design.md §4.2): the follower mines it with
    // its new extranonce, forwarded as slot ‖ extranonce2.
    const job = await follower.next('mining.notify');
    expect(job.clean).toBe(true);
    const moved: Work = { ...work, ...update, job };
    const reply = await follower.request('mining.submit', share(moved, { extranonce2: 'beef' }));
    expect(reply.result).toBe(true);
    expect(relay.source.submitted.at(-1)?.extranonce2).toBe(`${update.extranonce1}beef`);
  });

  it('sends set_version_mask only to miners that negotiated version rolling', async () => {
    const relay = await startRelay();
    relay.source.goLive({ difficulty: 1e12 });
    const rolling = await relay.miner();
    await handshake(rolling, { mask: BIP320_MASK });
    const plain = await relay.miner();
    await handshake(plain);

    relay.source.setTerms({ versionMask: 0x0000e000 });
    expect((await rolling.next('mining.set_version_mask')).mask).toBe(0x0000e000);
    relay.source.setTerms({ versionMask: null });
    expect((await rolling.next('mining.set_version_mask')).mask).toBe(0);
    // Anything sent to `plain` in the same turns arrived before this answer.
    await plain.request('mining.ping');
    expect(plain.queued('mining.set_version_mask')).toBe(0);
  });

  it('tells miners when the upstream is down, refuses shares, and resumes with new work', async () => {
    const relay = await startRelay();
    relay.source.goLive({ difficulty: 1e12 });
    const miner = await relay.miner();
    const work = await handshake(miner);

    relay.source.setState('down');
    expect((await miner.next('client.show_message')).message).toMatch(/upstream lost/);
    const refused = await miner.request('mining.submit', share(work, {}));
    expect(refused.error).toEqual([21, 'no upstream work: share not accepted', null]);

    relay.source.goLive({ session: 2, extranonce1: '0badcafe', difficulty: 1e12 });
    const job = await miner.next('mining.notify');
    expect((await miner.next('client.show_message')).message).toMatch(/back/);
    expect(errorCode(await miner.request('mining.submit', share(work, {})))).toBe(21);
    expect((await miner.request('mining.submit', share(work, { job }))).result).toBe(true);
    expect(relay.source.submitted).toEqual([]);
  });

  it('answers subscribe with error 20 while there is no upstream, and lets the miner retry', async () => {
    const relay = await startRelay();
    const miner = await relay.miner();
    const configured = await miner.request('mining.configure', [
      ['version-rolling'],
      { 'version-rolling.mask': 'ffffffff' },
    ]);
    // Without upstream terms there is no mask to grant.
    expect(configured.result).toEqual({ 'version-rolling': false });
    const early = await miner.request('mining.subscribe', []);
    expect(early.error).toEqual([20, 'no upstream work yet, retry later', null]);
    expect(miner.open).toBe(true);

    relay.source.goLive({ difficulty: 1e12 });
    const work = await handshake(miner);
    expect(work.job.clean).toBe(true);
  });
});

describe('stratum connector: difficulty', () => {
  it("starts miners at the port's own difficulty, or at the one they suggest before subscribing", async () => {
    const relay = await startRelay({
      initialDifficulty: 2 ** -10, // circuits'
      stratumInitial: 2 ** -20,
      vardiff: { minDifficulty: 2 ** -24, maxDifficulty: 2 ** -4, fastShares: 1_000 },
    });
    relay.source.goLive({ difficulty: 2 ** -6 });
    expect((await handshake(await relay.miner())).difficulty).toBe(2 ** -20);

    const suggested = async (difficulty: unknown): Promise<number> => {
      const miner = await relay.miner();
      expect(await miner.request('mining.suggest_difficulty', [difficulty])).toMatchObject({
        result: true,
        error: null,
      });
      return (await handshake(miner)).difficulty;
    };
    expect(await suggested(2 ** -8)).toBe(2 ** -8);
    // Clamped to [min, max], and never above the upstream difficulty (2^-6 here).
    expect(await suggested(2 ** -40)).toBe(2 ** -24);
    expect(await suggested(1e9)).toBe(2 ** -6);
    expect(await suggested(3e-5)).toBe(3e-5); // taken as asked, not rounded

    // Refused as invalid params, naming the field; the miner stays.
    const miner = await relay.miner();
    expect((await miner.request('mining.suggest_difficulty', [0])).error).toEqual([
      -32602,
      'mining.suggest_difficulty: difficulty: must be finite and > 0',
      null,
    ]);
    expect((await miner.request('mining.suggest_difficulty', ['8'])).error).toEqual([
      -32602,
      'mining.suggest_difficulty: difficulty: expected a number',
      null,
    ]);
    expect(errorCode(await miner.request('mining.suggest_difficulty', []))).toBe(-32602);
    expect(miner.open).toBe(true);
  });

  it('a suggestion while working: set_difficulty, then the same work under a new id; the old id keeps its difficulty', async () => {
    const relay = await startRelay();
    relay.source.goLive({ difficulty: 1e12 });
    // Between subscribe and authorize: it is the difficulty work starts at.
    const miner = await relay.miner();
    await miner.request('mining.subscribe', []);
    expect((await miner.request('mining.suggest_difficulty', [2 ** -31])).result).toBe(true);
    expect((await miner.request('mining.authorize', ['w', 'x'])).result).toBe(true);
    expect((await miner.next('mining.set_difficulty')).difficulty).toBe(2 ** -31);
    const first = await miner.next('mining.notify');
    expect(miner.methods).toEqual(['mining.set_difficulty', 'mining.notify']);

    // While working: set_difficulty, then the current job under a new id, not clean (the
    // miner finishes what it has: that work was sent at 2^-31 and is judged at it).
    expect((await miner.request('mining.suggest_difficulty', [2 ** -8])).result).toBe(true);
    expect((await miner.next('mining.set_difficulty')).difficulty).toBe(2 ** -8);
    const resent = await miner.next('mining.notify');
    expect(resent.jobId).not.toBe(first.jobId);
    expect(resent).toEqual({ ...first, jobId: resent.jobId, clean: false });
    const work: Work = {
      extranonce1: relay.sessions[0]?.extranonce1 ?? '',
      extranonce2Size: 6,
      difficulty: 2 ** -31,
      job: first,
    };
    // Half of all hashes meet 2^-31, one in 2^24 meets 2^-8: find an old-work share that
    // meets the first and not the second, and a second one for the new id.
    const below = await sharesBelow(work, 2 ** -31, 2 ** -8, 2);
    expect((await miner.request('mining.submit', share(work, below[0] ?? {}))).result).toBe(true);
    const late = share(work, { ...below[1], job: resent });
    expect((await miner.request('mining.submit', late)).error).toEqual([
      23,
      'low difficulty share',
      null,
    ]);
    // The same suggestion again changes nothing: no new job.
    await miner.request('mining.suggest_difficulty', [2 ** -8]);
    await miner.request('mining.ping');
    expect(miner.queued('mining.notify')).toBe(0);
  });

  it('a cpuminer-like miner far faster than the target: vardiff gets there in seconds, no honest share is rejected', async () => {
    // Simulated time: the miner moves the relay's clock on by 1/256 s per hash it computes.
    // That squeezes 25 minutes into a few real seconds, so the per-second request limit
    // (real time) is lifted.
    const clock = new SimClock();
    const relay = await startRelay({
      stratumInitial: 2 ** -28, // 16 hashes a share: 16 shares a second
      vardiff: { minDifficulty: MIN_DIFFICULTY }, // the defaults: one share per 15 s
      now: clock.now,
      limits: { maxRequestsPerSecond: 1_000_000 },
    });
    relay.source.goLive({ difficulty: 1e12 });
    const miner = await relay.miner();
    const work = await handshake(miner);
    expect(work.difficulty).toBe(2 ** -28);
    const cpu = new CpuMiner(miner, work, { hashesPerSecond: 256, clock, threads: 4 });

    // 15 s a share at 256 hashes/s is difficulty 15 × 256 / 2^32 ≈ 2^-20.1. Within the first
    // simulated minute it is within 4× of that, after several retargets.
    await cpu.mine(() => clock.now() >= 60);
    expect(cpu.difficulty).toBeGreaterThanOrEqual(2 ** -22);
    expect(cpu.retargets.length).toBeGreaterThanOrEqual(3);

    // The pool's work changes meanwhile, as it does: a new job, then a new block. (The ping
    // lets the notify reach the miner before it hashes on: work of the old block found after
    // the new one is stale, 21, for any pool.)
    relay.source.newJob({ clean: false });
    await cpu.mine(() => clock.now() >= 300);
    relay.source.newJob({ clean: true });
    await miner.request('mining.ping');
    await cpu.mine(() => clock.now() >= 1500);

    // Not one honest share rejected: not the ones of work taken before a retarget and sent
    // after it at the old difficulty (the shares cpuminer lost), of which there were some.
    expect(cpu.rejected).toEqual([]);
    expect(cpu.shares.every((s) => s.code === null)).toBe(true);
    expect(cpu.shares.filter((s) => s.oldWork).length).toBeGreaterThan(0);
    // Settled: over the last 20 minutes, within 4× of one share per 15 s.
    const settled = cpu.accepted.filter((s) => s.at >= 300).length;
    expect(settled).toBeGreaterThanOrEqual(1200 / 60);
    expect(settled).toBeLessThanOrEqual(1200 / 3.75);
    // Every set_difficulty was followed by a notify (a job with a new id) before any other.
    const methods = miner.methods;
    methods.forEach((method, i) => {
      if (method === 'mining.set_difficulty') expect(methods[i + 1]).toBe('mining.notify');
    });
    expect(new Set(relay.sessions.map((s) => s.rejected))).toEqual(new Set([0]));
  }, 60_000);

  it('work for a job of an old connection is stale (21), also after the relay restarts', async () => {
    const before = await startRelay();
    before.source.goLive({ difficulty: 1e12 });
    const gone = await before.miner();
    const old = await handshake(gone);
    await gone.close();
    await cleanups.splice(0)[0]?.(); // the relay stops

    // The restarted relay's first job: its ids do not repeat the old process's.
    const after = await startRelay();
    after.source.goLive({ difficulty: 1e12 });
    const miner = await after.miner();
    const work = await handshake(miner);
    expect(work.job.jobId).not.toBe(old.job.jobId);
    const stale = await miner.request('mining.submit', share(work, { job: old.job }));
    expect(stale.error).toEqual([21, 'job not found (stale)', null]);
    expect((await miner.request('mining.submit', share(work, {}))).result).toBe(true);
  });
});

/** `count` shares of `work` whose hash meets `low` but not `high` (distinct nonces). */
async function sharesBelow(
  work: Work,
  low: number,
  high: number,
  count: number,
): Promise<{ extranonce2: string; nonce: string }[]> {
  const hasher = await createPowHasher('sha256d');
  const found: { extranonce2: string; nonce: string }[] = [];
  const extranonce2 = '00'.repeat(work.extranonce2Size);
  for (let n = 0; found.length < count; n++) {
    const nonce = u32ToHex(0x40000000 + n);
    const candidate = { jobId: work.job.jobId, extranonce2, ntime: work.job.ntime, nonce };
    const { header } = headerFromJob(work.job, work.extranonce1, candidate, null);
    const achieved = hashDifficulty(await hasher(header), 'sha256d');
    if (achieved >= low && achieved < high) found.push({ extranonce2, nonce });
  }
  return found;
}
