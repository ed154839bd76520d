import { performance } from 'node:perf_hooks';
import WebSocket from 'ws';

/**
 * The client side of bench/fanout.ts, forked by it: opens N WebSockets to a relay (or to the
 * plain ws baseline server), registers them, and timestamps every `mining.job` frame. It is
 * a child process so its CPU work does not run on the relay's event loop.
 *
 * Not a benchmark on its own (bench/run.ts skips <name>-<part>.ts helpers): run
 * bench/fanout.ts.
 */

/** Parent → clients. One request at a time; each gets exactly one answer. */
export type ToClients =
  | { type: 'connect'; url: string; count: number; register: boolean; concurrency: number }
  | { type: 'clock' }
  | { type: 'count'; jobId: string }
  | { type: 'report' }
  | { type: 'close' };

/** Clients → parent. */
export type FromClients =
  | { type: 'connected'; ready: number; failed: number; firstError: string | null; ms: number }
  | { type: 'clock'; t: number }
  | { type: 'count'; received: number }
  | {
      type: 'report';
      receipts: Map<string, number[]>;
      unexpectedCloses: number;
      /** CPU this process used since the last clock request (the jobs follow it). */
      cpuMs: number;
    }
  | { type: 'closed'; ms: number };

/**
 * Both processes read the same kernel realtime clock through timeOrigin, advanced by the
 * monotonic clock; the parent (which has its own copy, see bench/fanout.ts) measures the
 * residual offset over IPC and prints it.
 */
function wallClockMs(): number {
  return performance.timeOrigin + performance.now();
}

/*
 * The relay encodes a job as JSON.stringify({jsonrpc, method, params: {jobId, …}}), so the
 * job id follows this marker. Finding it with Buffer#indexOf instead of JSON.parse matters:
 * this one process stands in for 10,000 machines, so any per-frame work here is serialised
 * and would be charged to the relay as latency. If the encoding ever changes, no receipts
 * are recorded and the parent reports every pair as missing rather than a wrong figure.
 */
const JOB_MARK = Buffer.from('"method":"mining.job","params":{"jobId":"');
const QUOTE = 0x22;
const REGISTER = JSON.stringify({
  jsonrpc: '2.0',
  id: 1,
  method: 'mining.register',
  params: { agent: 'bench-fanout', mode: 'donate' },
});

const sockets = new Set<WebSocket>();
const receipts = new Map<string, number[]>();
let closing = false;
let unexpectedCloses = 0;
let cpuMark = process.cpuUsage();

function onFrame(data: WebSocket.RawData): void {
  const t = wallClockMs(); // first, before any work of ours
  if (!Buffer.isBuffer(data)) return; // binaryType is 'nodebuffer': always a Buffer here
  const at = data.indexOf(JOB_MARK);
  if (at < 0) return;
  const start = at + JOB_MARK.length;
  const jobId = data.toString('latin1', start, data.indexOf(QUOTE, start));
  let times = receipts.get(jobId);
  if (!times) receipts.set(jobId, (times = []));
  times.push(t);
}

/** Open one socket; with `register`, resolve only once the relay accepted mining.register. */
function openOne(url: string, register: boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, {
      perMessageDeflate: false,
      // The relay's frames are trusted here; validating UTF-8 would only add client CPU.
      skipUTF8Validation: true,
      handshakeTimeout: 20_000,
    });
    ws.on('error', (err) => reject(err));
    ws.once('close', () => {
      sockets.delete(ws);
      if (!closing) unexpectedCloses += 1;
      reject(new Error('closed before ready'));
    });
    ws.once('open', () => {
      sockets.add(ws);
      ws.on('message', onFrame);
      if (!register) return resolve();
      const onReply = (data: WebSocket.RawData) => {
        if (!Buffer.isBuffer(data) || data.indexOf('"id":1') < 0) return;
        ws.off('message', onReply);
        const reply = JSON.parse(data.toString('utf8')) as { result?: { extranonce1?: unknown } };
        if (typeof reply.result?.extranonce1 === 'string') return resolve();
        reject(new Error(`register refused: ${data.toString('utf8').slice(0, 200)}`));
        ws.terminate();
      };
      ws.on('message', onReply);
      ws.send(REGISTER);
    });
  });
}

async function connectAll(
  msg: Extract<ToClients, { type: 'connect' }>,
): Promise<Extract<FromClients, { type: 'connected' }>> {
  closing = false;
  unexpectedCloses = 0;
  const started = wallClockMs();
  let ready = 0;
  let failed = 0;
  let firstError: string | null = null;
  let launched = 0;
  // A bounded number of handshakes in flight: all 10,000 at once would overflow the
  // listen backlog and measure SYN retries instead of the relay.
  await new Promise<void>((resolve) => {
    let inFlight = 0;
    const launch = (): void => {
      while (inFlight < msg.concurrency && launched < msg.count) {
        inFlight += 1;
        launched += 1;
        openOne(msg.url, msg.register)
          .then(
            () => {
              ready += 1;
            },
            (err: unknown) => {
              failed += 1;
              firstError ??= err instanceof Error ? err.message : String(err);
            },
          )
          .finally(() => {
            inFlight -= 1;
            launch();
          });
      }
      if (launched >= msg.count && inFlight === 0) resolve();
    };
    launch();
  });
  return { type: 'connected', ready, failed, firstError, ms: wallClockMs() - started };
}

async function closeAll(): Promise<Extract<FromClients, { type: 'closed' }>> {
  closing = true;
  const started = wallClockMs();
  const all = [...sockets];
  const closed = all.map((ws) => new Promise<void>((resolve) => ws.once('close', () => resolve())));
  for (const ws of all) ws.close(1000, 'bench done');
  // A peer that does not answer the close handshake must not hold the benchmark up.
  const timer = setTimeout(() => {
    for (const ws of sockets) ws.terminate();
  }, 5_000);
  await Promise.all(closed);
  clearTimeout(timer);
  receipts.clear();
  return { type: 'closed', ms: wallClockMs() - started };
}

async function handle(msg: ToClients): Promise<FromClients> {
  switch (msg.type) {
    case 'connect':
      return connectAll(msg);
    case 'clock':
      cpuMark = process.cpuUsage();
      return { type: 'clock', t: wallClockMs() };
    case 'count':
      return { type: 'count', received: receipts.get(msg.jobId)?.length ?? 0 };
    case 'report': {
      const { user, system } = process.cpuUsage(cpuMark);
      return { type: 'report', receipts, unexpectedCloses, cpuMs: (user + system) / 1000 };
    }
    case 'close':
      return closeAll();
  }
}

const send = process.send?.bind(process);
if (!send) {
  console.log('bench/fanout-clients.ts is a helper of bench/fanout.ts; run that instead');
} else {
  process.on('message', (msg: ToClients) => {
    void handle(msg).then((answer) => send(answer));
  });
  // The parent went away (crash, time limit): do not linger with 10,000 sockets open.
  process.on('disconnect', () => process.exit(0));
}
