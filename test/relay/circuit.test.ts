import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CircuitClient } from '../../src/client/circuit-client.js';
import type { RpcError } from '../../src/protocol/errors.js';
import { RpcErrorCode } from '../../src/protocol/errors.js';
import type { JobParams } from '../../src/protocol/messages.js';
import { CircuitConnector } from '../../src/relay/circuit-connector.js';
import { Stratifier } from '../../src/relay/stratifier.js';
import { createPowHasher } from '../../src/work/pow.js';
import { MIN_DIFFICULTY } from '../../src/work/target.js';
import { ManualSource } from '../helpers/manual-source.js';

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

beforeEach(async () => {
  source = new ManualSource('sha256d');
  stratifier = new Stratifier({
    source,
    algorithm: 'sha256d',
    hasher: await createPowHasher('sha256d'),
    initialDifficulty: MIN_DIFFICULTY,
    ticketDifficulty: MIN_DIFFICULTY,
    vardiff: { minDifficulty: MIN_DIFFICULTY },
  });
  stratifier.start();
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
    await new Promise((r) => setTimeout(r, 50));
    expect(source.submitted).toEqual([
      expect.objectContaining({
        session: 1,
        jobId: 'up1',
        extranonce2: `${session.extranonce1}0000000000ab`,
        nonce: '00000001',
      }),
    ]);
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
    // The well-behaved client is untouched.
    const jobs = await Promise.race([
      nextEvent<JobParams>(good, 'job'),
      new Promise((resolve) => {
        source.newJob({ clean: true });
        setTimeout(resolve, 1000);
      }),
    ]);
    expect(jobs).toBeDefined();
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

describe('upgrade routing', () => {
  it('answers 404 to a WebSocket upgrade on a path nobody serves', async () => {
    const { default: WebSocket } = await import('ws');
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
    const { default: WebSocket } = await import('ws');
    connector.close();
    connector = new CircuitConnector(stratifier, { limits: { maxBufferedBytes: 64 * 1024 } });
    const slowServer = createServer();
    connector.attach(slowServer);
    await new Promise<void>((resolve) => slowServer.listen(0, '127.0.0.1', resolve));
    try {
      source.goLive({ difficulty: 1e12 });
      const port = (slowServer.address() as AddressInfo).port;
      const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/circuit`);
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
      // Stop reading: the kernel buffers fill, then the relay's own queue would grow.
      (ws as unknown as { _socket: { pause(): void } })._socket.pause();
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
