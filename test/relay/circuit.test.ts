import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, expect, it, type MockInstance, vi } from 'vitest';
import WebSocket from 'ws';
import { CircuitClient } from '../../src/client/circuit-client.js';
import type { RpcError } from '../../src/protocol/errors.js';
import { RpcErrorCode } from '../../src/protocol/errors.js';
import { jobParams, type JobParams } from '../../src/protocol/messages.js';
import { CircuitConnector } from '../../src/relay/circuit-connector.js';
import type { ClientChannel } from '../../src/relay/client-session.js';
import { Stratifier } from '../../src/relay/stratifier.js';
import type { Job } from '../../src/work/job.js';
import { createPowHasher } from '../../src/work/pow.js';
import { MIN_DIFFICULTY } from '../../src/work/target.js';
import { ManualSource } from '../helpers/manual-source.js';
import { startTestStratifier } from '../helpers/test-stratifier.js';

let server: Server;
let source: ManualSource;
let stratifier: Stratifier;
let connector: CircuitConnector;
let url: string;
const clients: CircuitClient[] = [];

async function connect(): Promise<CircuitClient> {
  const client = await CircuitClient.connect(url, { timeoutMs: 5_000 });
  clients.push(client);
  return client;
}

function nextEvent<T>(client: CircuitClient, event: 'job' | 'close' | 'relayState'): Promise<T> {
  return new Promise((resolve) => client.once(event, (value: unknown) => resolve(value as T)));
}

/** A bare WebSocket client registered in donate mode, for tests that misbehave below the client. */
async function registerRaw(ws: WebSocket): Promise<void> {
  await new Promise((resolve) => ws.once('open', resolve));
  const registered = new Promise((resolve) => ws.once('message', resolve));
  ws.send(
    JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'mining.register',
      params: { agent: 's', mode: 'donate' },
    }),
  );
  await registered;
}

/** Stop reading the socket: the kernel buffers fill, and the relay must not queue without bound. */
function stopReading(ws: WebSocket): void {
  (ws as unknown as { _socket: { pause(): void } })._socket.pause();
}

beforeEach(async () => {
  source = new ManualSource('sha256d');
  stratifier = await startTestStratifier(source);
  connector = new CircuitConnector(stratifier, { limits: { maxInvalidFrames: 3 } });
  server = createServer((_, res) => res.end());
  connector.attach(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}/v1/circuit`;
});

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  connector.close();
  stratifier.stop();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

describe('circuit connector', () => {
  it('registers, delivers the current job, accepts a share and earns credit', async () => {
    source.goLive({ difficulty: 1e12 });
    const client = await connect();
    const firstJob = nextEvent<JobParams>(client, 'job');
    const session = await client.request('mining.register', { agent: 'test', mode: 'tickets' });
    expect(session).toMatchObject({ algorithm: 'sha256d', extranonce2Size: 6, ticket: null });
    expect(session.extranonce1).toMatch(/^[0-9a-f]{4}$/);
    expect(session.versionMask).toBe('1fffe000');
    const job = await firstJob;
    expect(job.clean).toBe(true);
    const result = await client.request('mining.submit', {
      jobId: job.jobId,
      extranonce2: '000000000001',
      ntime: job.ntime,
      nonce: '00000000',
    });
    expect(result.accepted).toBe(true);
    expect(result.credit).toBeCloseTo(1, 9);
    // Meets the client difficulty but not the upstream's: not forwarded.
    expect(source.submitted).toHaveLength(0);
  });

  it('forwards a share that meets the upstream difficulty with slot ‖ extranonce2', async () => {
    source.goLive({ difficulty: MIN_DIFFICULTY });
    const client = await connect();
    const jobPromise = nextEvent<JobParams>(client, 'job');
    const session = await client.request('mining.register', { agent: 'test', mode: 'donate' });
    const job = await jobPromise;
    const result = await client.request('mining.submit', {
      jobId: job.jobId,
      extranonce2: '0000000000ab',
      ntime: job.ntime,
      nonce: '00000001',
    });
    expect(result.credit).toBe(0); // donation mode earns nothing
    await vi.waitFor(() =>
      expect(source.submitted).toEqual([
        expect.objectContaining({
          session: 1,
          jobId: 'up1',
          extranonce2: `${session.extranonce1}0000000000ab`,
          nonce: '00000001',
        }),
      ]),
    );
  });

  it('answers errors with codes and keeps serving other clients', async () => {
    source.goLive({ difficulty: 1e12 });
    const good = await connect();
    await good.request('mining.register', { agent: 'good', mode: 'tickets' });
    const bad = await connect();
    await expect(
      bad.request('mining.submit', {
        jobId: 'x',
        extranonce2: '00',
        ntime: '00000000',
        nonce: '00000000',
      }),
    ).rejects.toMatchObject({ code: RpcErrorCode.notRegistered });
    await expect(
      // @ts-expect-error: wrong params on purpose
      bad.request('mining.register', { agent: 5, mode: 'tickets' }),
    ).rejects.toMatchObject({ code: RpcErrorCode.invalidParams, message: /agent/ });
    const closed = nextEvent<{ code: number }>(bad, 'close');
    bad.sendRaw('{not json');
    bad.sendRaw(JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'mining.nope', params: {} }));
    expect((await closed).code).toBe(1008);
    // The well-behaved client is untouched: it gets the next job.
    const job = nextEvent<JobParams>(good, 'job');
    source.newJob({ clean: true });
    expect((await job).clean).toBe(true);
    expect(good.open).toBe(true);
  });

  it('closes a connection that sends an oversized frame', async () => {
    source.goLive();
    const client = await connect();
    const closed = nextEvent<{ code: number }>(client, 'close');
    client.sendRaw('x'.repeat(20_000));
    expect((await closed).code).toBe(1009);
  });

  it('unknown method is -32601', async () => {
    source.goLive();
    const client = await connect();
    const error = await new Promise<RpcError>((resolve) => {
      // The typed client would not send an unknown method: go around its types.
      (client as unknown as { request: (m: string, p: object) => Promise<unknown> })
        .request('ticket.nothing', {})
        .catch((e: RpcError) => resolve(e));
    });
    expect(error.code).toBe(RpcErrorCode.methodNotFound);
  });

  it('tells clients when the upstream is down and refuses shares until it is back', async () => {
    source.goLive({ difficulty: 1e12 });
    const client = await connect();
    const jobPromise = nextEvent<JobParams>(client, 'job');
    await client.request('mining.register', { agent: 'test', mode: 'tickets' });
    const job = await jobPromise;
    const down = nextEvent<{ upstream: string }>(client, 'relayState');
    source.setState('down');
    expect((await down).upstream).toBe('down');
    await expect(
      client.request('mining.submit', {
        jobId: job.jobId,
        extranonce2: '000000000001',
        ntime: job.ntime,
        nonce: '00000000',
      }),
    ).rejects.toMatchObject({ code: RpcErrorCode.jobNotFound });
    // Failover: a new upstream session brings new work; the old job stays dead.
    const newJob = nextEvent<JobParams>(client, 'job');
    source.goLive({ session: 2, extranonce1: '0badcafe', difficulty: 1e12 });
    const fresh = await newJob;
    expect(fresh.jobId).not.toBe(job.jobId);
    await expect(
      client.request('mining.submit', {
        jobId: job.jobId,
        extranonce2: '000000000001',
        ntime: job.ntime,
        nonce: '00000000',
      }),
    ).rejects.toMatchObject({ code: RpcErrorCode.jobNotFound });
    expect(source.submitted).toHaveLength(0);
  });
});

describe('register refusal', () => {
  it('is 37 with data.retryAfter while there is no upstream work; the same circuit may retry', async () => {
    const client = await connect();
    await expect(
      client.request('mining.register', { agent: 'early', mode: 'tickets' }),
    ).rejects.toMatchObject({
      code: RpcErrorCode.relayFull,
      message: 'no upstream work yet, retry later',
      data: { retryAfter: 5 },
    });
    expect(client.open).toBe(true);
    source.goLive({ difficulty: 1e12 });
    const session = await client.request('mining.register', { agent: 'early', mode: 'tickets' });
    expect(session.algorithm).toBe('sha256d');
  });

  it('is 37 with a longer data.retryAfter when the relay is full', async () => {
    const full = new Stratifier({
      source,
      algorithm: 'sha256d',
      hasher: await createPowHasher('sha256d'),
      initialDifficulty: MIN_DIFFICULTY,
      ticketDifficulty: MIN_DIFFICULTY,
      maxClients: 1,
    });
    full.start();
    try {
      source.goLive({ difficulty: 1e12 });
      const channel: ClientChannel = {
        sendJob: () => {},
        sendDifficulty: () => {},
        sendExtranonce: () => {},
        sendVersionMask: () => {},
        sendUpstreamState: () => {},
        close: () => {},
      };
      full.register(channel, 'donate');
      expect(() => full.register(channel, 'donate')).toThrow(
        expect.objectContaining({ code: RpcErrorCode.relayFull, data: { retryAfter: 30 } }),
      );
    } finally {
      full.stop();
    }
  });
});

describe('upgrade routing', () => {
  it('answers 404 to a WebSocket upgrade on a path nobody serves', async () => {
    const other = url.replace('/v1/circuit', '/v1/nothing');
    const status = await new Promise<number>((resolve, reject) => {
      const ws = new WebSocket(other);
      ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.once('open', () => reject(new Error('upgrade should have been refused')));
      ws.once('error', () => undefined);
    });
    expect(status).toBe(404);
  });
});

describe('abuse limits', () => {
  it('a request flood closes that circuit only', async () => {
    source.goLive({ difficulty: 1e12 });
    const good = await connect();
    await good.request('mining.register', { agent: 'good', mode: 'tickets' });
    const flooder = await connect();
    const closed = nextEvent<{ code: number; reason: string }>(flooder, 'close');
    const ping = JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'mining.register',
      params: { agent: 'x', mode: 'tickets' },
    });
    for (let i = 0; i < 500; i++) flooder.sendRaw(ping);
    const { code, reason } = await closed;
    expect(code).toBe(1008);
    expect(reason).toMatch(/too many requests|invalid frames/);
    expect(good.open).toBe(true);
    await expect(
      good.request('mining.submit', {
        jobId: 'nope',
        extranonce2: '000000000001',
        ntime: '00000000',
        nonce: '00000000',
      }),
    ).rejects.toMatchObject({ code: RpcErrorCode.jobNotFound });
  });

  it('a client that stops reading is dropped instead of buffered without bound', async () => {
    connector.close();
    connector = new CircuitConnector(stratifier, { limits: { maxBufferedBytes: 64 * 1024 } });
    const slowServer = createServer();
    connector.attach(slowServer);
    await new Promise<void>((resolve) => slowServer.listen(0, '127.0.0.1', resolve));
    try {
      source.goLive({ difficulty: 1e12 });
      const port = (slowServer.address() as AddressInfo).port;
      const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/circuit`);
      await registerRaw(ws);
      // Stop reading: the kernel buffers fill, then the relay's own queue would grow.
      stopReading(ws);
      const big = 'ab'.repeat(8_000);
      for (let i = 0; i < 2_000 && stratifier.clientCount > 0; i++) {
        source.newJob({ clean: false, coinb2: big });
        if (i % 50 === 0) await new Promise((r) => setImmediate(r));
      }
      expect(stratifier.clientCount).toBe(0);
      ws.terminate();
    } finally {
      await new Promise<void>((resolve) => slowServer.close(() => resolve()));
    }
  });
});

describe('share errors over a circuit', () => {
  it('produces 20, 21 and 22 for crafted shares', async () => {
    source.goLive({ difficulty: 1e12 });
    const client = await connect();
    const jobPromise = nextEvent<JobParams>(client, 'job');
    await client.request('mining.register', { agent: 'test', mode: 'tickets' });
    const job = await jobPromise;
    const base = {
      jobId: job.jobId,
      extranonce2: '000000000001',
      ntime: job.ntime,
      nonce: '00000000',
    };
    const submit = (share: object) => client.request('mining.submit', { ...base, ...share });
    await expect(submit({ extranonce2: '0001' })).rejects.toMatchObject({
      code: 20,
      message: /extranonce2/,
    });
    await expect(submit({ ntime: '00000001' })).rejects.toMatchObject({
      code: 20,
      message: /ntime/,
    });
    await expect(submit({ versionBits: '00000001' })).rejects.toMatchObject({
      code: 20,
      message: /version bits/,
    });
    await expect(submit({ jobId: 'gone' })).rejects.toMatchObject({ code: 21 });
    await submit({});
    await expect(submit({})).rejects.toMatchObject({ code: 22 });
  });

  it('produces 23 when the hash misses the difficulty the job was sent at', async () => {
    const hardSource = new ManualSource('sha256d');
    const hard = new Stratifier({
      source: hardSource,
      algorithm: 'sha256d',
      hasher: await createPowHasher('sha256d'),
      initialDifficulty: 1e9,
      ticketDifficulty: 1,
    });
    hard.start();
    const hardConnector = new CircuitConnector(hard);
    const hardServer = createServer();
    hardConnector.attach(hardServer);
    await new Promise<void>((resolve) => hardServer.listen(0, '127.0.0.1', resolve));
    try {
      hardSource.goLive({ difficulty: 1e12 });
      const port = (hardServer.address() as AddressInfo).port;
      const client = await CircuitClient.connect(`ws://127.0.0.1:${port}/v1/circuit`);
      clients.push(client);
      const jobPromise = nextEvent<JobParams>(client, 'job');
      const session = await client.request('mining.register', { agent: 't', mode: 'tickets' });
      expect(session.difficulty).toBe(1e9);
      const job = await jobPromise;
      await expect(
        client.request('mining.submit', {
          jobId: job.jobId,
          extranonce2: '000000000001',
          ntime: job.ntime,
          nonce: '00000000',
        }),
      ).rejects.toMatchObject({ code: RpcErrorCode.lowDifficulty });
    } finally {
      hardConnector.close();
      hard.stop();
      await new Promise<void>((resolve) => hardServer.close(() => resolve()));
    }
  });
});

// ---- pre-built job frames (CircuitConnection.sendJob writes the job's frame to the socket) ----

describe('pre-built job frames', () => {
  /** Its own relay: a start difficulty above the upstream's later one, so set_difficulty goes out. */
  async function frameRelay(): Promise<{
    source: ManualSource;
    stratifier: Stratifier;
    connector: CircuitConnector;
    frames: MockInstance<(job: Job) => Buffer>;
    url: string;
    close: () => Promise<void>;
  }> {
    const relaySource = new ManualSource('sha256d');
    const relayStratifier = new Stratifier({
      source: relaySource,
      algorithm: 'sha256d',
      hasher: await createPowHasher('sha256d'),
      initialDifficulty: 1024,
      ticketDifficulty: MIN_DIFFICULTY,
      vardiff: { minDifficulty: MIN_DIFFICULTY },
    });
    relayStratifier.start();
    const relayConnector = new CircuitConnector(relayStratifier);
    const frames = vi.spyOn(relayConnector, 'frameJob');
    const relayServer = createServer();
    relayConnector.attach(relayServer); // upgrades go through handleUpgrade: the socket path
    await new Promise<void>((resolve) => relayServer.listen(0, '127.0.0.1', resolve));
    return {
      source: relaySource,
      stratifier: relayStratifier,
      connector: relayConnector,
      frames,
      url: `ws://127.0.0.1:${(relayServer.address() as AddressInfo).port}/v1/circuit`,
      close: async () => {
        relayConnector.close();
        relayStratifier.stop();
        relayServer.closeAllConnections();
        await new Promise<void>((resolve) => relayServer.close(() => resolve()));
      },
    };
  }

  const terms = {
    session: 1,
    extranonce1: 'f000000d',
    extranonce2Size: 8,
    difficulty: 1e12,
    versionMask: 0x1fffe000,
  };

  /**
   * Work the relay sends in one synchronous burst, so its ws.send writes (notifications) and
   * pre-built job frames land back to back on each socket. Returns the job ids it produced.
   */
  function burst(relay: Awaited<ReturnType<typeof frameRelay>>): string[] {
    const ids: string[] = [];
    const current = () => relay.stratifier.currentJobId ?? 'none';
    relay.source.newJob({ clean: true });
    ids.push(current()); // job A
    relay.source.setTerms({ ...terms, difficulty: 256 }); // set_difficulty 256
    relay.source.newJob({ clean: false });
    ids.push(current()); // job B
    relay.source.setTerms({ ...terms, difficulty: 256, versionMask: null }); // set_version_mask
    // 80 kB of payload: the frame needs the 64-bit length form.
    relay.source.newJob({ clean: false, coinb2: 'ab'.repeat(40_000) });
    ids.push(current()); // job C
    // New extranonce2 size: set_extranonce, then job C again as clean work.
    relay.source.setTerms({ ...terms, difficulty: 256, versionMask: null, extranonce2Size: 7 });
    return ids;
  }

  /** Every frame the spy built carries exactly the job's encoding behind a valid header. */
  function checkFrames(relay: Awaited<ReturnType<typeof frameRelay>>): void {
    expect(relay.frames).toHaveBeenCalled();
    relay.frames.mock.calls.forEach(([job], i) => {
      const result = relay.frames.mock.results[i];
      expect(result?.type).toBe('return');
      const frame = result?.value as Buffer;
      const payload = Buffer.from(relay.connector.encodeJob(job), 'utf8');
      expect(frame[0]).toBe(0x81); // FIN, text, no RSV bits
      const lengthByte = frame[1] ?? 0;
      expect(lengthByte & 0x80).toBe(0); // unmasked (server → client)
      const header = lengthByte === 127 ? 10 : lengthByte === 126 ? 4 : 2;
      const length =
        header === 10
          ? Number(frame.readBigUInt64BE(2))
          : header === 4
            ? frame.readUInt16BE(2)
            : lengthByte;
      expect(length).toBe(payload.length);
      expect(frame.subarray(header).equals(payload)).toBe(true);
    });
  }

  it('a ws client gets every job intact and in order with the replies and notifications', async () => {
    const relay = await frameRelay();
    try {
      relay.source.goLive(terms);
      const ws = new WebSocket(relay.url, { perMessageDeflate: false });
      const messages: {
        id?: number;
        method?: string;
        params?: Record<string, unknown>;
        error?: { code: number };
      }[] = [];
      let binary = 0;
      let arrived: (() => void) | null = null;
      ws.on('message', (data, isBinary) => {
        if (isBinary) binary += 1;
        messages.push(JSON.parse((data as Buffer).toString('utf8')) as (typeof messages)[number]);
        arrived?.();
      });
      const count = (n: number) =>
        new Promise<void>((resolve) => {
          arrived = () => {
            if (messages.length < n) return;
            arrived = null;
            resolve();
          };
          arrived();
        });
      await new Promise((resolve) => ws.once('open', resolve));
      const request = (id: number, method: string, params: object) =>
        ws.send(JSON.stringify({ jsonrpc: '2.0', id, method, params }));

      request(1, 'mining.register', { agent: 'frames', mode: 'donate' });
      await count(2); // the reply, then the current job right behind it
      const first = relay.stratifier.currentJobId;
      const ids = burst(relay);
      await count(9);
      request(2, 'mining.submit', {
        jobId: 'gone',
        extranonce2: '00000000000001',
        ntime: '00000000',
        nonce: '00000000',
      });
      await count(10);
      relay.source.newJob({ clean: true });
      ids.push(relay.stratifier.currentJobId ?? 'none'); // job D
      await count(11);

      expect(binary).toBe(0);
      expect(messages.map((m) => m.method ?? `reply ${m.id}`)).toEqual([
        'reply 1',
        'mining.job',
        'mining.job', // A
        'mining.set_difficulty',
        'mining.job', // B
        'mining.set_version_mask',
        'mining.job', // C (64-bit length)
        'mining.set_extranonce',
        'mining.job', // C again, clean
        'reply 2',
        'mining.job', // D
      ]);
      const jobs = messages.filter((m) => m.method === 'mining.job').map((m) => m.params);
      // Every job frame holds a valid job: the schema the clients use accepts it.
      for (const params of jobs) expect(jobParams.safeParse(params).success).toBe(true);
      const [a, b, c] = ids;
      expect(jobs.map((p) => [p?.jobId, p?.clean])).toEqual([
        [first, true],
        [a, true],
        [b, false],
        [c, false],
        [c, true],
        [ids[3], true],
      ]);
      expect((jobs[3]?.coinb2 as string).length).toBe(80_000);
      expect(messages[3]?.params).toEqual({ difficulty: 256 });
      expect(messages[5]?.params).toEqual({ versionMask: null });
      expect(messages[9]?.error?.code).toBe(RpcErrorCode.jobNotFound);
      // The jobs went out as pre-built frames (one per job send), each a correct frame.
      expect(relay.frames).toHaveBeenCalledTimes(6);
      checkFrames(relay);
      ws.terminate();
    } finally {
      await relay.close();
    }
  });

  it('CircuitClients parse the same stream, and a job is framed once for all of them', async () => {
    const relay = await frameRelay();
    try {
      relay.source.goLive(terms);
      const logs: string[][] = [];
      const receivers = await Promise.all(
        [0, 1].map(async () => {
          const client = await CircuitClient.connect(relay.url, { timeoutMs: 5_000 });
          clients.push(client); // closed by the file's afterEach
          const log: string[] = [];
          logs.push(log);
          client.on('job', (p) => log.push(`job ${p.jobId} ${p.clean}`));
          client.on('difficulty', (d) => log.push(`difficulty ${d}`));
          client.on('versionMask', (p) => log.push(`versionMask ${p.versionMask}`));
          client.on('extranonce', (p) => log.push(`extranonce ${p.extranonce2Size}`));
          client.on('relayState', (p) => log.push(`relayState ${p.upstream}`));
          client.on('protocolError', (message) => log.push(`protocolError ${message}`));
          return { client, log };
        }),
      );
      const until = (n: number) =>
        vi.waitFor(() => {
          for (const { log } of receivers) expect(log.length).toBeGreaterThanOrEqual(n);
        });
      for (const { client } of receivers) {
        const session = await client.request('mining.register', { agent: 'f', mode: 'donate' });
        expect(session.difficulty).toBe(1024);
      }
      await until(1);
      const first = relay.stratifier.currentJobId;
      const [a, b, c] = burst(relay);
      relay.source.setState('down');
      relay.source.setState('live');
      relay.source.newJob({ clean: true });
      const d = relay.stratifier.currentJobId;
      await until(11);
      // Replies still find their requests in between.
      await expect(
        receivers[0]?.client.request('mining.submit', {
          jobId: 'gone',
          extranonce2: '00000000000001',
          ntime: '00000000',
          nonce: '00000000',
        }),
      ).rejects.toMatchObject({ code: RpcErrorCode.jobNotFound });
      const expected = [
        `job ${first} true`,
        `job ${a} true`,
        'difficulty 256',
        `job ${b} false`,
        'versionMask null',
        `job ${c} false`,
        'extranonce 5', // 7 upstream bytes less the 2-byte slot
        `job ${c} true`,
        'relayState down',
        'relayState live',
        `job ${d} true`,
      ];
      for (const { log } of receivers) expect(log).toEqual(expected);
      // Built once per job object: the two clients were sent the very same Buffer.
      const byJob = new Map<Job, Set<Buffer>>();
      relay.frames.mock.calls.forEach(([job], i) => {
        const set = byJob.get(job) ?? new Set<Buffer>();
        set.add(relay.frames.mock.results[i]?.value as Buffer);
        byJob.set(job, set);
      });
      expect(relay.frames).toHaveBeenCalledTimes(2 * 6);
      for (const set of byJob.values()) expect(set.size).toBe(1);
      checkFrames(relay);
    } finally {
      await relay.close();
    }
  });

  it('a slow reader on the pre-built path is dropped, the others keep their jobs', async () => {
    const relay = await frameRelay();
    const slowConnector = relay.connector;
    try {
      relay.source.goLive(terms);
      const good = await CircuitClient.connect(relay.url, { timeoutMs: 5_000 });
      clients.push(good);
      await good.request('mining.register', { agent: 'good', mode: 'donate' });
      const ws = new WebSocket(relay.url, { perMessageDeflate: false });
      await registerRaw(ws);
      expect(relay.stratifier.clientCount).toBe(2);
      stopReading(ws);
      let received = 0;
      good.on('job', () => (received += 1));
      const big = 'ab'.repeat(8_000);
      let sent = 0;
      // The default limit (1 MiB) is what a relay runs with; jobs of ~16 kB get there quickly.
      for (; sent < 2_000 && relay.stratifier.clientCount > 1; sent++) {
        relay.source.newJob({ clean: false, coinb2: big });
        if (sent % 20 === 0) await new Promise((r) => setImmediate(r));
      }
      expect(relay.stratifier.clientCount).toBe(1);
      expect(slowConnector.size).toBe(1);
      expect(relay.frames).toHaveBeenCalled(); // the jobs went out as pre-built frames
      // The reader that kept up got every job that was sent.
      await vi.waitFor(() => expect(received).toBeGreaterThanOrEqual(sent));
      expect(good.open).toBe(true);
      ws.terminate();
    } finally {
      await relay.close();
    }
  });
});
