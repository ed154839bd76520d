import { createServer as createHttpServer } from 'node:http';
import { type AddressInfo, createServer, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import type { ExitPolicy } from '../../src/qos/exit-policy.js';
import type { HtbInput } from '../../src/qos/htb.js';
import { defaultHtbConfig, HtbShaper } from '../../src/qos/htb-shaper.js';
import { TunnelConnector } from '../../src/qos/tunnel.js';
import { GrantBook } from '../../src/tickets/grant-book.js';

const KB = 1000;
const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A shaper that is closed after the test, so no timer outlives it. */
function shaper(config?: HtbInput): HtbShaper {
  const s = new HtbShaper(config === undefined ? {} : { config });
  cleanups.push(() => s.close());
  return s;
}

/** One leaf under a root, both at `rate` bytes/s, with an optional queue limit. */
function single(rate: number, limit?: number): HtbInput {
  return {
    classes: [
      { name: 'root', rate },
      { name: 'free', parent: 'root', rate, ...(limit === undefined ? {} : { limit }) },
      { name: 'group1', parent: 'root', rate },
      { name: 'group4', parent: 'root', rate },
    ],
  };
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('HtbShaper', () => {
  it('classifies no grant as free and grants by ticket count', () => {
    const s = shaper();
    expect(s.classify(null)).toBe('free');
    expect(s.classify({ tickets: 1 })).toBe('group1');
    expect(s.classify({ tickets: 3 })).toBe('group1');
    expect(s.classify({ tickets: 4 })).toBe('group4');
    expect(s.classify({ tickets: 40 })).toBe('group4');
    // A live grant is paid even if it carries no tickets: lowest group, not free.
    expect(s.classify({ tickets: 0 })).toBe('group1');
  });

  it('scales the default tree by the link rate and rejects a mapping to a missing leaf', () => {
    const tree = defaultHtbConfig(100e6).classes;
    expect(tree.map((c) => [c.name, c.rate, c.ceil ?? c.rate])).toEqual([
      ['root', 12.5e6, 12.5e6],
      ['free', 2.5e6, 5e6],
      ['paid', 10e6, 12.5e6],
      ['group1', 5e6, 12.5e6],
      ['group4', 1.875e6, 12.5e6],
    ]);
    expect(shaper().warnings).toEqual([]);
    expect(() => new HtbShaper({ groups: [{ minTickets: 1, leaf: 'gold' }] })).toThrow(/gold/);
    expect(() => new HtbShaper({ freeLeaf: 'paid' })).toThrow(/not a leaf/);
  });

  it('grants at once while the bucket has credit, then paces a leaf in order at its rate', async () => {
    const s = shaper(single(1_000 * KB)); // 1 MB/s: a 50 kB chunk every 50 ms
    const order: number[] = [];
    const start = performance.now();
    const results = Array.from({ length: 10 }, (_, i) => {
      const r = s.request('free', 50 * KB);
      if (r === undefined) order.push(i);
      return r?.then(() => order.push(i));
    });
    expect(results[0]).toBeUndefined(); // a new bucket is full: the first chunk goes now
    expect(results[1]).toBeInstanceOf(Promise);
    await Promise.all(results.map((r) => Promise.resolve(r)));
    const elapsed = performance.now() - start;
    expect(order).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    // Nine chunks paid for after the first: 450 ms at 1 MB/s (timers add a little).
    expect(elapsed).toBeGreaterThan(430);
    expect(elapsed).toBeLessThan(650);
    expect(s.waiting).toBe(0);
    expect(s.timerArmed).toBe(false); // nothing waits: no timer left behind
  });

  it('keeps requests refused by a full leaf queue in order and never drops them', async () => {
    // 30 kB queue: one 20 kB chunk fits at a time, the other requests wait in overflow.
    const s = shaper(single(2_000 * KB, 30 * KB));
    const order: number[] = [];
    const results = Array.from({ length: 12 }, (_, i) =>
      Promise.resolve(s.request('free', 20 * KB)).then(() => order.push(i)),
    );
    expect(s.waiting).toBe(11);
    await Promise.all(results);
    expect(order).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    const free = s.stats().find((c) => c.name === 'free');
    expect(free?.refused).toBeGreaterThan(0); // the overflow path was taken
    expect(free?.bytesSent).toBe(12 * 20 * KB);
  });

  it('grants a chunk larger than the queue limit as limit-sized pieces, charging all of it', async () => {
    // The HTB refuses a packet above the leaf's limit outright, so a 70 kB request on a 30 kB
    // queue goes as 30 + 30 + 10 kB in order: the first piece now, each later one once the
    // bucket is out of debt again. (Tunnel chunks are ≤ 64 KiB, far below the 256 KiB
    // default limit, so the tunnel never takes this path with the default tree.)
    const s = shaper(single(1_000 * KB, 30 * KB));
    const start = performance.now();
    const big = s.request('free', 70 * KB);
    expect(big).toBeInstanceOf(Promise);
    await big;
    expect(performance.now() - start).toBeGreaterThan(55); // 60 kB of debt at 1 MB/s
    await s.request('free', 1); // and the last 10 kB are charged too
    expect(performance.now() - start).toBeGreaterThan(65);
    expect(s.stats().find((c) => c.name === 'free')?.bytesSent).toBe(70 * KB + 1);
  });

  it('serves leaves independently: a slow leaf does not hold up another', async () => {
    const s = shaper();
    // A 64 KiB chunk, far above free's ~2 kB burst, is granted at once and charged whole:
    // free then waits ~131 ms (its ceil, 4 Mbit/s, borrowing from the idle root)…
    expect(s.request('free', 64 * 1024)).toBeUndefined();
    const freeNext = s.request('free', 1000);
    const start = performance.now();
    await s.request('group1', 1000); // …while group1 spends its own credit
    expect(performance.now() - start).toBeLessThan(20);
    expect(freeNext).toBeInstanceOf(Promise);
    await freeNext;
    expect(performance.now() - start).toBeGreaterThan(110);
  });

  it('settles everything pending on close, stops its timer and lets later requests through', async () => {
    const s = shaper(single(100 * KB, 30 * KB));
    const settled: number[] = [];
    const results = Array.from({ length: 6 }, (_, i) =>
      Promise.resolve(s.request('free', 20 * KB)).then(() => settled.push(i)),
    );
    await sleep(20);
    expect(settled).toEqual([0]); // 20 kB at 100 kB/s: the next one is 200 ms away
    expect(s.timerArmed).toBe(true);
    s.close();
    expect(s.timerArmed).toBe(false);
    expect(s.waiting).toBe(0);
    await Promise.all(results);
    expect(settled).toEqual([0, 1, 2, 3, 4, 5]);
    expect(s.request('free', 20 * KB)).toBeUndefined();
    expect(() => s.request('nope', 1)).toThrow(RangeError);
  });
});

// Real sockets on loopback: a bulk TCP server, the tunnel with an HtbShaper at 10 Mbit/s, and
// ws clients reading as fast as they can. Rates are measured at the clients.

const testPolicy: ExitPolicy = {
  ports: [[1024, 65535]],
  allowPrivate: false,
  allowCidrs: ['127.0.0.1/32'],
};
const WARMUP_MS = 1_000;
const WINDOW_MS = 3_000;
const TOLERANCE = 0.1;
const TOKEN = 'paid-token';

/** A TCP server that writes to every connection as fast as the reader takes it, forever. */
async function endlessServer(): Promise<number> {
  const sockets = new Set<Socket>();
  const block = Buffer.alloc(64 * 1024, 0x5a);
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.once('close', () => sockets.delete(socket));
    const pump = (): void => {
      while (!socket.destroyed && socket.write(block));
      if (!socket.destroyed) socket.once('drain', pump);
    };
    pump();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return (server.address() as AddressInfo).port;
}

async function relay(tickets: number): Promise<{ url: string; shaper: HtbShaper }> {
  // As the relay runs it: buckets of 20 ms cover event-loop timer lateness.
  const htb = new HtbShaper({ linkBitsPerSecond: 10e6, burstSeconds: 0.02 });
  const grants = new GrantBook();
  grants.add(TOKEN, { expiresAt: 2_000_000, tickets }, 1_000);
  const connector = new TunnelConnector({
    grants,
    policy: testPolicy,
    shaper: htb,
    now: () => 1_000,
  });
  const server = createHttpServer((_, res) => res.end());
  connector.attach(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => {
    connector.close();
    htb.close();
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const port = (server.address() as AddressInfo).port;
  return { url: `ws://127.0.0.1:${port}/v1/tunnel`, shaper: htb };
}

/** A download stream through the tunnel; counts what arrives. */
async function download(url: string, to: number, paid: boolean): Promise<() => number> {
  const headers = paid ? { authorization: `Priority ${TOKEN}` } : {};
  const ws = new WebSocket(`${url}?to=${encodeURIComponent(`127.0.0.1:${to}`)}`, { headers });
  cleanups.push(() => ws.terminate());
  let got = 0;
  ws.on('message', (data: Buffer) => (got += data.length));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return () => got;
}

/** Mbit/s of each counter over WINDOW_MS, after WARMUP_MS. */
async function measure(counters: (() => number)[]): Promise<number[]> {
  await sleep(WARMUP_MS);
  const before = counters.map((c) => c());
  const start = performance.now();
  await sleep(WINDOW_MS);
  const seconds = (performance.now() - start) / 1000;
  return counters.map((c, i) => ((c() - (before[i] as number)) * 8) / seconds / 1e6);
}

function expectNear(name: string, measured: number, expected: number): void {
  console.info(`htb-shaper loopback: ${name} ${measured.toFixed(3)} Mbit/s (want ${expected})`);
  expect(measured).toBeGreaterThan(expected * (1 - TOLERANCE));
  expect(measured).toBeLessThan(expected * (1 + TOLERANCE));
}

describe('HtbShaper through the tunnel on loopback (10 Mbit/s link)', () => {
  it('splits 2 / 8 Mbit/s between a saturating free stream and a saturating paid stream', async () => {
    const to = await endlessServer();
    const { url } = await relay(1);
    const free = await download(url, to, false);
    const paid = await download(url, to, true);
    const [freeRate, paidRate] = (await measure([free, paid])) as [number, number];
    expectNear('free+paid: free', freeRate, 2);
    expectNear('free+paid: paid (group1)', paidRate, 8);
  }, 15_000);

  it('gives a lone free stream its ceil, 4 Mbit/s', async () => {
    const to = await endlessServer();
    const { url } = await relay(1);
    const [rate] = (await measure([await download(url, to, false)])) as [number];
    expectNear('lone free', rate, 4);
  }, 15_000);

  it('gives a lone paid stream (group1) the whole link, 10 Mbit/s', async () => {
    const to = await endlessServer();
    const { url, shaper: htb } = await relay(1);
    const [rate] = (await measure([await download(url, to, true)])) as [number];
    expectNear('lone paid', rate, 10);
    // The shaper's own estimate agrees (its window is 1 s, so it lags a little).
    const group1 = htb.stats().find((c) => c.name === 'group1');
    expect(((group1?.rate ?? 0) * 8) / 1e6).toBeGreaterThan(9);
  }, 15_000);
});

describe('grant tiers', () => {
  it('a grant topped up to 4 tickets moves from group1 to group4', () => {
    const shaper = new HtbShaper();
    expect(shaper.classify({ tickets: 1 })).toBe('group1');
    expect(shaper.classify({ tickets: 3 })).toBe('group1');
    expect(shaper.classify({ tickets: 4 })).toBe('group4');
    shaper.close();
  });
});
