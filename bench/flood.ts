import { type ChildProcess, fork } from 'node:child_process';
import { Agent, get } from 'node:http';
import { availableParallelism, loadavg, setPriority } from 'node:os';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { CircuitClient } from '../src/client/circuit-client.js';
import type { JobParams } from '../src/protocol/messages.js';
import type { FloodCounts, FromClients, ToClients } from './flood-clients.js';
import type { FromRelay, ToRelay } from './flood-relay.js';
import { Report } from './lib/report.js';

/**
 * The relay stays responsive under floods of expensive requests (issue 15; docs/design.md
 * §10.1). A whole relay (bench/flood-relay.ts, its own process, default limits) serves a few
 * legitimate miners submitting shares and a /healthz poller (this process: the probe); both
 * are measured without a flood, then while 200 circuits flood forged redemptions (right
 * format, the relay's key, today's day, a random signature: the path that reaches the
 * signature check) and 200 flood garbage frames (bench/flood-clients.ts, a third process).
 * Then a fresh relay takes a million fuzzed frames over a few circuits, and its RSS after
 * (following a full GC) is compared with before.
 *
 * Targets: /healthz p99 under flood < 100 ms; share answer p99 under flood < 3 × its p99
 * without; RSS after the fuzz < 1.5 × before.
 *
 * The attackers run at nice 19: real ones are elsewhere, and here they share the relay's two
 * cores, so what making their frames costs should come out of idle time, not the relay's
 * (their send rates are reported).
 *
 * The fuzz relay raises the per-circuit limits (maxInvalidFrames 1000, maxRequestsPerSecond
 * 100,000) and the pace of unregistered circuits (100,000/s), or each circuit would be closed
 * after 10 invalid frames, or wait its turn and be cut with its frames unread, and a million
 * frames would mostly be handshakes: every frame is to be parsed and answered. The flood runs
 * at the defaults.
 *
 *   npm run bench -- flood [--json] [--seconds S] [--redeemers N] [--garbage N] [--frames N]
 *                          [--miners N] [--limits '{"maxVerificationsPerSecond":100}']
 *                          [--only flood|fuzz]
 *
 * Results: BENCHMARKS.md, "flood".
 */

const { values: args } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    seconds: { type: 'string', default: '15' },
    redeemers: { type: 'string', default: '200' },
    garbage: { type: 'string', default: '200' },
    frames: { type: 'string', default: '1000000' },
    miners: { type: 'string', default: '4' },
    limits: { type: 'string', default: '{}' },
    only: { type: 'string' },
  },
});

function positiveInt(text: string, flag: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${flag} must be a positive integer`);
  return n;
}

const SECONDS = positiveInt(args.seconds, '--seconds');
const REDEEMERS = positiveInt(args.redeemers, '--redeemers');
const GARBAGE = positiveInt(args.garbage, '--garbage');
const FRAMES = positiveInt(args.frames, '--frames');
const MINERS = positiveInt(args.miners, '--miners');
/** `[limits]` of the flooded relay over the defaults, e.g. '{"maxVerificationsPerSecond":100}'. */
const LIMITS = JSON.parse(args.limits) as Record<string, unknown>;
const report = new Report('flood', args.json);

/** A miner's share every 100 ms: half the per-circuit request limit. */
const SHARE_INTERVAL_MS = 100;
const HEALTH_INTERVAL_MS = 50;
/** The flood's circuits need a moment to be open and refused in earnest. */
const RAMP_MS = 3_000;
const FUZZ_CIRCUITS = 8;
const FUZZ_WARMUP_FRAMES = 50_000;
const TIME_LIMIT_MS = 15 * 60_000;

const tsx = import.meta.resolve('tsx');

/** Every child still running: a failing run must not leave relays or attackers behind. */
const children = new Set<ChildProcess>();
process.on('exit', () => {
  for (const proc of children) proc.kill('SIGKILL');
});

function child(file: string, execArgv: string[] = []): ChildProcess {
  const proc = fork(fileURLToPath(new URL(file, import.meta.url)), [], {
    execArgv: [...execArgv, '--import', tsx],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  children.add(proc);
  proc.once('exit', () => children.delete(proc));
  return proc;
}

/**
 * The attackers, at the lowest priority. Real attackers are elsewhere and what they cost the
 * relay is the work it does for their frames; here they share its two cores, so what they
 * cost to make their frames comes out of idle time rather than the relay's (their rates are
 * reported, so a flood thinned by the priority would show).
 */
function attackers(): ChildProcess {
  const proc = child('./flood-clients.ts');
  if (proc.pid !== undefined) setPriority(proc.pid, 19);
  return proc;
}

/** The next message of `type` from a child. */
function next<M extends { type: string }, T extends M['type']>(
  proc: ChildProcess,
  type: T,
  timeoutMs = 120_000,
): Promise<Extract<M, { type: T }>> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${type} in ${timeoutMs} ms`)), timeoutMs);
    const onMessage = (message: unknown): void => {
      if ((message as M).type !== type) return;
      clearTimeout(timer);
      proc.off('message', onMessage);
      resolve(message as Extract<M, { type: T }>);
    };
    proc.on('message', onMessage);
  });
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
}

interface Latencies {
  samples: number[];
  failures: number;
}

/**
 * The probe: miners that registered before any flood, each submitting a share every 100 ms,
 * and a /healthz poller on a keep-alive connection (as a monitor would have). Latencies are
 * kept only while `recording` is set.
 */
class Probe {
  readonly shares: Latencies = { samples: [], failures: 0 };
  readonly health: Latencies = { samples: [], failures: 0 };
  recording = false;
  private running = true;
  private readonly loops: Promise<void>[] = [];
  private readonly miners: CircuitClient[] = [];
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 1 });

  constructor(private readonly url: string) {}

  async start(): Promise<void> {
    const circuit = `${this.url.replace(/^http/, 'ws')}/v1/circuit`;
    for (let i = 0; i < MINERS; i++) {
      const miner = await CircuitClient.connect(circuit, { timeoutMs: 10_000 });
      this.miners.push(miner);
      const job = new Promise<JobParams>((resolve) => miner.once('job', resolve));
      const { extranonce2Size } = await miner.request('mining.register', {
        agent: 'bench-flood',
        mode: 'tickets',
      });
      this.loops.push(this.mine(miner, await job, extranonce2Size));
    }
    this.loops.push(this.poll());
  }

  reset(): void {
    for (const l of [this.shares, this.health]) {
      l.samples = [];
      l.failures = 0;
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
    await Promise.all(this.miners.map((m) => m.close()));
    this.agent.destroy();
  }

  private async mine(miner: CircuitClient, first: JobParams, size: number): Promise<void> {
    let job = first;
    miner.on('job', (j) => (job = j));
    let extranonce2 = 0;
    while (this.running && miner.open) {
      extranonce2++;
      const started = performance.now();
      try {
        await miner.request('mining.submit', {
          jobId: job.jobId,
          extranonce2: extranonce2.toString(16).padStart(2 * size, '0'),
          ntime: job.ntime,
          nonce: '00000000',
        });
        if (this.recording) this.shares.samples.push(performance.now() - started);
      } catch (err) {
        if (this.recording) this.shares.failures++;
        if (this.shares.failures === 1) report.say(`  a share failed: ${String(err)}`);
      }
      await sleep(SHARE_INTERVAL_MS);
    }
  }

  private async poll(): Promise<void> {
    while (this.running) {
      const started = performance.now();
      const ok = await new Promise<boolean>((resolve) => {
        const request = get(`${this.url}/healthz`, { agent: this.agent }, (response) => {
          response.resume();
          response.once('end', () => resolve(response.statusCode === 200));
        });
        request.setTimeout(10_000, () => request.destroy());
        request.once('error', () => resolve(false));
      });
      if (this.recording) {
        if (ok) this.health.samples.push(performance.now() - started);
        else this.health.failures++;
      }
      await sleep(HEALTH_INTERVAL_MS);
    }
  }
}

interface Window {
  shares: number[];
  health: number[];
  shareFailures: number;
  healthFailures: number;
}

async function loop(relay: ChildProcess): Promise<Extract<FromRelay, { type: 'loop' }>> {
  const answer = next<FromRelay, 'loop'>(relay, 'loop');
  relay.send({ type: 'loop' } satisfies ToRelay);
  return answer;
}

async function measure(probe: Probe, relay: ChildProcess): Promise<Window> {
  probe.reset();
  await loop(relay);
  const cpu = process.cpuUsage();
  probe.recording = true;
  await sleep(SECONDS * 1000);
  probe.recording = false;
  const l = await loop(relay);
  const probeCpu = process.cpuUsage(cpu);
  report.say(
    `  relay event-loop delay p50 ${l.p50.toFixed(1)} ms, p99 ${l.p99.toFixed(1)} ms, max ${l.max.toFixed(1)} ms; relay CPU ${((100 * l.cpuMs) / 1000 / l.seconds).toFixed(0)}%, probe CPU ${((probeCpu.user + probeCpu.system) / 10_000 / l.seconds).toFixed(0)}%; load ${loadavg()[0]?.toFixed(2)}`,
  );
  const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
  return {
    shares: sorted(probe.shares.samples),
    health: sorted(probe.health.samples),
    shareFailures: probe.shares.failures,
    healthFailures: probe.health.failures,
  };
}

function describeWindow(name: string, w: Window): void {
  const ms = (x: number) => `${x.toFixed(1)} ms`;
  report.say(
    `  ${name}: shares n=${w.shares.length} (failed ${w.shareFailures}) p50 ${ms(percentile(w.shares, 50))} p99 ${ms(percentile(w.shares, 99))} max ${ms(w.shares.at(-1) ?? NaN)}; ` +
      `/healthz n=${w.health.length} (failed ${w.healthFailures}) p50 ${ms(percentile(w.health, 50))} p99 ${ms(percentile(w.health, 99))} max ${ms(w.health.at(-1) ?? NaN)}`,
  );
}

async function startRelay(limits: Record<string, unknown>): Promise<{
  relay: ChildProcess;
  started: Extract<FromRelay, { type: 'started' }>;
}> {
  const relay = child('./flood-relay.ts', ['--expose-gc']);
  const started = next<FromRelay, 'started'>(relay, 'started');
  relay.send({ type: 'start', limits } satisfies ToRelay);
  return { relay, started: await started };
}

async function stopRelay(relay: ChildProcess): Promise<void> {
  const stopped = next<FromRelay, 'stopped'>(relay, 'stopped');
  relay.send({ type: 'stop' } satisfies ToRelay);
  await stopped;
}

async function memory(relay: ChildProcess): Promise<{ rss: number; heapUsed: number }> {
  const answer = next<FromRelay, 'memory'>(relay, 'memory');
  relay.send({ type: 'memory' } satisfies ToRelay);
  return answer;
}

async function floodPhase(): Promise<void> {
  const { relay, started } = await startRelay(LIMITS);
  const probe = new Probe(started.url);
  await probe.start();
  await sleep(2_000); // warm-up: pools, JIT, first retargets
  report.say(
    `flood: ${MINERS} miners, a share every ${SHARE_INTERVAL_MS} ms each; /healthz every ${HEALTH_INTERVAL_MS} ms; ${SECONDS} s windows`,
  );
  const quiet = await measure(probe, relay);
  describeWindow('no flood', quiet);

  const clients = attackers();
  clients.send({
    type: 'flood',
    url: `${started.url.replace(/^http/, 'ws')}/v1/circuit`,
    keyId: started.keyId,
    day: started.day,
    redeemers: REDEEMERS,
    garbage: GARBAGE,
  } satisfies ToClients);
  const floodStart = performance.now();
  await sleep(RAMP_MS);
  const flooded = await measure(probe, relay);
  const stopped = next<FromClients, 'stopped'>(clients, 'stopped');
  clients.send({ type: 'stop' } satisfies ToClients);
  const { counts } = await stopped;
  const floodSeconds = (performance.now() - floodStart) / 1000;
  clients.kill();
  describeWindow(`flood (${REDEEMERS} redeem + ${GARBAGE} garbage circuits)`, flooded);
  describeFlood(counts, floodSeconds);

  const statusAnswer = next<FromRelay, 'status'>(relay, 'status');
  relay.send({ type: 'status' } satisfies ToRelay);
  const { status } = await statusAnswer;
  const { load, tickets } = status as { load: unknown; tickets: { refused: unknown } };
  report.say(
    `  relay load: ${JSON.stringify(load)}; tickets refused: ${JSON.stringify(tickets.refused)}`,
  );
  await probe.stop();
  await stopRelay(relay);

  const sp99 = percentile(quiet.shares, 99);
  const hp99 = percentile(quiet.health, 99);
  report.figure('share p50, no flood', percentile(quiet.shares, 50), 'ms');
  report.figure('share p99, no flood', sp99, 'ms');
  report.figure('share p50, flood', percentile(flooded.shares, 50), 'ms', [
    'share p50, no flood',
    percentile(quiet.shares, 50),
  ]);
  report.figure('share p99, flood', percentile(flooded.shares, 99), 'ms', [
    'share p99, no flood',
    sp99,
  ]);
  report.figure('healthz p50, no flood', percentile(quiet.health, 50), 'ms');
  report.figure('healthz p99, no flood', hp99, 'ms');
  report.figure('healthz p99, flood', percentile(flooded.health, 99), 'ms', [
    'healthz p99, no flood',
    hp99,
  ]);
  report.figure('forged redeems sent, flood', counts.redeemsSent / floodSeconds, '/s');
  report.figure(
    'forged redeems checked (30), flood',
    (counts.answers['30'] ?? 0) / floodSeconds,
    '/s',
  );
  report.figure(
    'forged redeems shed (38), flood',
    (counts.answers['38'] ?? 0) / floodSeconds,
    '/s',
  );
  report.figure('garbage frames sent, flood', counts.garbageSent / floodSeconds, '/s');
  verdict('/healthz p99 under flood < 100 ms', percentile(flooded.health, 99) < 100);
  verdict('share p99 under flood < 3 × without', percentile(flooded.shares, 99) < 3 * sp99);
  verdict(
    'no failed probe request under flood',
    flooded.shareFailures + flooded.healthFailures === 0,
  );
}

function describeFlood(c: FloodCounts, seconds: number): void {
  const rate = (n: number) => `${(n / seconds).toFixed(0)}/s`;
  report.say(
    `  attackers over ${seconds.toFixed(1)} s: ${rate(c.redeemsSent)} forged redeems, ${rate(c.garbageSent)} garbage frames; ` +
      `attackers' CPU ${((100 * c.cpuMs) / 1000 / seconds).toFixed(0)}%; answers ${JSON.stringify(c.answers)}; circuits opened ${rate(c.opened)}, upgrades refused ${JSON.stringify(c.refusedUpgrades)}, closes ${JSON.stringify(c.closes)}`,
  );
}

async function fuzzPhase(): Promise<void> {
  const { relay, started } = await startRelay({
    maxInvalidFrames: 1000,
    maxRequestsPerSecond: 100_000,
    maxUnregisteredRequestsPerSecond: 100_000,
  });
  // Nothing is timed here: the fuzzer runs at normal priority, to be done sooner.
  const clients = child('./flood-clients.ts');
  const fuzz = (frames: number) => {
    const done = next<FromClients, 'fuzzed'>(clients, 'fuzzed', TIME_LIMIT_MS);
    clients.send({
      type: 'fuzz',
      url: `${started.url.replace(/^http/, 'ws')}/v1/circuit`,
      keyId: started.keyId,
      day: started.day,
      frames,
      connections: FUZZ_CIRCUITS,
    } satisfies ToClients);
    return done;
  };
  await fuzz(FUZZ_WARMUP_FRAMES);
  await sleep(1_000);
  const before = await memory(relay);
  const t0 = performance.now();
  const { sent, connections } = await fuzz(FRAMES);
  const seconds = (performance.now() - t0) / 1000;
  clients.kill();
  await sleep(1_000); // the relay closes the circuits the clients dropped
  const after = await memory(relay);
  await stopRelay(relay);
  const mb = (bytes: number) => bytes / 2 ** 20;
  report.say(
    `fuzz: ${sent} frames over ${connections} circuits (${FUZZ_CIRCUITS} at a time) in ${seconds.toFixed(1)} s, after ${FUZZ_WARMUP_FRAMES} frames of warm-up`,
  );
  report.figure('fuzzed frames', sent / seconds, '/s');
  report.figure('relay heap used before fuzz', mb(before.heapUsed), 'MiB');
  report.figure('relay heap used after fuzz', mb(after.heapUsed), 'MiB', [
    'relay heap used before fuzz',
    mb(before.heapUsed),
  ]);
  report.figure('relay RSS before fuzz', mb(before.rss), 'MiB');
  report.figure('relay RSS after fuzz', mb(after.rss), 'MiB', [
    'relay RSS before fuzz',
    mb(before.rss),
  ]);
  verdict('RSS after the fuzz < 1.5 × before', after.rss < 1.5 * before.rss);
}

const verdicts: string[] = [];
function verdict(target: string, met: boolean): void {
  verdicts.push(`  ${met ? 'met' : 'MISSED'}: ${target}`);
}

const deadline = setTimeout(() => {
  console.error(`flood: over the ${TIME_LIMIT_MS / 60_000} min limit, giving up`);
  process.exit(1);
}, TIME_LIMIT_MS);
deadline.unref();

report.say(
  `flood: ${availableParallelism()} CPUs, load average ${loadavg()
    .map((x) => x.toFixed(2))
    .join(' ')}`,
);
if (args.only !== undefined && args.only !== 'flood' && args.only !== 'fuzz') {
  throw new Error('--only: expected flood or fuzz');
}
if (args.only !== 'fuzz') await floodPhase();
if (args.only !== 'flood') await fuzzPhase();
report.say('targets:');
for (const line of verdicts) report.say(line);
report.say(
  `load average at the end ${loadavg()
    .map((x) => x.toFixed(2))
    .join(' ')}`,
);
process.exit(0);
