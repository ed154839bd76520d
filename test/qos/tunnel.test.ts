import { randomBytes } from 'node:crypto';
import { createServer as createHttpServer } from 'node:http';
import { type AddressInfo, createServer, type Server, type Socket } from 'node:net';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import type { ExitPolicy, Resolver } from '../../src/qos/exit-policy.js';
import type { Shaper, ShapingGrant } from '../../src/qos/shaper.js';
import {
  DEFAULT_TUNNEL_LIMITS,
  TunnelConnector,
  type TunnelOptions,
} from '../../src/qos/tunnel.js';
import { GrantBook, grantId } from '../../src/tickets/grant-book.js';

const MB = 1024 * 1024;
/** Per stream: one sink buffer over its limit plus about a frame queued on each side. */
const BOUND = DEFAULT_TUNNEL_LIMITS.maxBufferedBytes + 256 * 1024;

/** Loopback is refused by default; the test relay allow-lists 127.0.0.1 only. */
const testPolicy: ExitPolicy = {
  ports: [[1024, 65535]],
  allowPrivate: false,
  allowCidrs: ['127.0.0.1/32'],
};

/** Remembers which leaf every chunk was charged to. */
class RecordingShaper implements Shaper {
  readonly bytes = new Map<string, number>();
  classify(grant: ShapingGrant | null): string {
    return grant === null ? 'free' : `paid:${grant.tickets}`;
  }
  request(leaf: string, bytes: number): void {
    this.bytes.set(leaf, (this.bytes.get(leaf) ?? 0) + bytes);
  }
}

const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return (server.address() as AddressInfo).port;
}

/** A TCP server; its connections are tracked so a test can watch them close. */
async function tcpServer(
  onConnection: (socket: Socket) => void,
): Promise<{ port: number; sockets: Socket[] }> {
  const sockets: Socket[] = [];
  const server = createServer((socket) => {
    sockets.push(socket);
    socket.on('error', () => {});
    onConnection(socket);
  });
  cleanups.push(() => sockets.forEach((s) => s.destroy()));
  return { port: await listen(server), sockets };
}

const echoServer = (): Promise<{ port: number; sockets: Socket[] }> =>
  tcpServer((socket) => socket.pipe(socket));

/** Writes `total` bytes of a known pattern as fast as the reader takes them, then ends. */
function bulkServer(total: number): Promise<{ port: number; sockets: Socket[] }> {
  return tcpServer((socket) => {
    const block = pattern(64 * 1024);
    let sent = 0;
    const pump = (): void => {
      while (sent < total) {
        const n = Math.min(block.length, total - sent);
        sent += n;
        if (!socket.write(block.subarray(0, n))) return void socket.once('drain', pump);
      }
      socket.end();
    };
    pump();
  });
}

function pattern(n: number): Buffer {
  const out = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) out[i] = i % 251;
  return out;
}

async function startRelay(
  options: TunnelOptions = {},
): Promise<{ connector: TunnelConnector; url: string }> {
  const connector = new TunnelConnector({ policy: testPolicy, ...options });
  const server = createHttpServer((_, res) => res.end());
  connector.attach(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => {
    connector.close();
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { connector, url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}/v1/tunnel` };
}

function tunnel(url: string, to: string, token?: string): WebSocket {
  const headers = token === undefined ? {} : { authorization: `Priority ${token}` };
  const ws = new WebSocket(`${url}?to=${encodeURIComponent(to)}`, { headers });
  cleanups.push(() => ws.terminate());
  return ws;
}

function opened(ws: WebSocket): Promise<void> {
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
}

/** The HTTP status and body of a refused upgrade. */
function refusal(ws: WebSocket): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    ws.once('open', () => reject(new Error('upgrade was accepted')));
    ws.once('error', () => {});
    ws.once('unexpected-response', (_, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
  });
}

function closed(ws: WebSocket): Promise<{ code: number; reason: string }> {
  return new Promise((resolve) =>
    ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })),
  );
}

/** Everything the tunnel delivers until `n` bytes have arrived. */
function receive(ws: WebSocket, n: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let got = 0;
    const onMessage = (data: Buffer): void => {
      chunks.push(data);
      got += data.length;
      if (got >= n) {
        ws.off('message', onMessage);
        resolve(Buffer.concat(chunks));
      }
    };
    ws.on('message', onMessage);
    ws.once('close', (code) => reject(new Error(`closed with ${code} after ${got} bytes`)));
  });
}

/** Sends `data` in frames, waiting on each write so the client itself buffers little. */
async function sendAll(ws: WebSocket, data: Buffer, frame = 64 * 1024): Promise<void> {
  for (let at = 0; at < data.length; at += frame) {
    await new Promise<void>((resolve, reject) =>
      ws.send(data.subarray(at, at + frame), (err) => (err ? reject(err) : resolve())),
    );
  }
}

async function roundTrip(ws: WebSocket, text: string): Promise<void> {
  const reply = receive(ws, text.length);
  ws.send(Buffer.from(text));
  expect((await reply).toString()).toBe(text);
}

/** The largest value `sample` returned while `work` ran. */
async function peakDuring(sample: () => number, work: Promise<unknown>): Promise<number> {
  let peak = sample();
  const timer = setInterval(() => (peak = Math.max(peak, sample())), 2);
  try {
    await work;
  } finally {
    clearInterval(timer);
  }
  return Math.max(peak, sample());
}

/** Reads in bursts: stalled for `stallMs`, then 5 ms on, 5 ms off. */
function throttle(stream: { pause(): void; resume(): void }, stallMs: number): () => void {
  stream.pause();
  let on = false;
  let interval: NodeJS.Timeout | undefined;
  const start = setTimeout(() => {
    interval = setInterval(() => {
      on = !on;
      if (on) stream.resume();
      else stream.pause();
    }, 5);
  }, stallMs);
  return () => {
    clearTimeout(start);
    clearInterval(interval);
    stream.resume();
  };
}

describe('tunnel', () => {
  it('proxies bytes both ways, byte-exact, 10 MB each way', async () => {
    const echo = await echoServer();
    const { url } = await startRelay();
    const ws = tunnel(url, `127.0.0.1:${echo.port}`);
    await opened(ws);
    await roundTrip(ws, 'hello');
    const data = randomBytes(10 * MB);
    const back = receive(ws, data.length);
    await sendAll(ws, data);
    const echoed = await back;
    expect(echoed.length).toBe(data.length);
    expect(echoed.equals(data)).toBe(true);
  });

  it('refuses a port outside the policy with 1008', async () => {
    const { url, connector } = await startRelay();
    const ws = tunnel(url, '127.0.0.1:25');
    expect(await closed(ws)).toEqual({ code: 1008, reason: 'destination not allowed' });
    expect(connector.counts().refusedPort).toBe(1);
  });

  it('refuses private and non-allow-listed loopback addresses with 1008', async () => {
    const echo = await echoServer();
    const { url, connector } = await startRelay();
    for (const to of ['10.1.2.3:8080', '192.168.0.1:8080', `127.0.0.2:${echo.port}`]) {
      expect(await closed(tunnel(url, to))).toEqual({
        code: 1008,
        reason: 'destination not allowed',
      });
    }
    expect(connector.counts().refusedAddress).toBe(3);
    expect(echo.sockets).toHaveLength(0);
  });

  it('answers every exit-policy refusal the same way, keeping the reason in its debug log', async () => {
    const logLines: string[] = [];
    const logger = pino({ level: 'debug' }, { write: (line: string) => void logLines.push(line) });
    const resolve: Resolver = (host) =>
      host === 'private.test'
        ? Promise.resolve([{ address: '10.0.0.1', family: 4 }])
        : Promise.reject(new Error(`ENOTFOUND ${host}`));
    const { url, connector } = await startRelay({ resolve, logger });
    const refusals = [
      '127.0.0.1:25', // port
      '10.1.2.3:8080', // private address
      '[2002:a00:1::1]:8080', // 6to4 of 10.0.0.1
      '[64:ff9b::808:808]:8080', // NAT64 of a public address, not allow-listed
      'private.test:8080', // a name resolving to a private address
      'gone.test:8080', // a name that does not resolve
    ];
    const seen = [];
    for (const to of refusals) {
      const ws = tunnel(url, to);
      const messages: Buffer[] = [];
      ws.on('message', (data: Buffer) => messages.push(data));
      const { code, reason } = await closed(ws);
      seen.push({ code, reason, messages: messages.length });
    }
    expect(seen).toEqual(
      refusals.map(() => ({ code: 1008, reason: 'destination not allowed', messages: 0 })),
    );
    // The relay still tells the reasons apart, for its operator only, and never logs where.
    expect(connector.counts()).toMatchObject({ refusedPort: 1, refusedAddress: 4, refusedName: 1 });
    const logged = logLines.map((line) => (JSON.parse(line) as { refusal?: string }).refusal);
    expect(logged).toEqual([
      'port not allowed',
      'address not allowed',
      'address not allowed',
      'address not allowed',
      'address not allowed',
      'name not resolved',
    ]);
    for (const line of logLines) expect(line).not.toMatch(/10\.0\.0\.1|\.test|2002|ff9b|:8080/);
  });

  it('closes with 1011 when the destination refuses the connection', async () => {
    const server = createServer();
    const port = await listen(server);
    await new Promise<void>((resolve) => server.close(() => resolve()));
    const { url, connector } = await startRelay();
    expect(await closed(tunnel(url, `127.0.0.1:${port}`))).toEqual({
      code: 1011,
      reason: 'connection refused',
    });
    expect(connector.counts().connectFailed).toBe(1);
  });

  it('answers a missing or malformed destination with 400', async () => {
    const { url } = await startRelay();
    for (const to of ['', 'nohost', 'example.org:99999', 'a@b:80']) {
      expect((await refusal(tunnel(url, to))).status).toBe(400);
    }
  });

  it('closes a stream that sends a text frame with 1003', async () => {
    const echo = await echoServer();
    const { url } = await startRelay();
    const ws = tunnel(url, `127.0.0.1:${echo.port}`);
    await opened(ws);
    ws.send('text');
    expect(await closed(ws)).toEqual({ code: 1003, reason: 'binary frames only' });
  });

  it('answers an unknown, expired or malformed grant with 401 and no detail', async () => {
    const grants = new GrantBook();
    grants.add('old', { expiresAt: 1_005, tickets: 1 }, 1_000);
    const { url, connector } = await startRelay({ grants, now: () => 1_010 });
    const expected = { status: 401, body: 'invalid or expired grant' };
    expect(await refusal(tunnel(url, '127.0.0.1:9999', 'nope'))).toEqual(expected);
    expect(await refusal(tunnel(url, '127.0.0.1:9999', 'old'))).toEqual(expected);
    expect(await refusal(tunnel(url, '127.0.0.1:9999', 'bad token!'))).toEqual(expected);
    expect(connector.counts().refusedGrant).toBe(3);
  });

  it('puts a stream with a live grant in the paid class, others in the free class', async () => {
    const echo = await echoServer();
    const grants = new GrantBook();
    grants.add('tok-en_1', { expiresAt: 2_000, tickets: 2 }, 1_000);
    const shaper = new RecordingShaper();
    const { url, connector } = await startRelay({ grants, shaper, now: () => 1_000 });

    const paid = tunnel(url, `127.0.0.1:${echo.port}`, 'tok-en_1');
    await opened(paid);
    await roundTrip(paid, 'paid bytes');
    expect(shaper.bytes.get('paid:2')).toBe(20); // 10 up, 10 down
    expect(shaper.bytes.get('free')).toBeUndefined();

    const free = tunnel(url, `127.0.0.1:${echo.port}`);
    await opened(free);
    await roundTrip(free, 'free');
    expect(shaper.bytes.get('free')).toBe(8);
    expect(connector.counts()).toMatchObject({ opened: 2, paid: 1, active: 2 });
  });

  it('moves a stream whose grant expires to the free class without cutting it', async () => {
    const echo = await echoServer();
    const grants = new GrantBook();
    let clock = 1_000;
    grants.add('soon', { expiresAt: 1_010, tickets: 1 }, clock);
    const shaper = new RecordingShaper();
    const { url, connector } = await startRelay({ grants, shaper, now: () => clock });
    const ws = tunnel(url, `127.0.0.1:${echo.port}`, 'soon');
    await opened(ws);
    await roundTrip(ws, 'before');
    clock = 1_010;
    await roundTrip(ws, 'after');
    await roundTrip(ws, 'later');
    expect(shaper.bytes.get('paid:1')).toBe(12);
    expect(shaper.bytes.get('free')).toBe(20);
    expect(ws.readyState).toBe(WebSocket.OPEN);
    expect(connector.counts().downgraded).toBe(1);
  });

  it('in a family, asks the database for grants it lacks and for top-ups before a downgrade', async () => {
    const echo = await echoServer();
    const grants = new GrantBook();
    let clock = 1_000;
    // What the family's database holds: a grant paid at another instance, topped up there later.
    const stored = new Map([[grantId('elsewhere'), [{ until: 1_010, count: 1 }]]]);
    const fetched: string[] = [];
    const fetchGrant = (id: string) => {
      fetched.push(id);
      grants.adopt(id, stored.get(id) ?? [], clock);
      return Promise.resolve();
    };
    const shaper = new RecordingShaper();
    const { url, connector } = await startRelay({ grants, shaper, now: () => clock, fetchGrant });
    const ws = tunnel(url, `127.0.0.1:${echo.port}`, 'elsewhere');
    await opened(ws);
    await roundTrip(ws, 'paid');
    expect(shaper.bytes.get('paid:1')).toBe(8);
    // Topped up elsewhere, found when this instance's view lapses: the stream stays paid.
    stored.set(grantId('elsewhere'), [
      { until: 1_010, count: 1 },
      { until: 1_020, count: 1 },
    ]);
    clock = 1_010;
    await roundTrip(ws, 'more');
    expect(shaper.bytes.get('paid:1')).toBe(16);
    expect(connector.counts().downgraded).toBe(0);
    // Lapsed everywhere: asked once more, then free.
    clock = 1_020;
    await roundTrip(ws, 'free');
    expect(shaper.bytes.get('free')).toBe(8);
    expect(connector.counts().downgraded).toBe(1);
    expect(fetched).toEqual([grantId('elsewhere'), grantId('elsewhere'), grantId('elsewhere')]);
    // Unknown everywhere: the same 401 as on a single relay.
    expect(await refusal(tunnel(url, '127.0.0.1:9999', 'nope'))).toEqual({
      status: 401,
      body: 'invalid or expired grant',
    });
  });

  it('counts open streams by the class their next bytes go to (an expired grant: free)', async () => {
    const echo = await echoServer();
    const grants = new GrantBook();
    let clock = 1_000;
    grants.add('soon', { expiresAt: 1_010, tickets: 1 }, clock);
    const shaper = new RecordingShaper();
    const { url, connector } = await startRelay({ grants, shaper, now: () => clock });
    expect(connector.streamsByClass()).toEqual({});
    const paid = tunnel(url, `127.0.0.1:${echo.port}`, 'soon');
    const free = tunnel(url, `127.0.0.1:${echo.port}`);
    await Promise.all([opened(paid), opened(free)]);
    expect(connector.streamsByClass()).toEqual({ 'paid:1': 1, free: 1 });
    clock = 1_010;
    expect(connector.streamsByClass()).toEqual({ free: 2 });
    // Counting is not forwarding: the stream is downgraded when its next bytes go.
    expect(connector.counts().downgraded).toBe(0);
    free.close();
    await until(() => connector.size === 1);
    expect(connector.streamsByClass()).toEqual({ free: 1 });
  });

  it('waits for the shaper before forwarding, pausing the source meanwhile', async () => {
    const echo = await echoServer();
    const waiting: (() => void)[] = [];
    const shaper: Shaper = {
      classify: () => 'free',
      request: () => new Promise<void>((resolve) => waiting.push(resolve)),
    };
    const { url } = await startRelay({ shaper });
    const ws = tunnel(url, `127.0.0.1:${echo.port}`);
    await opened(ws);
    let got = '';
    ws.on('message', (data: Buffer) => (got += data.toString()));
    ws.send(Buffer.from('held'));
    await until(() => waiting.length === 1);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(echo.sockets[0]?.bytesRead ?? 0).toBe(0); // not forwarded before the grant
    waiting.shift()!(); // up
    await until(() => waiting.length === 1);
    expect(got).toBe('');
    waiting.shift()!(); // down
    await until(() => got === 'held');
  });

  it('keeps relay buffers bounded with a slow client while 50 MB are pushed', async () => {
    const total = 50 * MB;
    const bulk = await bulkServer(total);
    const { url, connector } = await startRelay();
    const ws = tunnel(url, `127.0.0.1:${bulk.port}`);
    await opened(ws);
    const release = throttle(ws, 300);
    let got = 0;
    const done = new Promise<void>((resolve) => {
      ws.on('message', (data: Buffer) => {
        got += data.length;
        if (got >= total) resolve();
      });
    });
    const peak = await peakDuring(() => connector.bufferedBytes(), done);
    release();
    expect(got).toBe(total);
    expect(peak).toBeGreaterThan(128 * 1024); // the stall did build up pressure…
    expect(peak).toBeLessThan(BOUND); // …and the relay held no more than its limits
    expect(await closed(ws)).toEqual({ code: 1000, reason: 'destination closed' });
  });

  it('keeps relay buffers bounded with a slow destination while 50 MB are pushed', async () => {
    const total = 50 * MB;
    let stored = 0;
    let release = (): void => {};
    const received = new Promise<void>((resolve) => {
      void tcpServer((socket) => {
        release = throttle(socket, 300);
        socket.on('data', (chunk: Buffer) => {
          stored += chunk.length;
          if (stored >= total) resolve();
        });
      }).then(({ port }) => start(port));
    });
    let connector: TunnelConnector | undefined;
    const start = async (port: number): Promise<void> => {
      const relay = await startRelay();
      connector = relay.connector;
      const ws = tunnel(relay.url, `127.0.0.1:${port}`);
      await opened(ws);
      const block = randomBytes(64 * 1024);
      for (let sent = 0; sent < total; sent += block.length) {
        await new Promise<void>((resolve) => ws.send(block, () => resolve()));
      }
    };
    await until(() => connector !== undefined);
    const peak = await peakDuring(() => connector!.bufferedBytes(), received);
    release();
    expect(stored).toBe(total);
    expect(peak).toBeGreaterThan(128 * 1024);
    expect(peak).toBeLessThan(BOUND);
  });

  it('closes the destination when the client closes', async () => {
    const echo = await echoServer();
    const { url, connector } = await startRelay();
    const ws = tunnel(url, `127.0.0.1:${echo.port}`);
    await opened(ws);
    await roundTrip(ws, 'x');
    const server = echo.sockets[0]!;
    const gone = new Promise((resolve) => server.once('close', resolve));
    ws.close(1000, 'bye');
    await gone;
    await until(() => connector.size === 0);
  });

  it('delivers the last bytes, then closes the client with 1000 when the destination ends', async () => {
    const bye = await tcpServer((socket) => socket.end('bye'));
    const { url, connector } = await startRelay();
    const ws = tunnel(url, `127.0.0.1:${bye.port}`);
    const data = receive(ws, 3);
    const end = closed(ws);
    expect((await data).toString()).toBe('bye');
    expect(await end).toEqual({ code: 1000, reason: 'destination closed' });
    await until(() => connector.size === 0);
  });

  it('limits streams per relay and closes idle streams', async () => {
    const echo = await echoServer();
    const { url, connector } = await startRelay({ limits: { maxStreams: 1, idleTimeoutMs: 300 } });
    const first = tunnel(url, `127.0.0.1:${echo.port}`);
    await opened(first);
    expect(await refusal(tunnel(url, `127.0.0.1:${echo.port}`))).toEqual({
      status: 503,
      body: 'too many streams',
    });
    expect(await closed(first)).toEqual({ code: 1001, reason: 'idle timeout' });
    await until(() => echo.sockets[0]?.destroyed === true && connector.size === 0);
    expect(connector.counts().refusedBusy).toBe(1);
  });
});

async function until(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
