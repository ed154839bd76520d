import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { parseIntoClientConfig } from 'pg-connection-string';
import { CircuitClient } from '../src/client/circuit-client.js';
import { RpcError } from '../src/protocol/errors.js';
import { startPostgres, type TestPostgres } from '../test/helpers/postgres.js';
import { type RelayFamily, startRelayFamily } from '../test/helpers/relay-family.js';
import { RelayProcesses } from '../test/helpers/relay-process.js';
import { issueTicketV2 } from '../test/helpers/ticket-v2.js';
import { CpuMeter, fsyncMs, postgresProcesses } from './family-cpu.js';
import { median, Report } from './lib/report.js';

/**
 * A relay family's redemption rate (issue 17): real `powbridge relay` processes (built dist/,
 * `npm run build` first) with 1, 2 and 3 instances on one PostgreSQL, beside one instance on
 * SQLite, all in the same run. Each redemption is the whole path: a v2 ticket over a circuit
 * (WebSocket), its signature checked, its serial spent (committed, fsync'd) and its grant
 * committed before the answer. Tickets are signed beforehand with the family's fixture RSA
 * key (test/helpers/ticket-v2.ts), off the measured window.
 *
 * The offered load is the same for every set-up: `--in-flight` redemptions outstanding at all
 * times, split evenly over the instances (4 circuits each), drawn from one queue of tickets
 * (a faster instance takes more). Set-ups take turns rep by rep, so a load that comes and goes
 * on the machine falls on all of them. PostgreSQL is the tests' server (test/helpers/
 * postgres.ts: its own directory, fsync and synchronous_commit on).
 *
 * Where the time goes: CPU seconds per 1,000 redemptions of the relay processes, the
 * PostgreSQL server (postmaster and backends, /proc) and this process (the clients), their sum
 * against the machine's cores, and PostgreSQL's WAL fsyncs per redemption (pg_stat_wal): the
 * relays, the database and the clients all share this machine's cores.
 *
 * Target: 3 instances ≥ 2 × one SQLite instance's rate.
 *
 *   npm run bench -- family [--json] [--reps 3] [--tickets 800] [--in-flight 96]
 *
 * Results: BENCHMARKS.md, "family".
 */

const { values: args } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    reps: { type: 'string', default: '3' },
    tickets: { type: 'string', default: '800' },
    'in-flight': { type: 'string', default: '96' },
  },
});

function positiveInt(text: string, flag: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${flag} must be a positive integer`);
  return n;
}

const REPS = positiveInt(args.reps, '--reps');
const TICKETS = positiveInt(args.tickets, '--tickets');
const IN_FLIGHT = positiveInt(args['in-flight'], '--in-flight');
const CIRCUITS_PER_INSTANCE = 4;
/** Redemptions before the first measurement of a set-up: JIT, pools, PostgreSQL's caches. */
const WARMUP_TICKETS = 200;
const report = new Report('family', args.json);

interface SetUp {
  name: string;
  engine: 'sqlite' | 'postgres';
  size: number;
  family?: RelayFamily;
  database?: string;
  samples: Sample[];
}

interface Sample {
  rate: number;
  /** CPU seconds per 1,000 redemptions. */
  relayCpu: number;
  postgresCpu: number;
  clientCpu: number;
  /** All CPU used ÷ (wall time × cores). */
  busy: number;
  /** PostgreSQL WAL fsyncs per redemption (NaN for SQLite). */
  walSyncs: number;
  /** Answers of 38 (tried again) per 1,000 redemptions. */
  shedPerThousand: number;
}

async function walSyncs(server: TestPostgres, database: string): Promise<number> {
  const client = new pg.Client({
    ...parseIntoClientConfig(server.url(database)),
    password: server.password,
  });
  await client.connect();
  try {
    const { rows } = await client.query<{ n: string }>(
      'SELECT wal_sync::text AS n FROM pg_stat_wal',
    );
    return Number(rows[0]?.n ?? Number.NaN);
  } finally {
    await client.end();
  }
}

/** The overload answer, and how long a client waits before trying the ticket again. */
const OVERLOADED = 38;
const SHED_PAUSE_MS = 50;
/** Answers of 38 in the current measurement. */
let sheds = 0;

/** Redeem every ticket through the family, IN_FLIGHT at a time; the seconds it took. */
async function redeemAll(family: RelayFamily, tickets: readonly string[]): Promise<number> {
  const circuits = await Promise.all(
    family.members.flatMap((m) =>
      Array.from({ length: CIRCUITS_PER_INSTANCE }, () =>
        CircuitClient.connect(m.relay.circuitUrl, { timeoutMs: 60_000 }),
      ),
    ),
  );
  const workers = circuits.flatMap((circuit, i) =>
    Array.from(
      // IN_FLIGHT split over the circuits, the remainder to the first ones.
      {
        length: Math.floor(IN_FLIGHT / circuits.length) + (i < IN_FLIGHT % circuits.length ? 1 : 0),
      },
      () => circuit,
    ),
  );
  let next = 0;
  const failures: string[] = [];
  const start = performance.now();
  await Promise.all(
    workers.map(async (circuit) => {
      for (let ticket = tickets[next++]; ticket !== undefined; ticket = tickets[next++]) {
        // 38 is the relay shedding load (its verification queue is full): nothing was decided,
        // so the client tries the same ticket again after a pause, as the CLI does.
        for (;;) {
          const shed = await circuit.request('ticket.redeem', { ticket }).then(
            () => false,
            (err: unknown) => {
              if (err instanceof RpcError && err.code === OVERLOADED) return true;
              failures.push(err instanceof RpcError ? `${err.code} ${err.message}` : String(err));
              return false;
            },
          );
          if (!shed) break;
          sheds++;
          await new Promise((resolve) => setTimeout(resolve, SHED_PAUSE_MS));
        }
      }
    }),
  );
  const seconds = (performance.now() - start) / 1000;
  await Promise.all(circuits.map((c) => c.close()));
  // Every ticket is fresh and valid: anything but a grant means the run measured something else.
  if (failures.length > 0) {
    throw new Error(
      `${failures.length} redemptions failed, e.g. ${failures.slice(0, 3).join('; ')}`,
    );
  }
  return seconds;
}

function makeTickets(family: RelayFamily, n: number): string[] {
  return Array.from({ length: n }, () => issueTicketV2(family.issuing, family.day).text);
}

async function measure(server: TestPostgres, setUp: SetUp): Promise<Sample> {
  const { family } = setUp;
  if (!family) throw new Error(`${setUp.name}: not started`);
  const tickets = makeTickets(family, TICKETS);
  const relayPids = family.members.flatMap((m) => (m.relay.child.pid ? [m.relay.child.pid] : []));
  const relayMeter = new CpuMeter(() => relayPids);
  const postgresMeter = new CpuMeter(postgresProcesses(server.port));
  const syncsBefore = setUp.database ? await walSyncs(server, setUp.database) : Number.NaN;
  relayMeter.start();
  postgresMeter.start();
  const clientBefore = process.cpuUsage();
  sheds = 0;
  const seconds = await redeemAll(family, tickets);
  const client = process.cpuUsage(clientBefore);
  const relayCpu = relayMeter.stop();
  const postgresCpu = postgresMeter.stop();
  const syncs = setUp.database
    ? (await walSyncs(server, setUp.database)) - syncsBefore
    : Number.NaN;
  const clientCpu = (client.user + client.system) / 1e6;
  const perThousand = 1000 / TICKETS;
  return {
    rate: TICKETS / seconds,
    relayCpu: relayCpu * perThousand,
    postgresCpu: postgresCpu * perThousand,
    clientCpu: clientCpu * perThousand,
    busy: (relayCpu + postgresCpu + clientCpu) / (seconds * availableParallelism()),
    walSyncs: syncs / TICKETS,
    shedPerThousand: sheds * perThousand,
  };
}

function medianOf(samples: readonly Sample[], field: keyof Sample): number {
  return median(samples.map((s) => s[field]));
}

/** Rate against instances, as bars (the same chart BENCHMARKS.md shows). */
function chart(setUps: readonly SetUp[]): string[] {
  const rates = setUps.map((s) => medianOf(s.samples, 'rate'));
  const top = Math.max(...rates);
  const width = 50;
  return setUps.map((s, i) => {
    const rate = rates[i] ?? 0;
    const bar = '█'.repeat(Math.max(1, Math.round((rate / top) * width)));
    return `  ${s.name.padEnd(26)} ${bar} ${rate.toFixed(0)}`;
  });
}

const setUps: SetUp[] = [
  { name: 'SQLite, 1 instance', engine: 'sqlite', size: 1, samples: [] },
  { name: 'PostgreSQL, 1 instance', engine: 'postgres', size: 1, samples: [] },
  { name: 'PostgreSQL, 2 instances', engine: 'postgres', size: 2, samples: [] },
  { name: 'PostgreSQL, 3 instances', engine: 'postgres', size: 3, samples: [] },
];

const dir = mkdtempSync(join(tmpdir(), 'powbridge-bench-family-'));
const relays = new RelayProcesses();
let server: TestPostgres | undefined;
try {
  report.say(
    `family: ${TICKETS} tickets per measurement, ${IN_FLIGHT} in flight, median of ${REPS}; ` +
      `${availableParallelism()} cores, load average ${loadavg()
        .map((l) => l.toFixed(1))
        .join(' ')}`,
  );
  server = await startPostgres();
  const postgres = server;
  for (const setUp of setUps) {
    const slug = `${setUp.engine}-${setUp.size}`;
    if (setUp.engine === 'postgres') {
      setUp.database = `family_${setUp.size}`;
      await postgres.createDatabase(setUp.database);
    }
    setUp.family = await startRelayFamily(relays, {
      dir: join(dir, slug),
      size: setUp.size,
      ...(setUp.database
        ? {
            storage: { url: postgres.url(setUp.database), passwordFile: postgres.passwordFile },
          }
        : {}),
    });
    await redeemAll(setUp.family, makeTickets(setUp.family, WARMUP_TICKETS));
  }
  for (let rep = 0; rep < REPS; rep++) {
    for (const setUp of setUps) setUp.samples.push(await measure(postgres, setUp));
  }

  const [sqlite] = setUps;
  const baseline = sqlite ? medianOf(sqlite.samples, 'rate') : Number.NaN;
  report.say('redemptions/s (ticket over a circuit → verified → spent and granted, committed):');
  for (const setUp of setUps) {
    const rate = medianOf(setUp.samples, 'rate');
    if (setUp === sqlite) report.figure(setUp.name, rate, 'redemptions/s');
    else report.figure(setUp.name, rate, 'redemptions/s', ['SQLite, 1 instance', baseline]);
  }
  report.say('rate against instances:');
  for (const line of chart(setUps)) report.say(line);
  report.say('where the time goes (medians; CPU seconds per 1,000 redemptions):');
  for (const setUp of setUps) {
    const s = setUp.samples;
    report.figure(`${setUp.name}: relay CPU`, medianOf(s, 'relayCpu'), 's/1000');
    report.figure(`${setUp.name}: PostgreSQL CPU`, medianOf(s, 'postgresCpu'), 's/1000');
    report.figure(`${setUp.name}: client CPU`, medianOf(s, 'clientCpu'), 's/1000');
    report.figure(`${setUp.name}: machine busy`, medianOf(s, 'busy') * 100, '% of all cores');
    report.figure(
      `${setUp.name}: shed (38, tried again)`,
      medianOf(s, 'shedPerThousand'),
      'per 1000',
    );
    if (setUp.engine === 'postgres') {
      report.figure(`${setUp.name}: WAL fsyncs`, medianOf(s, 'walSyncs'), 'per redemption');
    }
  }
  // Each commit waits for one; PostgreSQL's spends of the whole family commit one batch at a
  // time (src/storage/postgres-spent-log.ts), so this bounds batches per second.
  report.figure('fsync of a small write (this disk, tmpdir)', fsyncMs(dir), 'ms');
  const three = setUps.at(-1);
  if (three) {
    const ratio = medianOf(three.samples, 'rate') / baseline;
    report.say(
      `target: 3 instances ≥ 2 × SQLite 1 instance: ${ratio.toFixed(2)} × — ${ratio >= 2 ? 'met' : 'not met'}`,
    );
  }
} finally {
  await relays.killAll();
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
}
