import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { newFamilyKeyText } from '../../src/storage/key-sealing.js';
import type { RsaPrivateKey } from '../../src/tickets/rsa-scheme.js';
import { MIN_DIFFICULTY } from '../../src/work/target.js';
import type { RelayProcess, RelayProcesses } from './relay-process.js';
import { fixtureRelayKeys } from './rsa-keys.js';

/**
 * A relay family (issue 17) of real `powbridge relay` processes (built dist/), each with its
 * own data directory and port, on one ticket storage: a PostgreSQL database, or, for one
 * instance, SQLite in its data directory. For test/e2e/relay-family.test.ts and
 * bench/family.ts.
 *
 * The test process makes the first member's keys (fixture RSA keys: a relay started by the
 * CLI must not look for safe primes) and signs tickets with today's issuing key itself. On
 * PostgreSQL the members share one family key (`storage.familyKeyFile`): the first puts its
 * keys into the database, the others start with empty data directories and take them from
 * there, as instances on separate machines would. Redeeming needs no work, so instances mine
 * from nothing (their node is a closed port) unless given a pool.
 */

export interface FamilyStorage {
  /** postgres://… without the password. */
  url: string;
  passwordFile: string;
  /** The family key every member holds (written by startRelayFamily). */
  familyKeyFile?: string;
}

export interface FamilyMember {
  dataDir: string;
  configFile: string;
  relay: RelayProcess;
}

export interface RelayFamily {
  members: FamilyMember[];
  /** Today's day number and issuing key, shared by every member: sign tickets with these. */
  day: number;
  issuing: RsaPrivateKey;
}

export interface RelayFamilyOptions {
  /** A directory of the caller's; member i lives in `<dir>/relay-<i>`. */
  dir: string;
  size: number;
  /** Absent: SQLite in each member's data directory (a family of one). */
  storage?: FamilyStorage;
  /** A Stratum pool (stratum+tcp://…) the first member takes its jobs from, to mine tickets. */
  firstMemberPool?: string;
}

/**
 * Start `size` members, the first first: it holds the keys, and on PostgreSQL seals them into
 * the database, where the others find them.
 */
export async function startRelayFamily(
  relays: RelayProcesses,
  options: RelayFamilyOptions,
): Promise<RelayFamily> {
  const dataDirs = Array.from({ length: options.size }, (_, i) => join(options.dir, `relay-${i}`));
  const [first] = dataDirs;
  if (first === undefined) throw new Error('a family has at least one member');
  const { day, issuing } = await fixtureRelayKeys(first);
  let storage = options.storage;
  if (storage) {
    const familyKeyFile = join(options.dir, 'family.key');
    writeFileSync(familyKeyFile, newFamilyKeyText(), { mode: 0o600 });
    storage = { ...storage, familyKeyFile };
  }
  const members: FamilyMember[] = [];
  // One after another: a relay's start (modules, worker threads, the schema) is mostly CPU,
  // and three at once on a loaded 2-core machine can each miss the start limit.
  for (const [i, dataDir] of dataDirs.entries()) {
    const configFile = join(options.dir, `relay-${i}.toml`);
    const pool = i === 0 ? options.firstMemberPool : undefined;
    writeFileSync(configFile, familyRelayConfig(dataDir, storage, pool));
    members.push({ dataDir, configFile, relay: await relays.spawn(configFile) });
  }
  return { members, day, issuing };
}

/**
 * A member's relay.toml: errors-only logging (anything logged is worth reading in a failure
 * message), every difficulty at the floor and a price of one share (so one share mined buys a
 * ticket), and limits that let a few circuits carry hundreds of redemptions each: the
 * defaults (20 requests/s per circuit, 100 verifications/s per relay, 500 frames/s for all
 * fresh circuits) would close or shed them, and these runs are about exactly-once and
 * throughput, not load shedding (test/relay/relay-load.test.ts).
 */
export function familyRelayConfig(
  dataDir: string,
  storage: FamilyStorage | undefined,
  poolUrl?: string,
): string {
  const source = poolUrl
    ? [
        '[source]',
        'type = "pool"',
        'algorithm = "sha256d"',
        '[[source.pools]]',
        `url = ${JSON.stringify(poolUrl)}`,
        'user = "operator.family"',
        'password = "x"',
      ]
    : [
        '[source]',
        'type = "node"',
        'algorithm = "sha256d"',
        '[source.node]',
        'rpcUrl = "http://127.0.0.1:1"',
        'rpcUser = "unused"',
        'rpcPassword = "unused"',
        'payoutAddress = "rltc1qunused"',
      ];
  return [
    '[relay]',
    `dataDir = ${JSON.stringify(dataDir)}`,
    '[log]',
    'level = "error"',
    ...source,
    '[difficulty]',
    `initial = ${MIN_DIFFICULTY}`,
    `stratumInitial = ${MIN_DIFFICULTY}`,
    `min = ${MIN_DIFFICULTY}`,
    `ticketDifficulty = ${MIN_DIFFICULTY}`,
    '[tickets]',
    'price = 1',
    '[limits]',
    'maxRequestsPerSecond = 100000',
    'maxVerificationsPerSecond = 100000',
    'maxUnregistered = 100000',
    'maxUnregisteredRequestsPerSecond = 100000',
    'registerTimeoutSeconds = 120',
    ...(storage
      ? [
          '[storage]',
          `url = ${JSON.stringify(storage.url)}`,
          `passwordFile = ${JSON.stringify(storage.passwordFile)}`,
          ...(storage.familyKeyFile
            ? [`familyKeyFile = ${JSON.stringify(storage.familyKeyFile)}`]
            : []),
        ]
      : []),
    '',
  ].join('\n');
}
