import { randomBytes } from 'node:crypto';
import WebSocket from 'ws';
import { MODULUS_BYTES } from '../src/tickets/rsa-scheme.js';
import { encodeTicketV2 } from '../src/tickets/ticket-v2.js';
import { seededRandom } from '../test/helpers/seeded-random.js';

/**
 * The attackers of bench/flood.ts, forked by it so that their CPU work is not on the relay's
 * event loop (nor on the probe's). Two jobs:
 *
 * - `flood`: `redeemers` circuits each sending forged `ticket.redeem`s (right format, the
 *   relay's published key id, today's day, a random signature: the path that reaches the
 *   signature check) at the per-circuit limit, 20 a second, never registering; and `garbage`
 *   circuits each sending garbage frames at the same rate. Every circuit the relay closes or
 *   refuses (503 at the unregistered cap, 1008 at the register deadline or after too many
 *   invalid frames) is opened again 100 ms later: the attacker does not give up.
 * - `fuzz`: a few circuits sending fuzzed frames as fast as the relay reads them (random
 *   JSON, requests of every method with random params, forged tickets, invalid UTF-8, binary
 *   and oversized frames), reopened when closed, until `frames` have been sent.
 *
 * Not a benchmark on its own (bench/run.ts skips <name>-<part>.ts helpers).
 */

/** Parent → clients. */
export type ToClients =
  | { type: 'flood'; url: string; keyId: string; day: number; redeemers: number; garbage: number }
  | { type: 'stop' }
  | { type: 'fuzz'; url: string; keyId: string; day: number; frames: number; connections: number };

export interface FloodCounts {
  redeemsSent: number;
  garbageSent: number;
  /** Answers to forged redeems by error code (30 checked and refused, 38 shed, …). */
  answers: Record<string, number>;
  opened: number;
  /** Upgrades answered with an HTTP status instead of 101 (503 at the unregistered cap). */
  refusedUpgrades: Record<string, number>;
  /** Closes by the relay, by WebSocket close code. */
  closes: Record<string, number>;
  /** CPU time this process used for the flood (ms). */
  cpuMs: number;
}

/** Clients → parent. */
export type FromClients =
  | { type: 'stopped'; counts: FloodCounts }
  | { type: 'fuzzed'; sent: number; connections: number }
  | { type: 'progress'; sent: number };

const send = (msg: FromClients) => process.send?.(msg);
const REOPEN_MS = 100;
const SEND_INTERVAL_MS = 50;

function bump(counts: Record<string, number>, key: string | number): void {
  counts[String(key)] = (counts[String(key)] ?? 0) + 1;
}

/** Forged v2 tickets, made once: each has its own serial, none has a valid signature. */
function forgedTickets(keyId: string, day: number, count: number): string[] {
  return Array.from({ length: count }, () =>
    encodeTicketV2({
      keyId: Buffer.from(keyId, 'hex'),
      day,
      nonce: new Uint8Array(randomBytes(32)),
      signature: new Uint8Array(randomBytes(MODULUS_BYTES)),
    }),
  );
}

const CODE_RE = /"code":(-?\d+)/;

/** One circuit, opened again and again until stopped; `onOpen` starts its sending. */
function persistent(
  url: string,
  counts: FloodCounts,
  running: () => boolean,
  onOpen: (ws: WebSocket) => void,
  onMessage?: (data: Buffer) => void,
): void {
  const open = (): void => {
    if (!running()) return;
    const ws = new WebSocket(url, { perMessageDeflate: false });
    let again = false;
    const reopen = (): void => {
      if (again) return;
      again = true;
      setTimeout(open, REOPEN_MS);
    };
    ws.on('unexpected-response', (_request, response) => {
      bump(counts.refusedUpgrades, response.statusCode ?? 0);
      response.resume();
      ws.terminate();
      reopen();
    });
    ws.on('open', () => {
      counts.opened++;
      onOpen(ws);
    });
    if (onMessage) ws.on('message', onMessage);
    ws.on('close', (code) => {
      if (code !== 1006 || ws.readyState === WebSocket.CLOSED) bump(counts.closes, code);
      reopen();
    });
    ws.on('error', () => reopen());
  };
  open();
}

const GARBAGE: (string | Buffer)[] = [
  '{',
  'null',
  '[]',
  '{"jsonrpc":"2.0"}',
  '{"jsonrpc":"2.0","method":"mining.submit"}',
  '{"jsonrpc":"2.0","id":1,"method":"no.such.method","params":{}}',
  '{"jsonrpc":"2.0","id":2,"method":"mining.submit","params":{"jobId":1}}',
  'x'.repeat(2_000),
  Buffer.from([0, 1, 2, 3, 255]),
];

function flood(msg: Extract<ToClients, { type: 'flood' }>): void {
  const counts: FloodCounts = {
    redeemsSent: 0,
    garbageSent: 0,
    answers: {},
    opened: 0,
    refusedUpgrades: {},
    closes: {},
    cpuMs: 0,
  };
  const cpu = process.cpuUsage();
  let running = true;
  const timers: NodeJS.Timeout[] = [];
  const tickets = forgedTickets(msg.keyId, msg.day, 2_000);
  let next = 0;
  const onAnswer = (data: Buffer): void => {
    bump(counts.answers, CODE_RE.exec(data.toString('latin1'))?.[1] ?? 'result');
  };
  // A circuit's sends are spread over the interval so the flood is steady, not in bursts.
  const every = (ws: WebSocket, sendOne: () => void): void => {
    const start = setTimeout(() => {
      const timer = setInterval(() => {
        if (ws.readyState !== WebSocket.OPEN) return clearInterval(timer);
        sendOne();
      }, SEND_INTERVAL_MS);
      timers.push(timer);
    }, Math.random() * SEND_INTERVAL_MS);
    timers.push(start);
  };
  for (let i = 0; i < msg.redeemers; i++) {
    persistent(
      msg.url,
      counts,
      () => running,
      (ws) =>
        every(ws, () => {
          const ticket = tickets[next++ % tickets.length] ?? '';
          ws.send(
            `{"jsonrpc":"2.0","id":${next},"method":"ticket.redeem","params":{"ticket":"${ticket}"}}`,
          );
          counts.redeemsSent++;
        }),
      onAnswer,
    );
  }
  for (let i = 0; i < msg.garbage; i++) {
    persistent(
      msg.url,
      counts,
      () => running,
      (ws) =>
        every(ws, () => {
          ws.send(GARBAGE[Math.floor(Math.random() * GARBAGE.length)] ?? '{');
          counts.garbageSent++;
        }),
    );
  }
  stopFlood = () => {
    running = false;
    for (const timer of timers) clearTimeout(timer);
    const used = process.cpuUsage(cpu);
    counts.cpuMs = (used.user + used.system) / 1000;
    send({ type: 'stopped', counts });
  };
}

let stopFlood = (): void => {};

// ---- fuzz -----------------------------------------------------------------------------------

const METHODS = [
  'mining.register',
  'mining.submit',
  'ticket.redeem',
  'ticket.issue',
  'ticket.open',
  'ticket.finish',
  'mining.subscribe',
  '',
  '__proto__',
];

class Fuzzer {
  // Seeded: the fuzz is the same run after run.
  private readonly random = seededRandom(15);
  private readonly tickets: string[];

  constructor(keyId: string, day: number) {
    this.tickets = forgedTickets(keyId, day, 256);
  }

  private int(n: number): number {
    return Math.floor(this.random() * n);
  }

  private string(max: number): string {
    const length = this.int(max);
    let out = '';
    for (let i = 0; i < length; i++) out += String.fromCharCode(32 + this.int(95));
    return out;
  }

  private value(depth: number): unknown {
    switch (this.int(depth > 3 ? 5 : 8)) {
      case 0:
        return this.int(2 ** 31) - 2 ** 30;
      case 1:
        return this.random() * 1e308 * (this.random() < 0.5 ? -1 : 1);
      case 2:
        return this.string(64);
      case 3:
        return this.random() < 0.5;
      case 4:
        return null;
      case 5:
        return Array.from({ length: this.int(5) }, () => this.value(depth + 1));
      case 6:
        return this.tickets[this.int(this.tickets.length)];
      default: {
        const out: Record<string, unknown> = {};
        for (let i = this.int(6); i > 0; i--) out[this.string(12)] = this.value(depth + 1);
        return out;
      }
    }
  }

  private params(method: string): unknown {
    switch (method) {
      case 'ticket.redeem':
        return {
          ticket: this.random() < 0.7 ? this.tickets[this.int(this.tickets.length)] : this.value(2),
        };
      case 'mining.register':
        return { agent: this.string(40), mode: this.random() < 0.5 ? 'donate' : this.string(8) };
      case 'mining.submit':
        return {
          jobId: this.string(10),
          extranonce2: randomBytes(this.int(10)).toString('hex'),
          ntime: randomBytes(4).toString('hex'),
          nonce: randomBytes(4).toString('hex'),
        };
      default:
        return this.value(0);
    }
  }

  /** One fuzzed frame: mostly requests, some raw garbage, a few binary or oversized. */
  frame(): string | Buffer {
    const kind = this.int(100);
    if (kind < 60) {
      const method = METHODS[this.int(METHODS.length)] ?? '';
      const id = this.random() < 0.9 ? this.int(1e6) : this.value(3);
      return JSON.stringify({ jsonrpc: '2.0', id, method, params: this.params(method) });
    }
    if (kind < 80) return JSON.stringify(this.value(0)) ?? 'null';
    if (kind < 92) return this.string(300);
    if (kind < 97) return randomBytes(1 + this.int(200));
    if (kind < 99) return `{"jsonrpc":"2.0","id":1,"params":${'['.repeat(5_000)}`;
    // Over maxFrameBytes: the relay closes with 1009 (one frame in a thousand).
    return this.int(10) === 0 ? 'y'.repeat(20_000) : this.string(2_000);
  }
}

async function fuzz(msg: Extract<ToClients, { type: 'fuzz' }>): Promise<void> {
  const fuzzer = new Fuzzer(msg.keyId, msg.day);
  let sent = 0;
  let connections = 0;
  let lastProgress = 0;
  const pause = () => new Promise((resolve) => setImmediate(resolve));
  const one = async (): Promise<void> => {
    while (sent < msg.frames) {
      const ws = new WebSocket(msg.url, { perMessageDeflate: false });
      ws.on('error', () => {});
      ws.on('unexpected-response', (_request, response) => {
        response.resume();
        ws.terminate();
      });
      const opened = await new Promise<boolean>((resolve) => {
        ws.once('open', () => resolve(true));
        ws.once('close', () => resolve(false));
      });
      if (!opened) {
        await new Promise((resolve) => setTimeout(resolve, REOPEN_MS));
        continue;
      }
      connections++;
      while (ws.readyState === WebSocket.OPEN && sent < msg.frames) {
        for (let i = 0; i < 64 && ws.readyState === WebSocket.OPEN; i++) {
          ws.send(fuzzer.frame());
          sent++;
        }
        // Only as fast as the relay reads: what it has not taken yet waits here.
        while (ws.readyState === WebSocket.OPEN && ws.bufferedAmount > 256 * 1024) {
          await new Promise((resolve) => setTimeout(resolve, 1));
        }
        await pause();
        if (sent - lastProgress >= 100_000) {
          lastProgress = sent;
          send({ type: 'progress', sent });
        }
      }
      ws.terminate();
    }
  };
  await Promise.all(Array.from({ length: msg.connections }, one));
  send({ type: 'fuzzed', sent, connections });
}

process.on('message', (message) => {
  const msg = message as ToClients;
  switch (msg.type) {
    case 'flood':
      flood(msg);
      return;
    case 'stop':
      stopFlood();
      return;
    case 'fuzz':
      fuzz(msg).catch((err: unknown) => {
        console.error(`flood clients: ${err instanceof Error ? err.message : String(err)}`);
        process.exit(1);
      });
  }
});
