import { EventEmitter } from 'node:events';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, beforeEach, expect } from 'vitest';
import { StratumPool, type StratumPoolOptions } from '../../src/sources/stratum-pool.js';
import type {
  SourceJob,
  SourceState,
  UpstreamShare,
  UpstreamTerms,
  WorkSource,
  WorkSourceEvents,
} from '../../src/sources/work-source.js';
import {
  record,
  ScriptedPool,
  type ScriptedPoolOptions,
  waitForEvent,
} from '../helpers/scripted-pool.js';

/**
 * Shared set-up for the pool-client suites: scripted pools and clients with short timeouts,
 * all closed after each test, plus recorders for what the client emits and logs.
 */

const cleanups: (() => Promise<void>)[] = [];

// Timers that exist before any client does (vitest's own), taken once per file: a per-test
// baseline would absorb a leak from the previous test.
let baselineTimers: number | undefined;

beforeEach(() => {
  baselineTimers ??= timers();
});

afterEach(async () => {
  // Clients first, so the pools see orderly closes rather than reconnect attempts.
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  // Nothing may outlive a test: no socket, no server, no timer (reconnect, probe, request).
  await eventually(() => {
    const resources = process.getActiveResourcesInfo();
    expect(resources.filter((r) => /TCP|TLS/.test(r))).toEqual([]);
    expect(timers()).toBeLessThanOrEqual(baselineTimers ?? 0);
  }, 1000);
});

function timers(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
}

export const PASSWORD = 's3cret-pw';

export async function startPool(options: ScriptedPoolOptions = {}): Promise<ScriptedPool> {
  const pool = await ScriptedPool.start(options);
  cleanups.unshift(() => pool.close());
  return pool;
}

export interface Client {
  pool: StratumPool;
  terms: UpstreamTerms[];
  jobs: SourceJob[];
  states: SourceState[];
  messages: string[];
  /** Every emission in order, as "terms" / "job" / "state:live" etc. */
  order: string[];
  /** Log lines (JSON strings) at debug level and above. */
  logs: string[];
}

export function startClient(
  pools: (ScriptedPool | string)[],
  options: Partial<StratumPoolOptions> = {},
): Client {
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      logs.push(chunk.toString('utf8'));
      done();
    },
  });
  const pool = new StratumPool({
    pools: pools.map((p) => ({
      url: typeof p === 'string' ? p : p.url,
      user: 'alice.rig1',
      password: PASSWORD,
    })),
    agent: 'powbridge-test/1',
    requestTimeoutMs: 400,
    backoff: { minMs: 20, maxMs: 80 },
    primaryRetryMs: 100,
    random: () => 0.5,
    logger: pino({ level: 'debug' }, sink),
    ...options,
  });
  const order: string[] = [];
  pool.on('terms', () => order.push('terms'));
  pool.on('job', () => order.push('job'));
  pool.on('state', (state) => order.push(`state:${state}`));
  const client: Client = {
    pool,
    terms: record<WorkSourceEvents, 'terms'>(pool, 'terms'),
    jobs: record<WorkSourceEvents, 'job'>(pool, 'job'),
    states: record<WorkSourceEvents, 'state'>(pool, 'state'),
    messages: record<WorkSourceEvents, 'message'>(pool, 'message'),
    order,
    logs,
  };
  cleanups.push(() => pool.stop());
  pool.start();
  return client;
}

/** The next emission of `event` by the client that passes `test`. */
export function next<K extends keyof WorkSourceEvents>(
  source: WorkSource,
  event: K,
  test?: (args: WorkSourceEvents[K]) => boolean,
  timeoutMs?: number,
): Promise<WorkSourceEvents[K]> {
  return waitForEvent<WorkSourceEvents, K>(source, event, test, timeoutMs);
}

/** Resolves when the client is live. */
export function live(client: Client): Promise<unknown> {
  return next(client.pool, 'state', ([s]) => s === 'live');
}

export function share(session: number, overrides: Partial<UpstreamShare> = {}): UpstreamShare {
  return {
    session,
    jobId: 'job1',
    extranonce2: '00000001',
    ntime: '5f5e1000',
    nonce: 'deadbeef',
    ...overrides,
  };
}

/** Poll until `check` passes (or throws its last failure after `timeoutMs`). */
export async function eventually(check: () => void, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      check();
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }
}

interface VirtualWait {
  ms: number;
  due: number;
  release: () => void;
}

/**
 * A virtual clock for the pool client's own waits (its `sleep` option: backoff, reconnect
 * waits, primary probes). Each wait is held until the test fires it; the clock then jumps to
 * its end. Sockets and request timeouts stay real, so "how long until live" is measured in
 * waits the client chose, exactly, however loaded the machine is.
 */
export class VirtualClock {
  now = 0;
  private readonly pending: VirtualWait[] = [];
  private readonly events = new EventEmitter<{ wait: [] }>();

  readonly sleep = (ms: number, signal: AbortSignal): Promise<void> =>
    new Promise((resolve, reject) => {
      if (signal.aborted) {
        reject(new Error('aborted'));
        return;
      }
      const onAbort = () => {
        this.pending.splice(this.pending.indexOf(wait), 1);
        reject(new Error('aborted'));
      };
      const wait: VirtualWait = {
        ms,
        due: this.now + ms,
        release: () => {
          signal.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.pending.push(wait);
      this.events.emit('wait');
    });

  /** How many waits the client has pending now. */
  get waiting(): number {
    return this.pending.length;
  }

  /**
   * Wait (really) until the client waits on something, then jump to the end of its earliest
   * wait and let it go. Returns the length of that wait.
   */
  async fire(timeoutMs = 3000): Promise<number> {
    if (this.pending.length === 0) {
      await waitForEvent<{ wait: [] }, 'wait'>(this.events, 'wait', () => true, timeoutMs);
    }
    const wait = this.pending.reduce((a, b) => (b.due < a.due ? b : a));
    this.pending.splice(this.pending.indexOf(wait), 1);
    this.now = Math.max(this.now, wait.due);
    wait.release();
    return wait.ms;
  }
}
