import { type ChildProcess, fork } from 'node:child_process';
import { createServer as createHttpServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { encodeRequest, encodeResult } from '../src/protocol/jsonrpc.js';
import type { ExitPolicy } from '../src/qos/exit-policy.js';
import { HtbShaper } from '../src/qos/htb-shaper.js';
import { type Shaper, UnshapedShaper } from '../src/qos/shaper.js';
import { TunnelConnector } from '../src/qos/tunnel.js';
import { DEFAULT_WINDOW_SECONDS } from '../src/tickets/redeemer.js';
import { GrantBook } from '../src/tickets/grant-book.js';
import { Report } from './lib/report.js';
import type { FromClients, ToClients } from './tunnel-clients.js';

/**
 * The priority tunnel on loopback with real sockets (docs/design.md §8; issue 6 targets).
 *
 * The relay (TunnelConnector on an http server) runs in this process; the bulk TCP server
 * and the `ws` download clients run in a forked child (bench/tunnel-clients.ts), so the relay
 * has one of the two cores to itself. Every stream is a download: bulk server → relay's TCP
 * leg → shaper → WebSocket → client, which counts the bytes it receives.
 *
 * 1. moneTor comparison: HtbShaper at 10 Mbit/s (docs/design.md §8's tree: free 2/4, paid 8/10
 *    Mbit/s), 40 saturating streams of which 10 hold a grant. After a warm-up each stream's
 *    throughput is measured over a window: mean paid vs mean free (target ≥ 2×), the free
 *    class's aggregate vs its guaranteed 2 Mbit/s, and the control traffic a paying client
 *    needs (one ticket.redeem request + reply per 600 s grant) as a share of the bytes its
 *    stream moves in that time (target < 1 %).
 * 2. Aggregate throughput with 100 and 1,000 streams, HtbShaper at 100 Gbit/s (far above
 *    loopback, so the scheduler runs on every chunk but never limits) vs UnshapedShaper in
 *    the same run (ratio = shaping overhead). Target ≥ 1 Gbit/s with 100 streams.
 *
 *   npm run bench -- tunnel [--json] [--warmup S] [--window S]
 *   npx tsx bench/tunnel.ts [--json] [--warmup S] [--window S]
 *
 * Results: BENCHMARKS.md, "tunnel".
 */

const TIME_LIMIT_MS = 115_000;

const { values: args } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    warmup: { type: 'string', default: '2' },
    window: { type: 'string', default: '4' },
    streams: { type: 'string', default: '100,1000' },
  },
});
const WARMUP_MS = Number(args.warmup) * 1000;
const WINDOW_MS = Number(args.window) * 1000;
if (!(WARMUP_MS >= 0) || !(WINDOW_MS > 0)) throw new RangeError('bad --warmup/--window');
const COUNTS = args.streams === '' ? [] : args.streams.split(',').map(Number);
if (!COUNTS.every((n) => Number.isInteger(n) && n > 0)) throw new RangeError('bad --streams');
const report = new Report('tunnel', args.json);
const T0 = performance.now();
/** Seconds since start, for the progress lines. */
const at = (): string => `[${((performance.now() - T0) / 1000).toFixed(1)} s]`;

const TOKEN = 'bench-paid-token-0123456789abcdef';
const NOW = 1_000;
const POLICY: ExitPolicy = {
  ports: [[1024, 65535]],
  allowPrivate: false,
  allowCidrs: ['127.0.0.1/32'],
};
/** A real ticket's base64url length (docs/design.md §6.3). */
/** A v1 ticket: 173 bytes in unpadded base64url. */
const TICKET_CHARS = Math.ceil((173 * 4) / 3);
/** What the redeemer hands out: 32 random bytes, base64url. */
const GRANT_TOKEN_CHARS = 43;

/** The forked endpoints, one request at a time. */
class Endpoints {
  private waiting: ((m: FromClients) => void) | null = null;

  constructor(readonly child: ChildProcess) {
    child.on('message', (m: FromClients) => {
      const w = this.waiting;
      this.waiting = null;
      w?.(m);
    });
  }

  ask<T extends FromClients['type']>(
    request: ToClients,
    type: T,
  ): Promise<Extract<FromClients, { type: T }>> {
    return new Promise((resolve, reject) => {
      this.waiting = (m) =>
        m.type === type
          ? resolve(m as Extract<FromClients, { type: T }>)
          : reject(new Error(`expected ${type}, got ${m.type}`));
      this.child.send(request);
    });
  }
}

interface Relay {
  url: string;
  connector: TunnelConnector;
  close: () => Promise<void>;
}

async function startRelay(shaper: Shaper & { close?: () => void }): Promise<Relay> {
  const grants = new GrantBook();
  // 4 tickets: the top tier, group1 (docs/design.md §8), as BENCHMARKS.md describes.
  grants.add(TOKEN, { expiresAt: NOW + DEFAULT_WINDOW_SECONDS, tickets: 4 }, NOW);
  const connector = new TunnelConnector({
    grants,
    policy: POLICY,
    shaper,
    now: () => NOW,
    limits: { maxStreams: 2_000 },
  });
  const server: Server = createHttpServer((_, res) => res.end());
  connector.attach(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', 2048, resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `ws://127.0.0.1:${port}/v1/tunnel`,
    connector,
    close: async () => {
      connector.close();
      shaper.close?.();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Per-stream Mbit/s over WINDOW_MS after WARMUP_MS, on the endpoints' clock. */
async function measure(endpoints: Endpoints): Promise<{ rates: number[]; closes: number }> {
  await sleep(WARMUP_MS);
  const a = await endpoints.ask({ type: 'sample' }, 'sample');
  await sleep(WINDOW_MS);
  const b = await endpoints.ask({ type: 'sample' }, 'sample');
  const seconds = (b.t - a.t) / 1000;
  const rates = b.bytes.map((x, i) => ((x - (a.bytes[i] ?? 0)) * 8) / seconds / 1e6);
  return { rates, closes: b.unexpectedCloses };
}

/** Opens `count` streams (the first `paid` with the grant), measures, closes them. */
async function phase(
  endpoints: Endpoints,
  shaper: Shaper & { close?: () => void },
  count: number,
  paid: number,
): Promise<number[]> {
  const relay = await startRelay(shaper);
  try {
    const opened = await endpoints.ask(
      { type: 'open', url: relay.url, count, paid, token: TOKEN, concurrency: 64 },
      'opened',
    );
    if (opened.failed > 0) {
      throw new Error(`${opened.failed} of ${count} streams failed: ${opened.firstError}`);
    }
    report.say(`    ${at()} ${count} streams open in ${opened.ms.toFixed(0)} ms`);
    const started = await endpoints.ask({ type: 'start', expect: count }, 'started');
    if (started.connections !== count) {
      throw new Error(`bulk server has ${started.connections} connections, not ${count}`);
    }
    const { rates, closes } = await measure(endpoints);
    if (closes > 0) throw new Error(`${closes} streams closed during the measurement`);
    const { bytesDown } = relay.connector.counts();
    report.say(`    ${at()} relay forwarded ${(bytesDown / 1e6).toFixed(1)} MB down in this phase`);
    return rates;
  } finally {
    const closed = await endpoints.ask({ type: 'closeAll' }, 'closed');
    await relay.close();
    report.say(`    ${at()} closed (${closed.ms.toFixed(0)} ms)`);
  }
}

const sum = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0);
const mean = (xs: readonly number[]): number => sum(xs) / xs.length;

/** Bytes on the wire of one WebSocket frame carrying `payload` bytes (RFC 6455 §5.2). */
function wsFrameBytes(payload: number, masked: boolean): number {
  const length = payload < 126 ? 0 : payload < 65_536 ? 2 : 8;
  return 2 + length + (masked ? 4 : 0) + payload;
}

async function moneTor(endpoints: Endpoints): Promise<void> {
  const STREAMS = 40;
  const PAID = 10;
  report.say(
    `moneTor comparison: HtbShaper 10 Mbit/s, ${STREAMS} saturating downloads, ${PAID} paid ` +
      `(warm-up ${WARMUP_MS / 1000} s, window ${WINDOW_MS / 1000} s)`,
  );
  const rates = await phase(endpoints, new HtbShaper({ linkBitsPerSecond: 10e6 }), STREAMS, PAID);
  const paid = rates.slice(0, PAID);
  const free = rates.slice(PAID);
  const paidMean = mean(paid);
  const freeMean = mean(free);
  report.say(
    `    paid min/max ${Math.min(...paid).toFixed(3)}/${Math.max(...paid).toFixed(3)}, ` +
      `free min/max ${Math.min(...free).toFixed(3)}/${Math.max(...free).toFixed(3)} Mbit/s`,
  );
  report.figure('mean paid stream', paidMean, 'Mbit/s', ['mean free stream', freeMean]);
  report.figure('mean free stream', freeMean, 'Mbit/s');
  report.figure('free class aggregate', sum(free), 'Mbit/s', ['free guaranteed rate', 2]);
  report.figure('paid class aggregate', sum(paid), 'Mbit/s', ['paid guaranteed rate', 8]);
  report.figure('total', sum(rates), 'Mbit/s', ['link', 10]);

  // Control traffic of a paying client: one ticket.redeem over a circuit per grant window.
  const request = encodeRequest(1, 'ticket.redeem', { ticket: 'A'.repeat(TICKET_CHARS) });
  const result = encodeResult(1, {
    token: 'B'.repeat(GRANT_TOKEN_CHARS),
    class: 'paid',
    expiresAt: NOW + DEFAULT_WINDOW_SECONDS,
  });
  const control =
    wsFrameBytes(Buffer.byteLength(request), true) + wsFrameBytes(Buffer.byteLength(result), false);
  const tunnelBytes = ((paidMean * 1e6) / 8) * DEFAULT_WINDOW_SECONDS;
  const slowest = ((Math.min(...paid) * 1e6) / 8) * DEFAULT_WINDOW_SECONDS;
  report.say(
    `    ticket.redeem request ${Buffer.byteLength(request)} B + reply ` +
      `${Buffer.byteLength(result)} B of JSON, ${control} B with WebSocket framing, ` +
      `per ${DEFAULT_WINDOW_SECONDS} s grant; a paid stream moves ` +
      `${(tunnelBytes / 1e6).toFixed(1)} MB in that time at the mean paid rate`,
  );
  report.figure('control bytes per grant window', control, 'B');
  report.figure('control share, mean paid stream', (100 * control) / tunnelBytes, '%');
  report.figure('control share, slowest paid stream', (100 * control) / slowest, '%');
  // The stream rate at which one redemption per window would reach 1 % of tunnel bytes.
  report.figure(
    'stream rate where control = 1%',
    (control * 100 * 8) / DEFAULT_WINDOW_SECONDS,
    'bit/s',
  );
}

async function aggregate(endpoints: Endpoints, count: number): Promise<void> {
  report.say(
    `aggregate: ${count} streams (25% paid), unshaped vs HtbShaper at 100 Gbit/s ` +
      `(warm-up ${WARMUP_MS / 1000} s, window ${WINDOW_MS / 1000} s)`,
  );
  const paid = Math.floor(count / 4);
  report.say('  UnshapedShaper');
  const unshaped = sum(await phase(endpoints, new UnshapedShaper(), count, paid));
  report.say('  HtbShaper 100 Gbit/s');
  const htb = sum(await phase(endpoints, new HtbShaper({ linkBitsPerSecond: 100e9 }), count, paid));
  report.figure(`unshaped, ${count} streams`, unshaped, 'Mbit/s');
  report.figure(`htb, ${count} streams`, htb, 'Mbit/s', [`unshaped, ${count} streams`, unshaped]);
}

async function main(): Promise<void> {
  const started = performance.now();
  const limit = setTimeout(() => {
    console.error(`tunnel: over the ${TIME_LIMIT_MS / 1000} s limit, giving up`);
    process.exit(1);
  }, TIME_LIMIT_MS);
  limit.unref();
  const child = fork(fileURLToPath(new URL('./tunnel-clients.ts', import.meta.url)), [], {
    execArgv: ['--import', import.meta.resolve('tsx')],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const endpoints = new Endpoints(child);
  try {
    await endpoints.ask({ type: 'server' }, 'server');
    report.say(
      `tunnel: loopback, load average ${loadavg()
        .map((x) => x.toFixed(2))
        .join(' ')}`,
    );
    await moneTor(endpoints);
    for (const count of COUNTS) await aggregate(endpoints, count);
  } finally {
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.send({ type: 'exit' } satisfies ToClients);
    await Promise.race([exited, sleep(5_000)]);
    if (child.exitCode === null) child.kill();
    clearTimeout(limit);
  }
  report.say(
    `tunnel: done in ${((performance.now() - started) / 1000).toFixed(1)} s, ` +
      `load average ${loadavg()
        .map((x) => x.toFixed(2))
        .join(' ')}`,
  );
}

await main();
