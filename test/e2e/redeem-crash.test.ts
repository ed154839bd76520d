import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CircuitClient } from '../../src/client/circuit-client.js';
import { RpcError, RpcErrorCode } from '../../src/protocol/errors.js';
import { fixtureRelayKeys } from '../helpers/rsa-keys.js';
import { RelayProcesses, offlineRelayConfig } from '../helpers/relay-process.js';
import { seededRandom } from '../helpers/seeded-random.js';
import { issueTicketV2 } from '../helpers/ticket-v2.js';

/**
 * Crash safety of `ticket.redeem` (docs/design.md §6.3): the relay runs as a child process
 * (`powbridge relay`, built dist/), clients redeem in a loop (one at a time, the same ticket
 * on several circuits at once, retries of tickets whose answer was lost, replays of spent
 * ones), and the relay is SIGKILLed at a random point of that traffic (once the round has
 * had a random number of answers, so other requests are in flight), then restarted on the
 * same data dir. The kill point is counted in answers, not in milliseconds, so a slow or
 * busy machine shifts it in time but cannot make it miss the redemptions.
 * Afterwards, with no relay running, the spent store is read directly and must hold the
 * serial of every ticket a client was granted; no ticket may ever be granted twice, across
 * any number of restarts; and whatever the store holds beyond the grants must come from an
 * attempt whose answer was lost in a kill (the spend committed, the reply never arrived).
 *
 * SIGKILL ends the process, not the machine: writes already handed to the kernel survive
 * it, so this checks that the relay commits before it answers and that a restart sees every
 * commit, not fsync itself (which synchronous = FULL covers and only a power cut could test).
 *
 * The test process is the ticket signer itself (KeyStore + the RSA key), so no mining
 * is needed; the relay's work source points at a closed port and stays down, which does not
 * matter: redeeming needs neither work nor registration.
 *
 * Takes about 15–17 s on the 2-core dev VM (≈ 2.7 s keys and 800 tickets, ≈ 1 s per round,
 * ≈ 2 s for the last start); about 35 s with a second copy running beside it. A failure
 * message names the seed; REDEEM_CRASH_SEED=<seed> reruns the same kill points (the
 * interleaving still varies with timing).
 */

const TICKETS = 800;
const ROUNDS = 10;
/** Kill on the round's n-th answer, n uniform in 1..KILL_MAX_ANSWERS (a round gives ~100–200). */
const KILL_MAX_ANSWERS = 120;
const CIRCUITS = 3;
/** Spent tickets replayed per round: enough to cross restarts, few enough to spare the CPU. */
const REPLAYS_PER_ROUND = 12;

type Outcome = 'grant' | 'spent' | 'unknown' | 'error';

interface TicketLog {
  index: number;
  text: string;
  serialHex: string;
  attempts: number;
  /** Tokens of the grants this ticket received; more than one is the bug we look for. */
  grants: string[];
  /** Refusals with code 32. */
  spent: number;
  /** Attempts with no answer: the relay died first (the spend may or may not have committed). */
  unknown: number;
}

interface RoundStats {
  round: number;
  /** The answer of the round the relay is killed on. */
  killAtAnswer: number;
  sent: number;
  answers: number;
  grants: number;
  unknown: number;
  /** Attempts at tickets whose every attempt in earlier rounds went unanswered. */
  retried: number;
  inFlight: number;
  inFlightAtKill: number;
}

const seed = Number(process.env.REDEEM_CRASH_SEED ?? Math.floor(Math.random() * 2 ** 32));
const random = seededRandom(seed);
const dir = mkdtempSync(join(tmpdir(), 'powbridge-redeem-crash-'));
const dataDir = join(dir, 'data');
const configFile = join(dir, 'relay.toml');
const spentFile = join(dataDir, 'spent.sqlite');
const tickets: TicketLog[] = [];
/** Answers that are neither a grant nor 32: any is a failure (reported with the ticket). */
const unexpected: string[] = [];
/** The running round's kill: fired by the attempt that brings its answers to `answers`. */
let killPoint: { answers: number; fire: () => void } | null = null;
const relays = new RelayProcesses();

function readSpent(): Set<string> {
  const db = new Database(spentFile, { readonly: true, fileMustExist: true });
  try {
    const rows = db.prepare<[], Buffer>('SELECT serial FROM spent').pluck().all();
    return new Set(rows.map((serial) => serial.toString('hex')));
  } finally {
    db.close();
  }
}

async function attempt(client: CircuitClient, t: TicketLog, stats: RoundStats): Promise<Outcome> {
  t.attempts++;
  stats.sent++;
  stats.inFlight++;
  try {
    const grant = await client.request('ticket.redeem', { ticket: t.text });
    t.grants.push(grant.token);
    stats.answers++;
    stats.grants++;
    return 'grant';
  } catch (err) {
    if (err instanceof RpcError) {
      stats.answers++;
      if (err.code === RpcErrorCode.ticketSpent) {
        t.spent++;
        return 'spent';
      }
      unexpected.push(`round ${stats.round} ticket ${t.index}: error ${err.code} ${err.message}`);
      return 'error';
    }
    // Circuit closed or timed out: the relay died with the request somewhere between our
    // socket and its reply.
    t.unknown++;
    stats.unknown++;
    return 'unknown';
  } finally {
    stats.inFlight--;
    if (killPoint !== null && stats.answers >= killPoint.answers) killPoint.fire();
  }
}

async function connectAll(wsUrl: string, count: number): Promise<(CircuitClient | null)[]> {
  const settled = await Promise.allSettled(
    Array.from({ length: count }, () => CircuitClient.connect(wsUrl, { timeoutMs: 10_000 })),
  );
  // A kill can land before a circuit is up; that circuit simply sits the round out.
  return settled.map((s) => (s.status === 'fulfilled' ? s.value : null));
}

async function closeAll(clients: (CircuitClient | null)[]): Promise<void> {
  await Promise.all(clients.map((c) => (c ? c.close() : Promise.resolve())));
}

function pickRandom<T>(items: readonly T[]): T | undefined {
  return items[Math.floor(random() * items.length)];
}

beforeAll(async () => {
  const { day, issuing } = await fixtureRelayKeys(dataDir);
  for (let index = 0; index < TICKETS; index++) {
    const { text, serial } = issueTicketV2(issuing, day);
    tickets.push({
      index,
      text,
      serialHex: Buffer.from(serial).toString('hex'),
      attempts: 0,
      grants: [],
      spent: 0,
      unknown: 0,
    });
  }

  writeFileSync(
    configFile,
    offlineRelayConfig(dataDir, [
      '[limits]',
      // The default 20 requests/s per circuit would close our circuits within a round, and the
      // relay-wide budgets for redemptions and fresh circuits would shed them (38, 503): this
      // test is about crash safety, not load shedding (test/relay/relay-load.test.ts).
      'maxRequestsPerSecond = 100000',
      'maxVerificationsPerSecond = 100000',
      'maxUnregistered = 100000',
      'maxUnregisteredRequestsPerSecond = 100000',
    ]),
  );
}, 60_000);

afterAll(async () => {
  await relays.killAll();
  rmSync(dir, { recursive: true, force: true });
});

describe('ticket.redeem across SIGKILL and restart', () => {
  it('never grants without a durable spend and never grants a ticket twice', async () => {
    const rounds: RoundStats[] = [];
    let nextFresh = 0;
    let freshLimit = 0;
    // Fresh tickets are rationed per round, so that every round has spends to commit when
    // its kill lands, however fast the relay redeems; once a round's share is used up, the
    // one-at-a-time workers replay answered tickets instead, which keeps requests in flight.
    const fresh = (): TicketLog | undefined =>
      nextFresh < freshLimit ? tickets[nextFresh++] : undefined;
    const context = () => `seed ${seed}, rounds ${JSON.stringify(rounds)}`;

    for (let round = 1; round <= ROUNDS; round++) {
      const killAtAnswer = 1 + Math.floor(random() * KILL_MAX_ANSWERS);
      const stats: RoundStats = {
        round,
        killAtAnswer,
        sent: 0,
        answers: 0,
        grants: 0,
        unknown: 0,
        retried: 0,
        inFlight: 0,
        inFlightAtKill: 0,
      };
      rounds.push(stats);
      freshLimit = nextFresh + Math.ceil((TICKETS - nextFresh) / (ROUNDS - round + 1));
      // Chosen before the round: tickets whose every earlier attempt went unanswered, and
      // tickets with a definite answer (granted or 32) that must stay spent after a restart.
      const retries = tickets.filter((t) => t.unknown > 0 && t.grants.length + t.spent === 0);
      const answered = tickets.filter((t) => t.grants.length + t.spent > 0);

      const relay = await relays.spawn(configFile);
      let killed = false;
      let killDone = (): void => {};
      const kill = new Promise<void>((resolve) => (killDone = resolve));
      const fire = (): void => {
        if (killed) return;
        killed = true;
        stats.inFlightAtKill = stats.inFlight;
        relay.child.kill('SIGKILL');
        killDone();
      };
      killPoint = { answers: killAtAnswer, fire };

      const clients = await connectAll(relay.circuitUrl, CIRCUITS);
      const [first, second, third] = clients;
      const running = (c: CircuitClient | null | undefined): c is CircuitClient =>
        !killed && c !== null && c !== undefined && c.open;

      const workers: Promise<void>[] = [
        // Retries of lost answers first, then fresh tickets, then replays; one at a time.
        (async () => {
          while (running(first)) {
            const retry = retries.shift();
            if (retry) stats.retried++;
            const t = retry ?? fresh() ?? pickRandom(answered);
            if (!t) return;
            await attempt(first, t, stats);
          }
        })(),
        // Fresh tickets, then replays, one at a time, on a second circuit.
        (async () => {
          while (running(second)) {
            const t = fresh() ?? pickRandom(answered);
            if (!t) return;
            await attempt(second, t, stats);
          }
        })(),
        // One ticket on every circuit at once, twice on one of them: at most one may win.
        (async () => {
          while (running(third)) {
            const t = fresh();
            if (!t) return;
            const targets = [...clients, third].filter(
              (c): c is CircuitClient => c !== null && c.open,
            );
            await Promise.all(targets.map((c) => attempt(c, t, stats)));
          }
        })(),
        // Tickets answered in earlier rounds, i.e. before a restart: must come back 32 (any
        // ticket's second grant also fails the check after the rounds).
        (async () => {
          for (let i = 0; i < REPLAYS_PER_ROUND && running(third); i++) {
            const t = pickRandom(answered);
            if (!t) return;
            const before = t.grants.length;
            await attempt(third, t, stats);
            if (t.grants.length > before) {
              unexpected.push(`round ${round}: ticket ${t.index} granted again after a restart`);
            }
          }
        })(),
      ];

      // A round can run out of tickets before its kill point (the first has none to replay):
      // then the kill comes when the workers are done.
      void Promise.all(workers).then(fire);
      await kill;
      killPoint = null;
      const { code, signal } = await relay.exited;
      // Killed by us, not dead of something else before the kill.
      expect({ code, signal }, relay.output()).toEqual({ code: null, signal: 'SIGKILL' });
      await Promise.all(workers);
      await closeAll(clients);

      // After each crash: every grant so far is on disk.
      const spent = readSpent();
      const missing = tickets.filter((t) => t.grants.length > 0 && !spent.has(t.serialHex));
      expect(
        missing.map((t) => t.index),
        `granted but not in the spent store after round ${round}; ${context()}`,
      ).toEqual([]);
    }

    expect(unexpected, context()).toEqual([]);
    // The kills must land while redemptions are under way, or this tested nothing.
    const midFlight = rounds.filter((r) => r.inFlightAtKill > 0 && r.answers > 0);
    expect(midFlight.length, context()).toBeGreaterThan(0);
    expect(
      rounds.reduce((n, r) => n + r.unknown, 0),
      context(),
    ).toBeGreaterThan(0);

    // ---- the store after the last crash, relay stopped -------------------------------------
    const spent = readSpent();
    const bySerial = new Map(tickets.map((t) => [t.serialHex, t]));
    const granted = tickets.filter((t) => t.grants.length > 0);
    expect(
      tickets.filter((t) => t.grants.length > 1).map((t) => t.index),
      `granted twice; ${context()}`,
    ).toEqual([]);
    expect(granted.length, context()).toBeGreaterThan(0);
    // store ⊇ granted, and ⊇ refused with 32 (a refusal means the store already had it).
    expect(
      tickets
        .filter((t) => t.grants.length + t.spent > 0 && !spent.has(t.serialHex))
        .map((t) => t.index),
      context(),
    ).toEqual([]);
    // store ⊆ attempted; and a spend nobody was granted must come from an answer lost in a kill.
    for (const serial of spent) {
      const t = bySerial.get(serial);
      expect(t, `unknown serial ${serial} in the store`).toBeDefined();
      expect(t?.attempts, `ticket ${t?.index} in the store but never sent`).toBeGreaterThan(0);
      if (t && t.grants.length === 0) {
        expect(
          t.unknown,
          `ticket ${t.index} spent without a grant or a lost answer`,
        ).toBeGreaterThan(0);
      }
    }
    // Every token is a distinct grant.
    const tokens = granted.flatMap((t) => t.grants);
    expect(new Set(tokens).size).toBe(tokens.length);
    const lostGrants = [...spent].filter((s) => bySerial.get(s)?.grants.length === 0).length;

    // ---- one more start: every ticket once more, and then again -------------------------
    const relay = await relays.spawn(configFile);
    const clients = (await connectAll(relay.circuitUrl, CIRCUITS)).filter(
      (c): c is CircuitClient => c !== null,
    );
    expect(clients).toHaveLength(CIRCUITS);
    const final: RoundStats = {
      round: ROUNDS + 1,
      killAtAnswer: 0,
      sent: 0,
      answers: 0,
      grants: 0,
      unknown: 0,
      retried: 0,
      inFlight: 0,
      inFlightAtKill: 0,
    };
    const finalOutcome = new Map<TicketLog, Outcome>();
    const pass = async (list: readonly TicketLog[], into: Map<TicketLog, Outcome>) => {
      let at = 0;
      await Promise.all(
        clients.map(async (client) => {
          for (let t = list[at++]; t; t = list[at++]) into.set(t, await attempt(client, t, final));
        }),
      );
    };
    await pass(tickets, finalOutcome);
    // In the store → 32; not in it (never sent, or its only attempts died before the
    // commit) → exactly one grant now.
    const wrong = tickets.filter(
      (t) => finalOutcome.get(t) !== (spent.has(t.serialHex) ? 'spent' : 'grant'),
    );
    expect(
      wrong.map((t) => `${t.index}: ${finalOutcome.get(t)}, in store ${spent.has(t.serialHex)}`),
      context(),
    ).toEqual([]);
    const grantedNow = tickets.filter((t) => finalOutcome.get(t) === 'grant');
    const secondOutcome = new Map<TicketLog, Outcome>();
    await pass(grantedNow, secondOutcome);
    expect([...secondOutcome.values()].filter((o) => o !== 'spent')).toEqual([]);
    expect(unexpected, context()).toEqual([]);
    expect(tickets.filter((t) => t.grants.length > 1).map((t) => t.index)).toEqual([]);
    await closeAll(clients);

    relay.child.kill('SIGTERM');
    expect((await relay.exited).code, relay.output()).toBe(0);
    // Now every ticket is spent, each exactly once.
    const after = readSpent();
    expect(after.size).toBe(TICKETS);
    expect(tickets.filter((t) => !after.has(t.serialHex)).map((t) => t.index)).toEqual([]);

    console.log(
      `redeem-crash: seed ${seed}; ${rounds.length} kills; ` +
        `in flight at kill: ${rounds.map((r) => r.inFlightAtKill).join(',')}; ` +
        `answers per round: ${rounds.map((r) => r.answers).join(',')}; ` +
        `unknown: ${rounds.reduce((n, r) => n + r.unknown, 0)}; ` +
        `retried: ${rounds.reduce((n, r) => n + r.retried, 0)}; ` +
        `granted before the last start: ${granted.length}; spent without grant: ${lostGrants}; ` +
        `fresh tickets used in rounds: ${nextFresh}/${TICKETS}`,
    );
  }, 90_000);
});
