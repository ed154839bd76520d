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
import type { Algorithm } from '../../src/work/algorithm.js';
import { coinbaseAndRoot, prepareJob, shareHeader } from '../../src/work/header.js';
import { parseHex, u32ToHex } from '../../src/work/hex.js';
import type { Job } from '../../src/work/job.js';
import { powHash } from '../../src/work/pow.js';
import { difficultyToTarget, hashMeetsTarget } from '../../src/work/target.js';

/**
 * Scripted standard Stratum V1 miners for tests of the relay's and the client's Stratum ports:
 * TestMiner speaks the protocol line by line; CpuMiner mines with real hashes, following the
 * work the way cpuminer and cgminer do.
 */
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
  private readonly listeners: ((method: string, params: unknown) => void)[] = [];
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

  /** Every notification from now on, in arrival order across methods (they still queue too). */
  onNotification(listener: (method: string, params: unknown) => void): void {
    this.listeners.push(listener);
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
    for (const listener of this.listeners) listener(message.method, message.params);
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

/** Simulated time for a relay's vardiff: a scripted miner moves it on as it hashes. */
export class SimClock {
  private seconds = 0;
  readonly now = (): number => this.seconds;

  advance(seconds: number): void {
    this.seconds += seconds;
  }
}

/** A share a CpuMiner sent, and how the relay answered (undefined while unanswered). */
export interface MinedShare {
  jobId: string;
  /** The difficulty the miner believed in force for the job: the one its notify came after. */
  difficulty: number;
  /** Clock time it was found. */
  at: number;
  /** Whether a higher set_difficulty had already arrived when it was sent (old work). */
  oldWork: boolean;
  code?: number | null;
}

interface ThreadWork {
  job: Job;
  difficulty: number;
  target: bigint;
  extranonce2: string;
  header: Uint8Array;
  view: DataView;
  nonce: number;
  scanned: number;
}

interface MinerThread {
  work: ThreadWork | null;
  /** The job's data changed (clean job or new prevhash): drop the work now. */
  restart: boolean;
  /** The scan returned (a share, or its nonce range done): look for newer work. */
  scanDone: boolean;
}

export interface CpuMinerOptions {
  algorithm?: Algorithm;
  /** Hash rate in the clock's time: every hash moves `clock` on by 1 / hashesPerSecond. */
  hashesPerSecond: number;
  clock: SimClock;
  /** Mining threads (cpuminer -t), each with its own work (default 4). */
  threads?: number;
  /** Nonces a thread scans before it looks for newer work (cpuminer: about a minute's worth). */
  scanNonces?: number;
  /** Shares sent before waiting for the oldest answer (default 1: wait for each). */
  pipeline?: number;
}

/**
 * A standard CPU miner with real hashing, behaving as cpuminer (and cgminer) do with Stratum:
 * `mining.set_difficulty` only sets the difficulty of the *next* `mining.notify`; each thread
 * keeps mining the work it has at that work's difficulty, and takes the newest job only when
 * its scan returns (it found a share, or its nonce range is done); only a clean job or a new
 * prevhash restarts the threads at once. Each new work gets the next extranonce2 (cpuminer
 * increments it per work), so shares are never duplicates. It submits every hash meeting the
 * difficulty it believes in for that work, as a real miner does.
 */
export class CpuMiner {
  readonly shares: MinedShare[] = [];
  /** Every set_difficulty received, with the clock time it came. */
  readonly retargets: { difficulty: number; at: number }[] = [];
  private readonly algorithm: Algorithm;
  private readonly threads: MinerThread[];
  private readonly scanNonces: number;
  private readonly pipeline: number;
  private readonly pending: Promise<void>[] = [];
  private readonly extranonce1: Uint8Array;
  private nextDifficulty: number;
  private latest: { job: Job; difficulty: number };
  private extranonce2Counter = 0;

  constructor(
    private readonly miner: TestMiner,
    private readonly work: Work,
    private readonly options: CpuMinerOptions,
  ) {
    this.algorithm = options.algorithm ?? 'sha256d';
    this.threads = Array.from({ length: options.threads ?? 4 }, () => ({
      work: null,
      restart: false,
      scanDone: false,
    }));
    this.scanNonces = options.scanNonces ?? 60 * options.hashesPerSecond;
    this.pipeline = options.pipeline ?? 1;
    this.extranonce1 = parseHex(work.extranonce1, 'extranonce1');
    this.nextDifficulty = work.difficulty;
    this.latest = { job: work.job, difficulty: work.difficulty };
    miner.onNotification((method, params) => this.onNotification(method, params));
  }

  /** The difficulty the next notify will carry (the last set_difficulty). */
  get difficulty(): number {
    return this.nextDifficulty;
  }

  get accepted(): MinedShare[] {
    return this.shares.filter((s) => s.code === null);
  }

  get rejected(): MinedShare[] {
    return this.shares.filter((s) => s.code !== null && s.code !== undefined);
  }

  /** Hash until `until()` holds (checked between hashes), then wait for every answer. */
  async mine(until: () => boolean, maxHashes = 10_000_000): Promise<void> {
    for (let hashes = 0; !until();) {
      if (!this.miner.open) throw new Error('the relay closed the connection');
      for (const thread of this.threads) {
        const share = this.hash(thread);
        if (share) await this.submit(share);
      }
      hashes += this.threads.length;
      if (hashes > maxHashes) throw new Error(`no end after ${maxHashes} hashes`);
      // Let the relay's lines in, as the miner's network thread would meanwhile.
      if (hashes % 256 < this.threads.length) await new Promise((r) => setImmediate(r));
    }
    await Promise.all(this.pending.splice(0));
  }

  private onNotification(method: string, params: unknown): void {
    if (method === 'mining.set_difficulty') {
      const { difficulty } = params as MethodParams['mining.set_difficulty'];
      this.nextDifficulty = difficulty;
      this.retargets.push({ difficulty, at: this.options.clock.now() });
    } else if (method === 'mining.notify') {
      const job = params as Job;
      const restart = job.clean || job.prevhash !== this.latest.job.prevhash;
      this.latest = { job, difficulty: this.nextDifficulty };
      if (restart) for (const thread of this.threads) thread.restart = true;
    }
  }

  /** One hash on the thread's work; the share when it meets the work's difficulty. */
  private hash(thread: MinerThread): FoundShare | null {
    if (thread.work === null || thread.restart) this.take(thread);
    else if (thread.scanDone && thread.work.job.jobId !== this.latest.job.jobId) this.take(thread);
    thread.scanDone = false;
    const work = thread.work as ThreadWork;
    const nonce = work.nonce;
    work.view.setUint32(76, nonce, true);
    const hash = powHash(this.algorithm, work.header);
    this.options.clock.advance(1 / this.options.hashesPerSecond);
    work.nonce = (work.nonce + 1) >>> 0;
    work.scanned += 1;
    if (work.scanned >= this.scanNonces) {
      work.scanned = 0;
      thread.scanDone = true;
    }
    if (!hashMeetsTarget(hash, work.target)) return null;
    thread.scanDone = true;
    return {
      jobId: work.job.jobId,
      extranonce2: work.extranonce2,
      ntime: work.job.ntime,
      nonce: u32ToHex(nonce),
      difficulty: work.difficulty,
      at: this.options.clock.now(),
      oldWork: this.nextDifficulty > work.difficulty,
    };
  }

  /** New work from the newest job, at the difficulty its notify came with. */
  private take(thread: MinerThread): void {
    const { job, difficulty } = this.latest;
    this.extranonce2Counter += 1;
    const size = this.work.extranonce2Size;
    const extranonce2 = (this.extranonce2Counter % 2 ** (8 * Math.min(size, 6)))
      .toString(16)
      .padStart(size * 2, '0');
    const prepared = prepareJob(job);
    const { merkleRoot } = coinbaseAndRoot(
      prepared,
      this.extranonce1,
      parseHex(extranonce2, 'extranonce2'),
    );
    const header = shareHeader(
      prepared,
      merkleRoot,
      { ntime: job.ntime, nonce: '00000000' },
      prepared.version,
    );
    thread.work = {
      job,
      difficulty,
      target: difficultyToTarget(difficulty, this.algorithm),
      extranonce2,
      header,
      view: new DataView(header.buffer, header.byteOffset, header.byteLength),
      nonce: 0,
      scanned: 0,
    };
    thread.restart = false;
  }

  private async submit(found: FoundShare): Promise<void> {
    const { extranonce2, ntime, nonce, ...share } = found;
    const record: MinedShare = { ...share };
    this.shares.push(record);
    const answered = this.miner
      .request('mining.submit', ['cpu.worker', share.jobId, extranonce2, ntime, nonce])
      .then((reply) => {
        record.code = reply.error === null ? null : replyCode(reply);
      });
    this.pending.push(answered);
    if (this.pending.length >= this.pipeline) await this.pending.shift();
  }
}

/** A share as found: what is submitted beside what is recorded. */
type FoundShare = Omit<MinedShare, 'code'> & { extranonce2: string; ntime: string; nonce: string };

/** The code of an error reply, array form ([code, message, data]) or object form. */
function replyCode(reply: Reply): number {
  const error = reply.error;
  if (Array.isArray(error)) return Number(error[0]);
  if (typeof error === 'object' && error !== null && 'code' in error) return Number(error.code);
  return Number.NaN;
}
