import { type ChildProcess, fork } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, dirname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { RpcError } from '../../src/protocol/errors.js';
import { utcDay } from '../../src/tickets/keyring.js';
import { Redeemer } from '../../src/tickets/redeemer.js';
import { InfoPointCache, verifierKey } from '../../src/tickets/scheme.js';
import { SpentStore } from '../../src/tickets/spent-store.js';
import { acceptingKeyring } from './ticket-issue.js';

/**
 * Races on one spent-store file from several threads and processes at once, each with its
 * own SQLite connection, all released together by a start barrier. `redeem` redeems one
 * ticket over and over through a full Redeemer, by `redeemBatched` as the relay's
 * `ticket.redeem` does (src/tickets/ticket-desk.ts); `spend` walks one list of serials with
 * trySpend, so every serial is fought over by every participant.
 *
 * The barrier is a directory on disk (threads and processes alike can see it): each racer
 * drops a file in it and waits until there is one per racer, so the racers overlap however
 * late a busy machine delivers their `go` — not because they were told a start time.
 */

export type RaceSetup =
  | {
      mode: 'redeem';
      file: string;
      ticket: string;
      publicKeyHex: string;
      now: number;
      attempts: number;
    }
  | { mode: 'spend'; file: string; serials: number; day: number };

export interface RaceResult {
  /** Attempt numbers (redeem) or serial indices (spend) this participant won. */
  won: number[];
  /** Refusals by RpcError code (redeem) or 'spent' (spend). */
  refused: Record<string, number>;
  /** Date.now() when the racer reached the barrier, and when its last attempt ended. */
  startedAt: number;
  endedAt: number;
}

/** Where the racers meet before they start, and how many they are. */
export interface RaceBarrier {
  dir: string;
  racers: number;
}

export type ToParticipant =
  { type: 'setup'; setup: RaceSetup } | { type: 'go'; barrier: RaceBarrier };
export type FromParticipant =
  { type: 'ready' } | { type: 'done'; result: RaceResult } | { type: 'error'; message: string };

export function raceSerial(i: number): Uint8Array {
  return new Uint8Array(createHash('sha256').update(`race/${i}`).digest());
}

/** A racer: prepared, it races when told to go. */
export interface PreparedRace {
  go(barrier: RaceBarrier): Promise<RaceResult>;
  close(): Promise<void>;
}

/** Open the store and warm every cache, so the race itself is only the contested work. */
export function prepareRace(setup: RaceSetup): PreparedRace {
  const store = SpentStore.open(setup.file);
  /** A won attempt answers what it won: the attempt (redeem) or the serial index (spend). */
  let attempt: (n: number) => Promise<number | string> | number | string;
  let count: number;
  if (setup.mode === 'redeem') {
    const publicKey = new Uint8Array(Buffer.from(setup.publicKeyHex, 'hex'));
    const day = utcDay(setup.now);
    const infoPoints = new InfoPointCache();
    infoPoints.get(verifierKey(publicKey).keyId, day);
    const redeemer = new Redeemer({
      keyring: acceptingKeyring([{ publicKey, notBeforeDay: day - 10, notAfterDay: day + 10 }]),
      store,
      infoPoints,
    });
    attempt = async (n) => {
      try {
        await redeemer.redeemBatched(setup.ticket, setup.now);
        return n;
      } catch (err) {
        if (err instanceof RpcError) return String(err.code);
        throw err;
      }
    };
    count = setup.attempts;
  } else {
    const serials = Array.from({ length: setup.serials }, (_, i) => raceSerial(i));
    // Each racer walks the serials in its own order: in one shared order whoever leads once
    // stays ahead and wins everything, and the others would only ever meet spent serials.
    const order = shuffle(serials.map((_, i) => i));
    const keyId = new Uint8Array(8);
    attempt = async (n) => {
      const i = order[n] as number;
      const serial = serials[i] as Uint8Array;
      return (await store.trySpend({ serial, keyId, day: setup.day, at: 0 })).spent ? i : 'spent';
    };
    count = setup.serials;
  }
  return {
    async go(barrier) {
      const startedAt = Date.now();
      await meet(barrier);
      const result: RaceResult = { won: [], refused: {}, startedAt, endedAt: 0 };
      for (let i = 0; i < count; i++) {
        const outcome = await attempt(i);
        if (typeof outcome === 'number') result.won.push(outcome);
        else result.refused[outcome] = (result.refused[outcome] ?? 0) + 1;
      }
      result.endedAt = Date.now();
      return result;
    },
    close: () => store.close(),
  };
}

/** Check in at the barrier, then wait (without blocking this thread) until all have. */
async function meet({ dir, racers }: RaceBarrier): Promise<void> {
  writeFileSync(join(dir, randomUUID()), '');
  // The deadline only turns a racer that never came into an error instead of a hang.
  const deadline = Date.now() + 30_000;
  while (readdirSync(dir).length < racers) {
    if (Date.now() > deadline) {
      throw new Error(`race barrier: ${readdirSync(dir).length} of ${racers} racers came`);
    }
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

function shuffle<T>(items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [items[i], items[j]] = [items[j] as T, items[i] as T];
  }
  return items;
}

// ---- participants in other threads and processes -----------------------------------------

export interface Participant {
  send(message: ToParticipant): void;
  next(): Promise<FromParticipant>;
  stop(): Promise<void>;
}

const here = dirname(fileURLToPath(import.meta.url));
const entry = join(here, 'spend-race-participant.ts');
const tsxRoot = join(dirname(createRequire(import.meta.url).resolve('tsx')), '..');

/** Messages in arrival order; next() waits for the first one not yet taken. */
function inbox(
  subscribe: (push: (m: FromParticipant) => void, fail: (e: Error) => void) => void,
): () => Promise<FromParticipant> {
  const queued: FromParticipant[] = [];
  const waiting: { resolve(m: FromParticipant): void; reject(e: Error): void }[] = [];
  let failure: Error | null = null;
  subscribe(
    (message) => {
      const waiter = waiting.shift();
      if (waiter) waiter.resolve(message);
      else queued.push(message);
    },
    (error) => {
      failure = error;
      for (const waiter of waiting.splice(0)) waiter.reject(error);
    },
  );
  return () => {
    const message = queued.shift();
    if (message) return Promise.resolve(message);
    if (failure) return Promise.reject(failure);
    return new Promise((resolve, reject) => waiting.push({ resolve, reject }));
  };
}

/** A worker thread. Node 20 does not pass tsx's --import loader to workers: load it by API. */
export function startThread(): Participant {
  const api = pathToFileURL(join(tsxRoot, 'dist', 'esm', 'api', 'index.mjs')).href;
  const boot = `import(${JSON.stringify(api)}).then(({ tsImport }) => tsImport(${JSON.stringify(
    pathToFileURL(entry).href,
  )}, ${JSON.stringify(import.meta.url)}))`;
  const worker = new Worker(boot, { eval: true });
  const next = inbox((push, fail) => {
    worker.on('message', push);
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`race thread exited (${code})`)));
  });
  return {
    send: (message) => worker.postMessage(message),
    next,
    stop: async () => {
      await worker.terminate();
    },
  };
}

/** A child process running the participant through tsx's loader. */
export function startProcess(): Participant {
  const child: ChildProcess = fork(entry, [], {
    execArgv: ['--import', pathToFileURL(join(tsxRoot, 'dist', 'loader.mjs')).href],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const next = inbox((push, fail) => {
    child.on('message', (m) => push(m as FromParticipant));
    child.on('error', fail);
    child.on('exit', (code) => fail(new Error(`race process exited (${code})`)));
  });
  return {
    send: (message) => child.send(message),
    next,
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill();
      }),
  };
}

async function receive<T extends FromParticipant['type']>(
  participant: Participant,
  type: T,
): Promise<Extract<FromParticipant, { type: T }>> {
  const message = await participant.next();
  if (message.type === 'error') throw new Error(`race participant: ${message.message}`);
  if (message.type !== type) throw new Error(`race participant: ${message.type}, not ${type}`);
  return message as Extract<FromParticipant, { type: T }>;
}

/**
 * Set every participant up, then release them all (and this thread, if `local` is given)
 * through one barrier; returns each one's result, this thread's last.
 */
export async function race(
  participants: Participant[],
  setup: RaceSetup,
  local?: PreparedRace,
): Promise<RaceResult[]> {
  for (const p of participants) p.send({ type: 'setup', setup });
  await Promise.all(participants.map((p) => receive(p, 'ready')));
  const dir = mkdtempSync(`${setup.file}.barrier-`);
  try {
    const barrier = { dir, racers: participants.length + (local ? 1 : 0) };
    for (const p of participants) p.send({ type: 'go', barrier });
    const [mine, results] = await Promise.all([
      local?.go(barrier),
      Promise.all(participants.map(async (p) => (await receive(p, 'done')).result)),
    ]);
    return mine ? [...results, mine] : results;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
