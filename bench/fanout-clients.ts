import { createHash, randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';

/**
 * The client side of bench/fanout.ts, forked by it: opens N WebSocket connections to a relay
 * (or to the plain ws baseline server), registers them, and timestamps every `mining.job`
 * frame. It is a child process so its CPU work does not run on the relay's event loop.
 *
 * It speaks just enough WebSocket over bare `net` sockets to stand in for 10,000 machines
 * cheaply: its own upgrade request (the server's Sec-WebSocket-Accept is checked), masked
 * frames for register/pong/close, and a minimal reader for the server's unmasked frames.
 * Each socket reads into one shared buffer (net's `onread`), so a received frame costs a
 * callback, a header parse and a Buffer#indexOf; no stream 'data' event, no per-read
 * allocation, no `ws` receiver. The `ws` client it replaced cost about as much CPU per job
 * as the relay's whole send loop, on the same 2 cores (BENCHMARKS.md, "fanout").
 *
 * A job's receive time is taken when the read that completes its frame returns (what a
 * WebSocket client would see as the message), before any other work on it.
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
      /** Frames that arrived over more than one read since the last clock request. */
      splitFrames: number;
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
const REPLY_MARK = Buffer.from('"id":1');
const QUOTE = 0x22;
const REGISTER = Buffer.from(
  JSON.stringify({
    jsonrpc: '2.0',
    id: 1,
    method: 'mining.register',
    params: { agent: 'bench-fanout', mode: 'donate' },
  }),
);
const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'; // RFC 6455 §1.3
const HANDSHAKE_TIMEOUT_MS = 20_000;
/** Larger frames (or a response head) from the server are a protocol error here. */
const MAX_FRAME_BYTES = 1024 * 1024;
const MAX_HEAD_BYTES = 8 * 1024;
const CRLFCRLF = Buffer.from('\r\n\r\n');

const OP_TEXT = 0x1;
const OP_CLOSE = 0x8;
const OP_PING = 0x9;
const OP_PONG = 0xa;

/** Every socket reads into this one buffer; what must outlive the callback is copied. */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

interface Circuit {
  socket: Socket;
  /** Until the 101 response is complete: the bytes of its head so far. */
  head: Buffer | null;
  /** The Sec-WebSocket-Accept the server must answer with. */
  accept: string;
  /** Called once the upgrade succeeded. */
  onOpen: () => void;
  /** The start of a frame whose end has not arrived yet (a copy). */
  rest: Buffer | null;
  /** Waiting for the mining.register reply. */
  registering: { resolve: () => void; reject: (err: Error) => void } | null;
  closeSent: boolean;
}

const circuits = new Set<Circuit>();
const receipts = new Map<string, number[]>();
let closing = false;
let unexpectedCloses = 0;
let splitFrames = 0;
let cpuMark = process.cpuUsage();

/** A masked client frame (RFC 6455 §5.3); only used outside the measured path. */
function clientFrame(opcode: number, payload: Buffer): Buffer {
  const n = payload.length;
  const header = n < 126 ? 2 : n < 65536 ? 4 : 10;
  const frame = Buffer.allocUnsafe(header + 4 + n);
  frame[0] = 0x80 | opcode;
  if (n < 126) frame[1] = 0x80 | n;
  else if (n < 65536) {
    frame[1] = 0x80 | 126;
    frame.writeUInt16BE(n, 2);
  } else {
    frame[1] = 0x80 | 127;
    frame.writeBigUInt64BE(BigInt(n), 2);
  }
  const mask = randomBytes(4);
  mask.copy(frame, header);
  for (let i = 0; i < n; i++) frame[header + 4 + i] = (payload[i] ?? 0) ^ (mask[i & 3] ?? 0);
  return frame;
}

function sendClose(circuit: Circuit, code: number): void {
  if (circuit.closeSent || circuit.socket.destroyed) return;
  circuit.closeSent = true;
  const payload = Buffer.alloc(2);
  payload.writeUInt16BE(code);
  circuit.socket.write(clientFrame(OP_CLOSE, payload));
}

/** One read on one socket: `data` is a view of READ_BUFFER, valid only during this call. */
function onRead(circuit: Circuit, data: Buffer): void {
  const t = wallClockMs(); // first, before any work of ours
  let buf = data;
  if (circuit.head) {
    buf = Buffer.concat([circuit.head, data]);
    const end = buf.indexOf(CRLFCRLF);
    if (end < 0) {
      if (buf.length > MAX_HEAD_BYTES) circuit.socket.destroy(new Error('response head too big'));
      else circuit.head = buf;
      return;
    }
    circuit.head = null;
    upgraded(circuit, buf.toString('latin1', 0, end));
    if (circuit.socket.destroyed) return;
    buf = buf.subarray(end + CRLFCRLF.length);
  }
  if (circuit.rest) {
    buf = Buffer.concat([circuit.rest, buf]);
    circuit.rest = null;
    splitFrames += 1;
  }
  let at = 0;
  while (buf.length - at >= 2) {
    const b0 = buf[at] ?? 0;
    const b1 = buf[at + 1] ?? 0;
    let header = 2;
    let length = b1 & 0x7f;
    if (length === 126) {
      if (buf.length - at < 4) break;
      length = buf.readUInt16BE(at + 2);
      header = 4;
    } else if (length === 127) {
      if (buf.length - at < 10) break;
      length = Number(buf.readBigUInt64BE(at + 2));
      header = 10;
    }
    if ((b1 & 0x80) !== 0 || length > MAX_FRAME_BYTES) {
      circuit.socket.destroy(new Error('bad frame from the server'));
      return;
    }
    const end = at + header + length;
    if (end > buf.length) break;
    onFrame(circuit, b0 & 0x0f, buf, at + header, end, t);
    at = end;
  }
  // Keep the incomplete frame: a copy, since `data` is the shared read buffer.
  if (at < buf.length) circuit.rest = Buffer.from(buf.subarray(at));
}

function onFrame(
  circuit: Circuit,
  opcode: number,
  buf: Buffer,
  start: number,
  end: number,
  t: number,
): void {
  switch (opcode) {
    case OP_TEXT: {
      const mark = buf.indexOf(JOB_MARK, start);
      if (mark >= 0 && mark < end) {
        const idStart = mark + JOB_MARK.length;
        const idEnd = buf.indexOf(QUOTE, idStart);
        if (idEnd < 0 || idEnd >= end) return;
        const jobId = buf.toString('latin1', idStart, idEnd);
        let times = receipts.get(jobId);
        if (!times) receipts.set(jobId, (times = []));
        times.push(t);
        return;
      }
      const registering = circuit.registering;
      if (!registering) return;
      const reply = buf.indexOf(REPLY_MARK, start);
      if (reply < 0 || reply >= end) return;
      circuit.registering = null;
      const text = buf.toString('utf8', start, end);
      let parsed: { result?: { extranonce1?: unknown } } = {};
      try {
        parsed = JSON.parse(text) as typeof parsed;
      } catch {
        // not JSON: refused below
      }
      if (typeof parsed.result?.extranonce1 === 'string') return registering.resolve();
      registering.reject(new Error(`register refused: ${text.slice(0, 200)}`));
      circuit.socket.destroy();
      return;
    }
    case OP_PING: // keep-alive: answer, or the relay drops the circuit
      circuit.socket.write(clientFrame(OP_PONG, buf.subarray(start, end)));
      return;
    case OP_CLOSE:
      sendClose(circuit, end - start >= 2 ? buf.readUInt16BE(start) : 1000);
      circuit.socket.end();
      return;
    default: // pong, binary, continuation: the servers here send none that matter
  }
}

/** The 101 response head arrived; a circuit that fails the checks is destroyed. */
function upgraded(circuit: Circuit, head: string): void {
  const [status = '', ...fields] = head.split('\r\n');
  if (!/^HTTP\/1\.1 101 /.test(status)) {
    circuit.socket.destroy(new Error(`upgrade refused: ${status.slice(0, 100)}`));
    return;
  }
  const accept = fields
    .find((f) => f.toLowerCase().startsWith('sec-websocket-accept:'))
    ?.slice('sec-websocket-accept:'.length)
    .trim();
  if (accept !== circuit.accept) {
    circuit.socket.destroy(new Error('bad Sec-WebSocket-Accept'));
    return;
  }
  circuit.socket.setTimeout(0);
  circuits.add(circuit);
  circuit.onOpen();
}

/** Open one circuit; with `register`, resolve only once the relay accepted mining.register. */
function openOne(url: URL, register: boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    const key = randomBytes(16).toString('base64');
    const socket = connect({
      host: url.hostname,
      port: Number(url.port),
      noDelay: true,
      onread: {
        buffer: READ_BUFFER,
        // Reads start after 'connect', when `circuit` below exists.
        callback: (nread) => {
          onRead(circuit, READ_BUFFER.subarray(0, nread));
          return true;
        },
      },
    });
    const circuit: Circuit = {
      socket,
      head: Buffer.alloc(0),
      accept: createHash('sha1')
        .update(key + WS_GUID)
        .digest('base64'),
      onOpen: () => {
        if (!register) return resolve();
        circuit.registering = { resolve, reject };
        socket.write(clientFrame(OP_TEXT, REGISTER));
      },
      rest: null,
      registering: null,
      closeSent: false,
    };
    socket.setTimeout(HANDSHAKE_TIMEOUT_MS, () => socket.destroy(new Error('handshake timed out')));
    socket.once('connect', () => {
      socket.write(
        `GET ${url.pathname} HTTP/1.1\r\nHost: ${url.host}\r\nUpgrade: websocket\r\n` +
          `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      );
    });
    socket.on('error', (err) => reject(err)); // after ready: a no-op, 'close' counts it
    socket.once('close', () => {
      circuits.delete(circuit);
      if (!closing) unexpectedCloses += 1;
      reject(new Error('closed before ready'));
    });
  });
}

async function connectAll(
  msg: Extract<ToClients, { type: 'connect' }>,
): Promise<Extract<FromClients, { type: 'connected' }>> {
  closing = false;
  unexpectedCloses = 0;
  const url = new URL(msg.url);
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
        openOne(url, msg.register)
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
  const all = [...circuits];
  const closed = all.map(
    (c) =>
      new Promise<void>((resolve) => {
        if (c.socket.destroyed) resolve();
        else c.socket.once('close', () => resolve());
      }),
  );
  // The close handshake: the server answers with its close frame and ends the connection.
  for (const c of all) sendClose(c, 1000);
  // A peer that does not answer the close handshake must not hold the benchmark up.
  const timer = setTimeout(() => {
    for (const c of circuits) c.socket.destroy();
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
      splitFrames = 0;
      return { type: 'clock', t: wallClockMs() };
    case 'count':
      return { type: 'count', received: receipts.get(msg.jobId)?.length ?? 0 };
    case 'report': {
      const { user, system } = process.cpuUsage(cpuMark);
      return {
        type: 'report',
        receipts,
        unexpectedCloses,
        cpuMs: (user + system) / 1000,
        splitFrames,
      };
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
