import { type ChildProcess, fork } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { availableParallelism, loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { type WebSocket, WebSocketServer } from 'ws';
import { encodeNotification } from '../src/protocol/jsonrpc.js';
import type { JobParams } from '../src/protocol/messages.js';
import { CIRCUIT_PATH, CircuitConnector } from '../src/relay/circuit-connector.js';
import { Stratifier } from '../src/relay/stratifier.js';
import type { SourceJob } from '../src/sources/work-source.js';
import { createPowHasher } from '../src/work/pow.js';
import { MIN_DIFFICULTY } from '../src/work/target.js';
import { ManualSource } from '../test/helpers/manual-source.js';
import type { FromClients, ToClients } from './fanout-clients.js';

/**
 * Job fan-out latency (issue target: p99 < 100 ms at 10,000 clients) and relay RSS.
 *
 * The relay (Stratifier + CircuitConnector on an http server, ManualSource upstream) runs in
 * this process; N registered clients run in a forked child (bench/fanout-clients.ts, a
 * minimal WebSocket client on bare sockets so that it costs little per frame). K clean
 * jobs are published ~interval apart; latency of a (job, client) pair is the child's receive
 * time minus the publish time here, both on the wall clock (see wallClockMs; the residual
 * offset between the processes is measured over IPC and printed).
 *
 * Baseline: a plain `ws` broadcast of a same-sized job frame to the same N clients from the
 * same process and child, with no relay code. It shares every cost the relay cannot avoid
 * (loopback, syscalls, one client process standing in for N machines on a 2-core box), so
 * the ratio isolates what the stratifier and connector add.
 *
 *   npm run bench -- fanout [--json] [--clients N] [--jobs K] [--interval MS]
 *   npx tsx bench/fanout.ts [--json] [--clients N] [--jobs K] [--interval MS]
 *
 * Results and where the time goes: BENCHMARKS.md, "fanout".
 */

const TIME_LIMIT_MS = 115_000;
const CONNECT_CONCURRENCY = 256;

const { values: args } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    clients: { type: 'string', default: '10000' },
    jobs: { type: 'string', default: '20' },
    interval: { type: 'string', default: '250' },
  },
});
const CLIENTS = positiveInt(args.clients, '--clients');
const JOBS = positiveInt(args.jobs, '--jobs');
const INTERVAL_MS = positiveInt(args.interval, '--interval');
const JSON_OUT = args.json;

function positiveInt(text: string, flag: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${flag} must be a positive integer`);
  return n;
}

/** With --json stdout carries only the JSON lines; the human lines go to stderr. */
function say(line: string): void {
  if (JSON_OUT) console.error(line);
  else console.log(line);
}

/** One JSON figure; `against` is null for a figure that is itself a baseline. */
function figure(
  name: string,
  value: number,
  unit: string,
  against: { baseline: string; value: number } | null = null,
): void {
  if (!JSON_OUT) return;
  const round = (x: number) => Math.round(x * 1000) / 1000;
  console.log(
    JSON.stringify({
      bench: 'fanout',
      figure: name,
      value: round(value),
      unit,
      baseline: against?.baseline ?? null,
      ratio: against ? round(value / against.value) : null,
    }),
  );
}

/**
 * The same clock as wallClockMs in fanout-clients.ts (kept apart so importing that module
 * does not run it): the kernel realtime clock sampled at process start (timeOrigin),
 * advanced by the monotonic clock. Comparable across processes on one machine; the residual
 * offset is measured over IPC and printed.
 */
function wallClockMs(): number {
  return performance.timeOrigin + performance.now();
}

const mb = (bytes: number) => bytes / 2 ** 20;
const rss = () => process.memoryUsage().rss;

// ---- the client process --------------------------------------------------------------------

type Answer<T extends FromClients['type']> = Extract<FromClients, { type: T }>;

class Clients {
  private waiting: { type: string; resolve: (m: FromClients) => void } | null = null;
  private exited: Error | null = null;

  constructor(private readonly child: ChildProcess) {
    child.on('message', (message) => {
      const msg = message as FromClients;
      const waiting = this.waiting;
      if (!waiting || waiting.type !== msg.type) return;
      this.waiting = null;
      waiting.resolve(msg);
    });
    child.once('exit', (code, signal) => {
      this.exited = new Error(`client process exited (${code ?? signal})`);
    });
  }

  /** One request at a time, so the next answer of the right type is ours. */
  ask<T extends FromClients['type']>(
    msg: ToClients,
    type: T,
    timeoutMs = 60_000,
  ): Promise<Answer<T>> {
    if (this.exited) return Promise.reject(this.exited);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting = null;
        reject(new Error(`client process: no '${type}' answer within ${timeoutMs} ms`));
      }, timeoutMs);
      const onExit = () => {
        clearTimeout(timer);
        reject(this.exited ?? new Error('client process exited'));
      };
      this.child.once('exit', onExit);
      this.waiting = {
        type,
        resolve: (m) => {
          clearTimeout(timer);
          this.child.off('exit', onExit);
          resolve(m as Answer<T>);
        },
      };
      this.child.send(msg);
    });
  }

  /**
   * Offset of the child's clock from ours, from the exchange with the shortest round trip
   * (least queueing, so the midpoint is closest to when the child read its clock).
   */
  async clockOffset(): Promise<{ offset: number; uncertainty: number }> {
    let best = { offset: 0, uncertainty: Number.POSITIVE_INFINITY };
    for (let i = 0; i < 20; i++) {
      const t0 = wallClockMs();
      const { t } = await this.ask({ type: 'clock' }, 'clock');
      const t1 = wallClockMs();
      if ((t1 - t0) / 2 < best.uncertainty)
        best = { offset: t - (t0 + t1) / 2, uncertainty: (t1 - t0) / 2 };
    }
    return best;
  }
}

// ---- one measured phase --------------------------------------------------------------------

interface Published {
  jobId: string;
  at: number;
  /** Time the synchronous send loop took on the relay's event loop. */
  loopMs: number;
  /** CPU of that loop: JS and ws in user space, the socket writes (loopback TCP) in system. */
  userMs: number;
  systemMs: number;
}

interface PhaseResult {
  latencies: Float64Array;
  missing: number;
  unexpectedCloses: number;
  connectMs: number;
  loops: Published[];
  clock: { offset: number; uncertainty: number };
  rssConnected: number;
  rssAfterJobs: number;
  bytes: number;
  /** Per job: first and last receipt relative to publish (the client process's drain). */
  firstMs: number[];
  spanMs: number[];
  /** CPU of the client process per job: it stands in for N machines on the other core. */
  clientCpuMs: number;
  /** Frames the clients received over more than one read (timed when complete). */
  splitFrames: number;
}

interface PhaseTarget {
  url: string;
  register: boolean;
  /** Connected (and, for the relay, registered) clients as the server sees them. */
  size: () => number;
  /** Publish job k now; returns its client-visible id and (untimed) its frame. */
  publish: (k: number) => { jobId: string; frame: () => string };
}

async function runPhase(clients: Clients, target: PhaseTarget): Promise<PhaseResult> {
  const connected = await clients.ask(
    {
      type: 'connect',
      url: target.url,
      count: CLIENTS,
      register: target.register,
      concurrency: CONNECT_CONCURRENCY,
    },
    'connected',
    80_000,
  );
  if (connected.failed > 0)
    throw new Error(`${connected.failed} of ${CLIENTS} clients failed: ${connected.firstError}`);
  await waitFor(() => target.size() === CLIENTS, 5_000, 'server to see every client');
  // Let the registration replies and first jobs drain so they do not overlap job 1.
  await sleep(500);
  const rssConnected = rss();
  const clock = await clients.clockOffset();

  const published: Published[] = [];
  let bytes = 0;
  for (let k = 0; k < JOBS; k++) {
    const cpu = process.cpuUsage();
    const at = wallClockMs();
    const sent = target.publish(k);
    const loopMs = wallClockMs() - at;
    const { user, system } = process.cpuUsage(cpu);
    published.push({ jobId: sent.jobId, at, loopMs, userMs: user / 1000, systemMs: system / 1000 });
    bytes = Buffer.byteLength(sent.frame());
    await sleep(INTERVAL_MS);
  }
  // Wait for the last job to reach everyone (bounded: a lost frame counts as missing).
  const last = published[published.length - 1];
  for (let waited = 0; last && waited < 5_000; waited += 100) {
    const { received } = await clients.ask({ type: 'count', jobId: last.jobId }, 'count');
    if (received >= CLIENTS) break;
    await sleep(100);
  }
  const rssAfterJobs = rss();

  const report = await clients.ask({ type: 'report' }, 'report');
  const latencies = new Float64Array(JOBS * CLIENTS);
  let n = 0;
  let missing = 0;
  const firstMs: number[] = [];
  const spanMs: number[] = [];
  for (const job of published) {
    const times = report.receipts.get(job.jobId) ?? [];
    missing += Math.max(0, CLIENTS - times.length);
    let first = Number.POSITIVE_INFINITY;
    let lastSeen = Number.NEGATIVE_INFINITY;
    for (const t of times) {
      latencies[n++] = t - job.at;
      first = Math.min(first, t);
      lastSeen = Math.max(lastSeen, t);
    }
    if (times.length > 0) {
      firstMs.push(first - job.at);
      spanMs.push(lastSeen - first);
    }
  }
  await clients.ask({ type: 'close' }, 'closed', 30_000);
  await waitFor(() => target.size() === 0, 10_000, 'server to see every client leave');
  return {
    latencies: latencies.subarray(0, n).sort(),
    missing,
    unexpectedCloses: report.unexpectedCloses,
    connectMs: connected.ms,
    loops: published,
    clock,
    rssConnected,
    rssAfterJobs,
    bytes,
    firstMs,
    spanMs,
    // The count polls after the last job cost next to nothing; the rest is receiving.
    clientCpuMs: report.cpuMs / JOBS,
    splitFrames: report.splitFrames,
  };
}

async function waitFor(ok: () => boolean, timeoutMs: number, what: string): Promise<void> {
  for (let waited = 0; !ok(); waited += 20) {
    if (waited >= timeoutMs) throw new Error(`timed out waiting for the ${what}`);
    await sleep(20);
  }
}

/** Nearest-rank percentile of a sorted array. */
function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))] ?? NaN;
}

function listen(server: Server): Promise<string> {
  return new Promise((resolve) => {
    server.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, () => {
      resolve(`ws://127.0.0.1:${(server.address() as AddressInfo).port}${CIRCUIT_PATH}`);
    });
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/** The same fields the connector sends (circuit-connector.ts jobParams), for the baseline. */
function baselineFrame(job: SourceJob, jobId: string, extranonce1: string): string {
  const params: JobParams = {
    jobId,
    prevhash: job.prevhash,
    coinb1: job.coinb1 + extranonce1,
    coinb2: job.coinb2,
    merkleBranch: job.merkleBranch,
    version: job.version,
    nbits: job.nbits,
    ntime: job.ntime,
    clean: job.clean,
  };
  return encodeNotification('mining.job', params);
}

// ---- main ----------------------------------------------------------------------------------

async function main(): Promise<void> {
  say(
    `fanout: ${CLIENTS} clients, ${JOBS} clean jobs ${INTERVAL_MS} ms apart; ` +
      `node ${process.version}, ${availableParallelism()} cores, ` +
      // Other work on the machine shows up as latency; say how busy it was.
      `load average ${loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}`,
  );

  // Relay, set up as in test/relay/circuit.test.ts; vardiff pinned at the floor so no
  // set_difficulty or job re-send lands in the measurement window.
  const source = new ManualSource('sha256d');
  const stratifier = new Stratifier({
    source,
    algorithm: 'sha256d',
    hasher: await createPowHasher('sha256d'),
    initialDifficulty: MIN_DIFFICULTY,
    ticketDifficulty: MIN_DIFFICULTY,
    vardiff: { minDifficulty: MIN_DIFFICULTY },
    maxClients: Math.max(CLIENTS, 10_000),
  });
  stratifier.start();
  const connector = new CircuitConnector(stratifier);
  const relayServer = createServer((_, res) => res.end());
  connector.attach(relayServer);
  const relayUrl = await listen(relayServer);
  source.goLive({ difficulty: 1e12 });
  const terms = source.status().terms;
  if (!terms) throw new Error('ManualSource.goLive set no terms');
  await sleep(200);
  const rssBefore = rss();

  // The child runs TypeScript through the same tsx loader, found from here rather than the
  // cwd; our execArgv is not inherited so a --cpu-prof of the relay profiles the relay only.
  const child = fork(fileURLToPath(new URL('./fanout-clients.ts', import.meta.url)), [], {
    execArgv: ['--import', import.meta.resolve('tsx')],
    serialization: 'advanced', // receipts are a Map of arrays
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const clients = new Clients(child);

  let baselineServer: Server | null = null;
  const sockets = new Set<WebSocket>();
  const deadline = setTimeout(() => {
    console.error(`fanout: over the ${TIME_LIMIT_MS / 1000} s limit, giving up`);
    child.kill('SIGKILL');
    process.exit(1);
  }, TIME_LIMIT_MS);

  try {
    const relay = await runPhase(clients, {
      url: relayUrl,
      register: true,
      size: () => stratifier.clientCount,
      publish: () => {
        const job = source.newJob({ clean: true });
        const jobId = stratifier.currentJobId ?? '';
        return { jobId, frame: () => baselineFrame(job, jobId, terms.extranonce1) };
      },
    });
    connector.close();
    stratifier.stop();
    await closeServer(relayServer);

    // Baseline: the same frame sizes and clients, a bare WebSocketServer and a send loop.
    baselineServer = createServer((_, res) => res.end());
    const wss = new WebSocketServer({
      server: baselineServer,
      perMessageDeflate: false,
      clientTracking: false,
      maxPayload: 16 * 1024,
    });
    wss.on('connection', (ws) => {
      sockets.add(ws);
      ws.on('error', () => undefined);
      ws.once('close', () => sockets.delete(ws));
    });
    const baselineUrl = await listen(baselineServer);
    const jobs = new ManualSource('sha256d');
    jobs.setTerms(terms);
    const plain = await runPhase(clients, {
      url: baselineUrl,
      register: false,
      size: () => sockets.size,
      publish: (k) => {
        // Same ids as the relay's (hex counter from 2) so the frames have the same size.
        const jobId = (k + 2).toString(16);
        const text = baselineFrame(jobs.newJob({ clean: true }), jobId, terms.extranonce1);
        for (const ws of sockets) ws.send(text);
        return { jobId, frame: () => text };
      },
    });
    wss.close();

    report(relay, plain, rssBefore);
  } finally {
    // Normally everything is closed by now; after a failure, drop whatever is left.
    clearTimeout(deadline);
    child.kill();
    for (const ws of sockets) ws.terminate();
    connector.close();
    stratifier.stop();
    for (const server of [relayServer, baselineServer]) {
      if (!server?.listening) continue;
      server.closeAllConnections();
      await closeServer(server);
    }
  }
}

function report(relay: PhaseResult, plain: PhaseResult, rssBefore: number): void {
  const pairs = JOBS * CLIENTS;
  const stats = (r: PhaseResult) => ({
    p50: percentile(r.latencies, 0.5),
    p99: percentile(r.latencies, 0.99),
    max: r.latencies[r.latencies.length - 1] ?? NaN,
  });
  const a = stats(relay);
  const b = stats(plain);
  const loops = (r: PhaseResult) => {
    const median = (pick: (p: Published) => number) =>
      percentile(Float64Array.from(r.loops, pick).sort(), 0.5).toFixed(1);
    return (
      `${median((p) => p.loopMs)} ms median (CPU ${median((p) => p.userMs)} ms user + ` +
      `${median((p) => p.systemMs)} ms system), ${Math.max(...r.loops.map((p) => p.loopMs)).toFixed(1)} ms max`
    );
  };
  const line = (name: string, s: { p50: number; p99: number; max: number }, r: PhaseResult) =>
    `${name}: p50 ${s.p50.toFixed(1)} ms, p99 ${s.p99.toFixed(1)} ms, max ${s.max.toFixed(1)} ms ` +
    `over ${r.latencies.length}/${pairs} (job, client) pairs` +
    (r.missing > 0 ? `, ${r.missing} MISSING` : '') +
    (r.unexpectedCloses > 0 ? `, ${r.unexpectedCloses} sockets closed early` : '');

  say(line('relay fan-out latency   ', a, relay));
  say(line('plain ws broadcast      ', b, plain));
  say(`relay send loop per job: ${loops(relay)}`);
  say(`plain ws send loop:      ${loops(plain)}`);
  const drain = (r: PhaseResult) => {
    const median = (xs: number[]) => percentile(Float64Array.from(xs).sort(), 0.5).toFixed(1);
    return (
      `first client after ${median(r.firstMs)} ms, first→last ${median(r.spanMs)} ms (medians), ` +
      `client process CPU ${r.clientCpuMs.toFixed(1)} ms per job, ${r.splitFrames} split frames`
    );
  };
  say(`relay phase receipts:    ${drain(relay)}`);
  say(`plain ws receipts:       ${drain(plain)}`);
  say(
    `connect+register ${(relay.connectMs / 1000).toFixed(1)} s, ` +
      `plain connect ${(plain.connectMs / 1000).toFixed(1)} s`,
  );
  say(
    `relay RSS: ${mb(rssBefore).toFixed(1)} MB before clients, ${mb(relay.rssConnected).toFixed(1)} MB ` +
      `with ${CLIENTS} clients (${((relay.rssConnected - rssBefore) / CLIENTS / 1024).toFixed(1)} KiB/client), ` +
      `${mb(relay.rssAfterJobs).toFixed(1)} MB after the jobs`,
  );
  say(
    `clock offset child−relay: ${relay.clock.offset.toFixed(3)} ± ${relay.clock.uncertainty.toFixed(3)} ms ` +
      `(relay phase), ${plain.clock.offset.toFixed(3)} ± ${plain.clock.uncertainty.toFixed(3)} ms (baseline); ` +
      `job frames ${relay.bytes} B relay, ${plain.bytes} B plain`,
  );
  if (a.p99 >= 100) say(`p99 ${a.p99.toFixed(1)} ms misses the 100 ms target`);

  // Baseline figures first (ratio null), then the relay's against them.
  const base = `plain ws broadcast, same ${CLIENTS} clients and frame size`;
  // CPU of the send loop hardly depends on what else runs on the machine; latency does.
  // (getrusage's user/system split is tick-sampled; their sum is exact.)
  const cpu = (r: PhaseResult) =>
    percentile(Float64Array.from(r.loops, (p) => p.userMs + p.systemMs).sort(), 0.5);
  const measured: [string, number, number, string][] = [
    [`p50 latency ${CLIENTS} clients`, a.p50, b.p50, 'ms'],
    [`p99 latency ${CLIENTS} clients`, a.p99, b.p99, 'ms'],
    [`max latency ${CLIENTS} clients`, a.max, b.max, 'ms'],
    [`send CPU per job ${CLIENTS} clients`, cpu(relay), cpu(plain), 'ms'],
  ];
  for (const [name, , baseValue, unit] of measured)
    figure(`${name}, plain ws broadcast`, baseValue, unit);
  for (const [name, value, baseValue, unit] of measured)
    figure(name, value, unit, { baseline: base, value: baseValue });
  const before = { baseline: 'relay RSS before clients', value: mb(rssBefore) };
  figure('relay RSS before clients', mb(rssBefore), 'MB');
  figure(`relay RSS ${CLIENTS} clients`, mb(relay.rssConnected), 'MB', before);
  figure('relay RSS after jobs', mb(relay.rssAfterJobs), 'MB', before);
  if (relay.missing > 0 || plain.missing > 0) process.exitCode = 1;
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : String(err));
  process.exit(1);
});
