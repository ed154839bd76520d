import { connect, type Socket } from 'node:net';
import { expect } from 'vitest';
import {
  type Call,
  encodeRequest,
  LineDecoder,
  type Method,
  type MethodParams,
  parseMessage,
  parseSubscribeResult,
} from '../../src/stratum/index.js';
import type { Job } from '../../src/work/job.js';

/** A scripted standard Stratum V1 miner for tests of the relay's and the client's Stratum ports. */
const WAIT_MS = 3_000;

/** Reject after `ms` so a missing message fails fast with a name instead of a test timeout. */
export function within<T>(promise: Promise<T>, what: string, ms = WAIT_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Wait until `check` holds: the relay sees a close a moment after the miner does. */
export function eventually(check: () => boolean, what: string, ms = WAIT_MS): Promise<void> {
  const done = new Promise<void>((resolve) => {
    const poll = () => (check() ? resolve() : void setTimeout(poll, 5));
    poll();
  });
  return within(done, what, ms);
}

/** A response as it was on the wire. */
export interface Reply {
  id: unknown;
  result?: unknown;
  error?: unknown;
}

/**
 * A scripted standard miner: a real TCP socket framed and parsed with the codec under
 * test. Responses are kept as raw JSON (to check the wire form of errors); notifications are
 * parsed and queued per method.
 */
export class TestMiner {
  /** Notification methods in arrival order. */
  readonly methods: string[] = [];
  /** Lines from the relay the codec could not read: must stay empty. */
  readonly garbage: string[] = [];
  readonly closed: Promise<void>;
  open = true;
  private readonly queues = new Map<string, unknown[]>();
  private readonly waiters = new Map<string, ((params: unknown) => void)[]>();
  private readonly replies = new Map<string, (reply: Reply) => void>();
  private nextId = 1;

  private constructor(readonly socket: Socket) {
    const decoder = new LineDecoder({ maxLineBytes: 1 << 20 });
    decoder.on('line', (line) => this.onLine(line));
    decoder.on('error', (error) => this.garbage.push(error.message));
    socket.on('data', (chunk: Buffer) => decoder.push(chunk));
    socket.on('error', () => {}); // resets from the relay are what some tests expect
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        this.open = false;
        resolve();
      }),
    );
  }

  static connect(port: number): Promise<TestMiner> {
    return new Promise((resolve, reject) => {
      const socket = connect(port, '127.0.0.1', () => {
        socket.off('error', reject);
        resolve(new TestMiner(socket));
      });
      socket.once('error', reject);
    });
  }

  /** A well-formed request through the codec's encoder. */
  call(call: Call): Promise<Reply> {
    const id = this.nextId++;
    return this.await(id, encodeRequest(id, call));
  }

  /** Any method and params, as given, with an optional id of any type. */
  request(method: string, params: unknown[] = [], id: number | string = this.nextId++) {
    return this.await(id, `${JSON.stringify({ id, method, params })}\n`);
  }

  /** The next notification of `method` (queued ones first). */
  next<M extends Method>(method: M): Promise<MethodParams[M]> {
    const queued = this.queues.get(method);
    if (queued && queued.length > 0) return Promise.resolve(queued.shift() as MethodParams[M]);
    const waiting = new Promise<MethodParams[M]>((resolve) => {
      const list = this.waiters.get(method) ?? [];
      list.push((params) => resolve(params as MethodParams[M]));
      this.waiters.set(method, list);
    });
    return within(waiting, method);
  }

  queued(method: Method): number {
    return this.queues.get(method)?.length ?? 0;
  }

  send(data: string | Uint8Array): void {
    this.socket.write(data);
  }

  close(): Promise<void> {
    this.socket.destroy();
    return this.closed;
  }

  private await(id: number | string, line: string): Promise<Reply> {
    const reply = new Promise<Reply>((resolve) => this.replies.set(JSON.stringify(id), resolve));
    this.socket.write(line);
    return within(reply, `the answer to request ${id}`);
  }

  private onLine(line: string): void {
    const parsed = parseMessage(line);
    if (!parsed.ok) {
      this.garbage.push(line);
      return;
    }
    const message = parsed.value;
    if (message.kind === 'response') {
      const raw = JSON.parse(line) as Reply;
      const key = JSON.stringify(raw.id);
      const resolve = this.replies.get(key);
      this.replies.delete(key);
      resolve?.(raw);
      return;
    }
    if (message.kind !== 'notification') {
      this.garbage.push(line); // the relay sends miners no requests
      return;
    }
    this.methods.push(message.method);
    const waiter = this.waiters.get(message.method)?.shift();
    if (waiter) waiter(message.params);
    else {
      const queue = this.queues.get(message.method) ?? [];
      queue.push(message.params);
      this.queues.set(message.method, queue);
    }
  }
}

export interface Work {
  extranonce1: string;
  extranonce2Size: number;
  difficulty: number;
  job: Job;
}

/** configure (when a mask is given) → subscribe → [extranonce.subscribe] → authorize → work. */
export async function handshake(
  miner: TestMiner,
  options: { mask?: number; extranonceUpdates?: boolean } = {},
): Promise<Work> {
  if (options.mask !== undefined) {
    const configured = await miner.call({
      method: 'mining.configure',
      params: {
        extensions: ['version-rolling'],
        versionRolling: { mask: options.mask, minBitCount: 2 },
        other: {},
      },
    });
    expect(configured.error).toBeNull();
  }
  const subscribed = await miner.call({
    method: 'mining.subscribe',
    params: { agent: 'test-miner/1.0', sessionId: null },
  });
  const result = parseSubscribeResult(subscribed.result);
  if (!result.ok) throw new Error(result.error);
  if (options.extranonceUpdates) {
    expect((await miner.call({ method: 'mining.extranonce.subscribe', params: {} })).result).toBe(
      true,
    );
  }
  const authorized = await miner.call({
    method: 'mining.authorize',
    params: { user: 'any.worker', password: 'x' },
  });
  expect(authorized.result).toBe(true);
  const { difficulty } = await miner.next('mining.set_difficulty');
  const job = await miner.next('mining.notify');
  return { ...result.value, difficulty, job };
}
