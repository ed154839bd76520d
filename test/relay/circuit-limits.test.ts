import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { type AddressInfo, connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import WebSocket from 'ws';
import { CircuitClient } from '../../src/client/circuit-client.js';
import { PacedQueue } from '../../src/lib/paced-queue.js';
import { WsCloseCode } from '../../src/lib/ws-close.js';
import { RpcErrorCode } from '../../src/protocol/errors.js';
import { type CircuitLimits, CircuitConnector } from '../../src/relay/circuit-connector.js';
import { boundedShareHasher } from '../../src/relay/share-hasher.js';
import type { Stratifier } from '../../src/relay/stratifier.js';
import type { TicketService } from '../../src/tickets/service.js';
import { createPowHasher, type PowHasher } from '../../src/work/pow.js';
import { ManualSource } from '../helpers/manual-source.js';
import { startTestStratifier } from '../helpers/test-stratifier.js';

/**
 * The circuit's defences against floods (docs/design.md §5.1): a cap on circuits that have not
 * registered (503 with Retry-After at the upgrade), a register deadline that a redemption in
 * progress still gets its answer before, and 38 for a share that finds the check queue full.
 */

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function startConnector(
  limits: Partial<CircuitLimits>,
  options: {
    tickets?: TicketService;
    hasher?: PowHasher;
    pace?: PacedQueue;
    maxClients?: number;
  } = {},
): Promise<{
  connector: CircuitConnector;
  stratifier: Stratifier;
  source: ManualSource;
  url: string;
}> {
  const source = new ManualSource('sha256d');
  const stratifier = await startTestStratifier(source, {
    ...(options.hasher ? { hasher: options.hasher } : {}),
    ...(options.maxClients === undefined ? {} : { maxClients: options.maxClients }),
  });
  const connector = new CircuitConnector(stratifier, {
    limits,
    ...(options.tickets ? { tickets: options.tickets } : {}),
    ...(options.pace ? { unregisteredPace: options.pace } : {}),
  });
  const server: Server = createServer((_, res) => res.end());
  connector.attach(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(async () => {
    connector.close();
    stratifier.stop();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}/v1/circuit`;
  return { connector, stratifier, source, url };
}

/** A bare WebSocket, open, closed after the test. */
async function openRaw(url: string): Promise<WebSocket> {
  const ws = new WebSocket(url);
  cleanups.push(() => ws.terminate());
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  return ws;
}

/** What an upgrade was answered with instead of 101. */
function refusedUpgrade(url: string): Promise<{ status: number; retryAfter: string | undefined }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.once('open', () => reject(new Error('the upgrade was accepted')));
    ws.once('unexpected-response', (_request, response) => {
      resolve({ status: response.statusCode ?? 0, retryAfter: response.headers['retry-after'] });
      response.resume();
      ws.terminate();
    });
    ws.once('error', () => {});
  });
}

/** A TCP socket that has done the WebSocket handshake by hand (frames are written raw). */
async function rawWebSocket(url: string): Promise<Socket> {
  const { hostname, port, pathname } = new URL(url);
  const socket = connect(Number(port), hostname);
  cleanups.push(() => {
    socket.destroy();
  });
  socket.write(
    `GET ${pathname} HTTP/1.1\r\nHost: ${hostname}:${port}\r\nUpgrade: websocket\r\n` +
      `Connection: Upgrade\r\nSec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\n` +
      'Sec-WebSocket-Version: 13\r\n\r\n',
  );
  let head = '';
  await new Promise<void>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      head += chunk.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      socket.off('data', onData);
      if (head.startsWith('HTTP/1.1 101')) resolve();
      else reject(new Error(`upgrade refused: ${head.split('\r\n')[0]}`));
    };
    socket.on('data', onData);
    socket.once('error', reject);
  });
  return socket;
}

/** One masked text frame (RFC 6455 §5.2), as a client must send it; payload < 126 bytes. */
function maskedTextFrame(text: string): Buffer {
  const payload = Buffer.from(text);
  const mask = randomBytes(4);
  const masked = payload.map((byte, i) => byte ^ (mask[i % 4] ?? 0));
  return Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, masked]);
}

function closed(ws: WebSocket): Promise<{ code: number; reason: string }> {
  return new Promise((resolve) =>
    ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })),
  );
}

function send(ws: WebSocket, id: number, method: string, params: object): void {
  ws.send(JSON.stringify({ jsonrpc: '2.0', id, method, params }));
}

function nextMessage(ws: WebSocket): Promise<{ id?: number; result?: unknown; error?: unknown }> {
  return new Promise((resolve) =>
    ws.once('message', (data: Buffer) => resolve(JSON.parse(data.toString()) as never)),
  );
}

/** A ticket service whose redemptions wait until the test lets them finish. */
function heldTickets(): { service: TicketService; finish: () => void; asked: () => number } {
  const waiting: (() => void)[] = [];
  const refuse = () => Promise.reject(new Error('not used'));
  const service: TicketService = {
    terms: () => null,
    open: refuse,
    finish: () => {
      throw new Error('not used');
    },
    issue: refuse,
    redeem: () =>
      new Promise((resolve) =>
        waiting.push(() => resolve({ token: 't'.repeat(43), class: 'paid', expiresAt: 1 })),
      ),
    circuitClosed: () => {},
  };
  return {
    service,
    finish: () => waiting.splice(0).forEach((f) => f()),
    asked: () => waiting.length,
  };
}

describe('circuits that have not registered', () => {
  it('beyond maxUnregistered, the upgrade is answered 503 with Retry-After; registering frees a place', async () => {
    const { connector, source, url } = await startConnector({ maxUnregistered: 2 });
    source.goLive({ difficulty: 1 });
    const first = await openRaw(url);
    await openRaw(url);
    expect(connector.counts()).toEqual({
      unregistered: 2,
      refusedUnregistered: 0,
      registerTimeouts: 0,
      refusedFull: 0,
      waiting: 0,
    });
    expect(await refusedUpgrade(url)).toEqual({ status: 503, retryAfter: '5' });
    expect(connector.counts().refusedUnregistered).toBe(1);

    // A registered circuit no longer counts: there is room for one more.
    const registered = nextMessage(first);
    send(first, 1, 'mining.register', { agent: 't', mode: 'donate' });
    expect(await registered).toMatchObject({ id: 1, result: { algorithm: 'sha256d' } });
    expect(connector.counts().unregistered).toBe(1);
    const third = await openRaw(url);
    expect(await refusedUpgrade(url)).toMatchObject({ status: 503 });

    // Closing an unregistered circuit frees its place too.
    const gone = closed(third);
    third.close();
    await gone;
    await vi.waitFor(() => expect(connector.counts().unregistered).toBe(1));
    await openRaw(url);
    expect(connector.counts()).toMatchObject({ unregistered: 2, refusedUnregistered: 2 });
  });

  it('a registration with every place taken is answered 37 and counted; the circuit stays open', async () => {
    const { connector, source, url } = await startConnector({}, { maxClients: 1 });
    source.goLive({ difficulty: 1 });
    const first = await openRaw(url);
    const second = await openRaw(url);
    const registered = nextMessage(first);
    send(first, 1, 'mining.register', { agent: 't', mode: 'donate' });
    expect(await registered).toMatchObject({ id: 1, result: { algorithm: 'sha256d' } });
    const refused = nextMessage(second);
    send(second, 2, 'mining.register', { agent: 't', mode: 'donate' });
    expect(await refused).toMatchObject({
      id: 2,
      error: { code: RpcErrorCode.relayFull, message: 'relay is full, retry later' },
    });
    expect(connector.counts()).toMatchObject({ refusedFull: 1, unregistered: 1 });
    // Still usable: e.g. for a redemption, which needs no place.
    expect(second.readyState).toBe(WebSocket.OPEN);
  });

  it('a circuit that does not register in time is closed 1008; a registered one stays', async () => {
    const { connector, source, url } = await startConnector({ registerTimeoutMs: 1_000 });
    source.goLive({ difficulty: 1 });
    const client = await CircuitClient.connect(url, { timeoutMs: 5_000 });
    cleanups.push(() => client.close());
    await client.request('mining.register', { agent: 't', mode: 'donate' });
    const idle = await openRaw(url);
    expect(await closed(idle)).toEqual({
      code: WsCloseCode.policyViolation,
      reason: 'register timeout',
    });
    expect(connector.counts().registerTimeouts).toBe(1);
    // The relay's side of the close completes when the client has answered it.
    await vi.waitFor(() => expect(connector.counts().unregistered).toBe(0));
    // Opened before the idle one: its deadline has passed too, and it is still served.
    await expect(
      client.request('mining.register', { agent: 't', mode: 'donate' }),
    ).rejects.toMatchObject({ code: RpcErrorCode.invalidRequest, message: 'already registered' });
  });

  it('a redemption in progress at the deadline is answered first, then the circuit closes', async () => {
    const tickets = heldTickets();
    const { connector, url } = await startConnector(
      { registerTimeoutMs: 1_000 },
      { tickets: tickets.service },
    );
    const ws = await openRaw(url);
    const answer = nextMessage(ws);
    const end = closed(ws);
    send(ws, 7, 'ticket.redeem', { ticket: 'x' });
    await vi.waitFor(() => expect(tickets.asked()).toBe(1));
    await vi.waitFor(() => expect(connector.counts().registerTimeouts).toBe(1), { timeout: 5_000 });
    // Past the deadline: new requests are not read, the one in progress is still owed.
    send(ws, 8, 'ticket.redeem', { ticket: 'y' });
    expect(ws.readyState).toBe(WebSocket.OPEN);
    tickets.finish();
    expect(await answer).toMatchObject({ id: 7, result: { class: 'paid' } });
    expect(await end).toEqual({ code: WsCloseCode.policyViolation, reason: 'register timeout' });
    expect(tickets.asked()).toBe(0);
  });
});

/** A pace of unregistered frames on a clock that stands still until the test moves it. */
function manualPace(burst: number): { pace: PacedQueue; tick: () => void } {
  // Burst units at a rate of 1/s: the test's clock moves a second per tick.
  let clock = 0;
  const due: (() => void)[] = [];
  const pace = new PacedQueue({
    perSecond: 1,
    burstSeconds: burst,
    clock: () => clock,
    timers: { set: (run) => due.push(run), clear: () => {} },
  });
  return {
    pace,
    tick: () => {
      clock += 1_000;
      due.splice(0).forEach((run) => run());
    },
  };
}

describe('the pace of unregistered circuits', () => {
  it('holds their frames beyond it, in turn; registered miners never wait for it', async () => {
    // Four units: the miner's handshake and register, a fresh circuit's handshake and request.
    const { pace, tick } = manualPace(4);
    const { connector, source, url } = await startConnector({}, { pace });
    source.goLive({ difficulty: 1 });
    const miner = await CircuitClient.connect(url, { timeoutMs: 5_000 });
    cleanups.push(() => miner.close());
    const firstJob = new Promise<{ jobId: string; ntime: string }>((resolve) =>
      miner.once('job', resolve),
    );
    const { extranonce2Size } = await miner.request('mining.register', {
      agent: 't',
      mode: 'donate',
    });
    const job = await firstJob;
    const first = await openRaw(url);
    const firstAnswer = nextMessage(first);
    send(first, 1, 'no.such.method', {});
    expect(await firstAnswer).toMatchObject({
      id: 1,
      error: { code: RpcErrorCode.methodNotFound },
    });

    // The pace is spent: a second fresh circuit's handshake waits for a unit...
    const opening = openRaw(url);
    await vi.waitFor(() => expect(pace.queued).toBe(1));
    tick();
    const second = await opening;
    // ...and so do its frames, its socket paused...
    await vi.waitFor(() => expect(connector.counts().waiting).toBe(0));
    const answers: unknown[] = [];
    second.on('message', (data: Buffer) => answers.push(JSON.parse(data.toString())));
    send(second, 2, 'no.such.method', {});
    send(second, 3, 'no.such.method', {});
    // ...while the registered miner's shares go on.
    await expect(
      miner.request('mining.submit', {
        jobId: job.jobId,
        extranonce2: '00'.repeat(extranonce2Size),
        ntime: job.ntime,
        nonce: '00000000',
      }),
    ).resolves.toMatchObject({ accepted: true });
    expect(answers).toEqual([]);

    // One unit later, one frame; the next one waits for the next unit.
    await vi.waitFor(() => expect(connector.counts().waiting).toBe(1));
    tick();
    await vi.waitFor(() => expect(answers).toHaveLength(1));
    expect(answers[0]).toMatchObject({ id: 2 });
    await vi.waitFor(() => expect(pace.queued).toBe(1));
    tick();
    await vi.waitFor(() => expect(answers).toHaveLength(2));
    expect(answers[1]).toMatchObject({ id: 3 });
  });

  it('a circuit still waiting at its register deadline is dropped at once', async () => {
    // Three units: two handshakes and one request; the second circuit's request waits.
    const { pace } = manualPace(3);
    const { connector, url } = await startConnector({ registerTimeoutMs: 1_000 }, { pace });
    const first = await openRaw(url);
    const answered = nextMessage(first);
    send(first, 1, 'no.such.method', {});
    await answered;
    const held = await openRaw(url);
    send(held, 2, 'no.such.method', {});
    await vi.waitFor(() => expect(connector.counts().waiting).toBe(1));
    // Its socket paused with frames unread: no close handshake (that would read them), the
    // connection is cut, and counted like any circuit that missed the deadline.
    expect(await closed(held)).toMatchObject({ code: 1006 });
    await vi.waitFor(() => expect(connector.counts().unregistered).toBe(0));
    expect(connector.counts()).toMatchObject({ registerTimeouts: 2, waiting: 0 });
  });
});

describe('a circuit that floods while it waits for the pace', () => {
  it('is cut at its 17th waiting frame, its frames unread; the pace forgets it', async () => {
    // One unit: the handshake. Every frame after it waits, and the socket is paused, so the
    // frames must arrive in one read for the relay to see more than one: one TCP write.
    const { pace, tick } = manualPace(1);
    const { connector, url } = await startConnector({}, { pace });
    const socket = await rawWebSocket(url);
    const frames = Array.from({ length: 20 }, (_, id) =>
      maskedTextFrame(JSON.stringify({ jsonrpc: '2.0', id, method: 'no.such.method' })),
    );
    const received: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => received.push(chunk));
    const ended = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.write(Buffer.concat(frames));
    await ended;
    // Cut, not closed: no close frame and no answer to any of the 20 requests.
    expect(Buffer.concat(received).length).toBe(0);
    await vi.waitFor(() =>
      expect(connector.counts()).toMatchObject({ unregistered: 0, waiting: 0 }),
    );
    // Nothing of it runs later either: the next unit goes to nobody.
    tick();
    expect(pace.queued).toBe(0);
  });
});

describe('shutdown with circuits waiting for the pace', () => {
  it('ends a waiting handshake and a circuit with held frames at once', async () => {
    // One unit: the first handshake. Its request and a second handshake wait.
    const { pace } = manualPace(1);
    const { connector, url } = await startConnector({}, { pace });
    const held = await openRaw(url);
    send(held, 1, 'no.such.method', {});
    const heldClosed = closed(held);
    const waiting = new WebSocket(url);
    cleanups.push(() => waiting.terminate());
    waiting.on('error', () => {});
    const waitingClosed = closed(waiting);
    await vi.waitFor(() => expect(connector.counts().waiting).toBe(2));
    connector.close();
    // Paused sockets would see neither a close handshake nor their peer leave: both are cut.
    expect(await heldClosed).toMatchObject({ code: 1006 });
    expect(await waitingClosed).toMatchObject({ code: 1006 });
    await vi.waitFor(() =>
      expect(connector.counts()).toMatchObject({ unregistered: 0, waiting: 0 }),
    );
  });
});

describe('a full share-check queue', () => {
  it('answers the share 38 with retryAfter; the same share is accepted once there is room', async () => {
    const sha256d = await createPowHasher('sha256d');
    const held: (() => void)[] = [];
    // Every hash waits for the test: two may be in flight, the third finds the queue full.
    const hasher = boundedShareHasher(
      (header) =>
        new Promise((resolve, reject) =>
          held.push(() => {
            sha256d(header).then(resolve, reject);
          }),
        ),
      { maxPending: 2, close: () => Promise.resolve() },
    );
    const { source, url } = await startConnector({}, { hasher: hasher.hash });
    source.goLive({ difficulty: 1 });
    const client = await CircuitClient.connect(url, { timeoutMs: 5_000 });
    cleanups.push(() => client.close());
    const firstJob = new Promise<{ jobId: string; ntime: string }>((resolve) =>
      client.once('job', resolve),
    );
    await client.request('mining.register', { agent: 't', mode: 'donate' });
    const job = await firstJob;
    const share = (n: number) => ({
      jobId: job.jobId,
      extranonce2: '000000000001',
      ntime: job.ntime,
      nonce: n.toString(16).padStart(8, '0'),
    });
    const inFlight = [
      client.request('mining.submit', share(1)),
      client.request('mining.submit', share(2)),
    ];
    await vi.waitFor(() => expect(held).toHaveLength(2));
    await expect(client.request('mining.submit', share(3))).rejects.toMatchObject({
      code: RpcErrorCode.relayOverloaded,
      data: { retryAfter: 1 },
    });
    expect(hasher.overloaded()).toBe(1);
    held.splice(0).forEach((go) => go());
    await expect(Promise.all(inFlight)).resolves.toHaveLength(2);
    // Not judged, so not a duplicate: sent again, it is checked and accepted.
    const again = client.request('mining.submit', share(3));
    await vi.waitFor(() => expect(held).toHaveLength(1));
    held.splice(0).forEach((go) => go());
    await expect(again).resolves.toMatchObject({ accepted: true });
  });
});
