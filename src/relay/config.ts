import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parse as parseToml, TomlError } from 'smol-toml';
import { z } from 'zod';
import { LOG_LEVELS } from '../log.js';
import { peeringConfigSchema, peersConfigSchema } from '../peers/peer-config.js';
import { MAX_STORAGE_URL_LENGTH, storageUrlProblem } from '../storage/storage-url.js';
import {
  type HtbClassTree,
  htbClassTreeSchema,
  htbSpec,
  parseHtbConfig,
} from '../qos/htb-config.js';
import { defaultHtbConfig } from '../qos/htb-shaper.js';
import {
  DEFAULT_TICKET_GROUPS,
  describeGroups,
  type TicketGroup,
  ticketGroupProblems,
  ticketGroupsSchema,
} from '../qos/ticket-groups.js';
import { ALGORITHMS } from '../work/algorithm.js';
import { MIN_DIFFICULTY } from '../work/target.js';
import { configErrorMap, describeIssues, isRecord } from './config-errors.js';
import { MAX_SLOTS } from './extranonce-slots.js';

/**
 * The relay's configuration (config/relay.example.toml documents every key). TOML is parsed,
 * then validated by one schema; a bad file is refused with a message that names the key and
 * the problem, e.g. "source.node.payoutAddress: required" or "tickets.price: expected a
 * number, got string "sixteen"" (wording in config-errors.ts), a TOML syntax error with its
 * file:line:column.
 */

export class ConfigError extends Error {
  override name = 'ConfigError';
}

const hostPort = z
  .string()
  .regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, {
    error: 'expected host:port, e.g. 127.0.0.1:8640',
    // "nonsense" is not host:port; that it has no port above 65535 goes without saying.
    abort: true,
  })
  .refine((v) => Number(v.slice(v.lastIndexOf(':') + 1)) <= 65535, { error: 'port above 65535' });

const positive = z.number().positive();
const difficulty = z.number().refine((d) => Number.isFinite(d) && d >= MIN_DIFFICULTY, {
  error: `must be a number >= ${MIN_DIFFICULTY}`,
});

const RPC_AUTH = 'set rpcCookieFile, or rpcUser and rpcPassword';

/**
 * Solo mining through the coin node. RPC auth is the cookie file OR a user and password, so
 * the output is a union that tells which (`'rpcCookieFile' in node`).
 */
const nodeSource = z
  .strictObject(
    {
      rpcUrl: z.url({ protocol: /^https?$/, error: 'expected an http:// URL of the node RPC' }),
      rpcCookieFile: z.string().min(1).optional(),
      rpcUser: z.string().min(1).optional(),
      rpcPassword: z.string().min(1).optional(),
      payoutAddress: z.string().min(1).max(128),
      coinbaseTag: z.string().max(40).default('/powbridge/'),
      longPoll: z.boolean().default(true),
      pollIntervalSeconds: positive.default(5),
    },
    { error: (issue) => (issue.input === undefined ? 'required when type = "node"' : undefined) },
  )
  .transform((node, ctx) => {
    const { rpcCookieFile, rpcUser, rpcPassword, ...rest } = node;
    if (rpcCookieFile === undefined && rpcUser !== undefined && rpcPassword !== undefined) {
      return { ...rest, rpcUser, rpcPassword };
    }
    if (rpcCookieFile !== undefined && rpcUser === undefined && rpcPassword === undefined) {
      return { ...rest, rpcCookieFile };
    }
    // Name the key that is missing; with none or both ways given, the table itself.
    const [path, message] =
      rpcCookieFile !== undefined
        ? [null, `${RPC_AUTH}, not both`]
        : rpcUser !== undefined
          ? ['rpcPassword', `required with rpcUser (${RPC_AUTH})`]
          : rpcPassword !== undefined
            ? ['rpcUser', `required with rpcPassword (${RPC_AUTH})`]
            : [null, RPC_AUTH];
    ctx.issues.push({ code: 'custom', path: path ? [path] : [], message, input: node });
    return z.NEVER;
  });

const pool = z.strictObject({
  url: z.string().regex(/^stratum\+(tcp|ssl):\/\//, {
    error: 'expected stratum+tcp://host:port or stratum+ssl://host:port',
  }),
  user: z.string().min(1).max(256),
  password: z.string().max(256).default('x'),
  tlsCaFile: z.string().optional(),
  tlsRejectUnauthorized: z.boolean().default(true),
});

const pools = z
  .array(pool, {
    error: (issue) => (issue.input === undefined ? 'required when type = "pool"' : undefined),
  })
  .min(1)
  .max(16);

/** Keys of either source type (the pool ones are ignored solo, as the example shows). */
const sourceSettings = {
  algorithm: z.enum(ALGORITHMS).default('scrypt'),
  versionRolling: z.boolean().default(true),
  requestTimeoutSeconds: positive.default(10),
  primaryRetrySeconds: positive.default(60),
};

/**
 * `[source]`, by `type`: the table of the other type may stay in the file (checked, unused),
 * so switching between solo and pool is a one-word change.
 */
const source = z.discriminatedUnion(
  'type',
  [
    z.strictObject({
      type: z.literal('node'),
      node: nodeSource,
      pools: pools.optional(),
      ...sourceSettings,
    }),
    z.strictObject({
      type: z.literal('pool'),
      pools,
      node: nodeSource.optional(),
      ...sourceSettings,
    }),
  ],
  {
    error: (issue) =>
      issue.code === 'invalid_union' ? 'expected "node" (solo) or "pool"' : undefined,
  },
);

const difficultySection = z
  .strictObject({
    initial: difficulty.default(2 ** -10),
    // The Stratum port's start: standard miners span CPUs to ASICs; vardiff and
    // mining.suggest_difficulty take it from there. Clamped into [min, max] like `initial`.
    stratumInitial: difficulty.default(16),
    min: difficulty.default(2 ** -16),
    max: difficulty.default(2 ** 32),
    targetShareSeconds: positive.default(15),
    retargetSeconds: positive.default(60),
    ticketDifficulty: difficulty.default(1),
  })
  .refine((d) => d.min <= d.max, { error: 'min must be <= max' });

/**
 * The mapping of tickets to groups must agree with the tree the relay runs, the configured one
 * or the default scaled to linkMbit: more tickets never buy a lower guaranteed rate or a worse
 * prio (docs/design.md §8). Checked here, once, so an unsound mapping stops the start with a
 * message naming the groups.
 */
function checkTicketGroups(
  tunnel: {
    classes?: HtbClassTree | undefined;
    groups?: TicketGroup[] | undefined;
    linkMbit: number;
  },
  ctx: z.RefinementCtx,
): void {
  const classes = tunnel.classes
    ? htbSpec(tunnel.classes).classes
    : parseHtbConfig(defaultHtbConfig(tunnel.linkMbit * 1e6)).classes;
  const groups = tunnel.groups ?? DEFAULT_TICKET_GROUPS;
  for (const problem of ticketGroupProblems(classes, groups)) {
    if (tunnel.groups) {
      ctx.addIssue({
        code: 'custom',
        path: ['groups', problem.group, problem.field],
        message: problem.message,
      });
    } else {
      ctx.addIssue({
        code: 'custom',
        path: ['classes'],
        message: `the default [[tunnel.groups]] (${describeGroups(groups)}): ${problem.message}`,
      });
    }
  }
}

/**
 * Circuits and Stratum miners each get their own places, and every place needs an extranonce
 * slot (docs/design.md §4.2): together they must fit in the most slots a layout has.
 */
function checkSlotSpace(
  limits: { maxClients: number; maxStratumClients: number },
  ctx: z.RefinementCtx,
): void {
  const total = limits.maxClients + limits.maxStratumClients;
  if (total <= MAX_SLOTS) return;
  ctx.addIssue({
    code: 'custom',
    path: [],
    message:
      `maxClients (${limits.maxClients}) + maxStratumClients (${limits.maxStratumClients}) = ` +
      `${total}, more than the ${MAX_SLOTS} extranonce slots the relay can hand out`,
  });
}

/** Samples a status history may hold: 8 bytes per series each (~50 series), ~40 MB at most. */
export const MAX_HISTORY_SAMPLES = 100_000;

/** The status history's samples (historyHours / sampleSeconds), bounded in memory. */
export function historySamples(status: { sampleSeconds: number; historyHours: number }): number {
  return Math.max(2, Math.ceil((status.historyHours * 3600) / status.sampleSeconds));
}

function checkHistorySize(
  status: { sampleSeconds: number; historyHours: number },
  ctx: z.RefinementCtx,
): void {
  const samples = historySamples(status);
  if (samples <= MAX_HISTORY_SAMPLES) return;
  ctx.addIssue({
    code: 'custom',
    path: ['historyHours'],
    message:
      `${status.historyHours} h at one sample every ${status.sampleSeconds} s is ${samples} ` +
      `samples, more than ${MAX_HISTORY_SAMPLES}: shorten it or raise status.sampleSeconds`,
  });
}

export const relayConfigSchema = z.strictObject({
  relay: z
    .strictObject({
      listen: hostPort.default('127.0.0.1:8640'),
      stratumListen: hostPort.optional(),
      dataDir: z.string().min(1).default('./powbridge-data'),
    })
    .prefault({}),
  log: z
    .strictObject({
      level: z.enum(LOG_LEVELS).default('info'),
    })
    .prefault({}),
  source,
  difficulty: difficultySection.prefault({}),
  limits: z
    .strictObject({
      maxClients: z.number().int().min(1).max(100_000).default(10_000),
      // Standard miners on the Stratum port: places of their own, apart from maxClients, so
      // neither kind can lock the other out (the two share the extranonce slots, see below).
      maxStratumClients: z.number().int().min(1).max(MAX_SLOTS).default(1_000),
      // A Stratum miner keeps its place only while it gets shares accepted.
      stratumShareTimeoutSeconds: z.number().int().min(10).max(86_400).default(300),
      stratumHandshakeTimeoutSeconds: z.number().int().min(1).max(600).default(20),
      maxFrameBytes: z
        .number()
        .int()
        .min(1024)
        .max(1 << 20)
        .default(16 * 1024),
      maxInvalidFrames: z.number().int().min(1).max(1000).default(10),
      maxRequestsPerSecond: positive.default(20),
      // Ticket signature checks per second for the whole relay (every circuit shares them);
      // beyond it a redemption is answered 38 with retryAfter. One verification thread does
      // about 1,000 a second: the default leaves it nine tenths idle.
      maxVerificationsPerSecond: z.number().min(1).max(100_000).default(100),
      // Circuits open and not registered (redeem-only ones too); beyond it upgrades get 503.
      maxUnregistered: z.number().int().min(1).max(100_000).default(256),
      // Frames per second from all unregistered circuits together; beyond it they wait their
      // turn with their sockets paused, so fresh circuits cannot crowd out registered miners.
      maxUnregisteredRequestsPerSecond: z.number().min(1).max(100_000).default(500),
      // Seconds a circuit may stay open without registering (a redemption's circuit included).
      registerTimeoutSeconds: z.number().min(1).max(300).default(10),
    })
    .superRefine(checkSlotSpace)
    .prefault({}),
  tickets: z
    .strictObject({
      // The scheme new tickets are issued with (docs/design.md §6.5): "rsa" (partially blind
      // RSA, v2 tickets, safe under any number of concurrent issuances) or "ao" (the paper's
      // Abe–Okamoto, v1 tickets, capped at maxOpenSessions). Tickets of every key the relay
      // still holds are redeemed, whichever scheme issued them.
      scheme: z.enum(['rsa', 'ao'], { error: 'expected "rsa" or "ao"' }).default('rsa'),
      // Credit one ticket costs (1 credit = one share at difficulty.ticketDifficulty).
      price: positive.default(16),
      windowSeconds: z.number().int().min(10).max(86_400).default(600),
      maxOpenSessions: z
        .number()
        .int()
        .min(1)
        .max(8, {
          error: 'at most 8: more concurrent sessions open the ROS attack (docs/design.md §6.2)',
        })
        .default(4),
      sessionTtlSeconds: positive.max(60).default(10),
      keyLifetimeDays: z.number().int().min(1).max(366).default(30),
      // scheme = "rsa": worker threads that sign (one RSA private operation per ticket).
      signerThreads: z.number().int().min(1).max(64).default(2),
    })
    .prefault({}),
  tunnel: z
    .strictObject({
      // Destination ports the priority tunnel may reach: numbers or [from, to] ranges.
      ports: z
        .array(
          z.union(
            [
              z.number().int().min(1).max(65535),
              z.tuple([z.number().int().min(1).max(65535), z.number().int().min(1).max(65535)]),
            ],
            { error: 'expected a port 1..65535 or a [from, to] range of them' },
          ),
        )
        .default([80, 443]),
      // Loopback, private, link-local and other non-public addresses are refused after DNS
      // resolution unless allowed here (a private test network, or single CIDRs).
      allowPrivate: z.boolean().default(false),
      allowCidrs: z.array(z.string().min(3).max(64)).default([]),
      maxStreams: z.number().int().min(1).max(100_000).default(256),
      idleTimeoutSeconds: positive.default(300),
      // The bandwidth the tunnel shapes, Mbit/s: docs/design.md §8's class tree is scaled to it
      // (free 20% guaranteed, 40% ceiling; paid 80%, split into ticket groups).
      linkMbit: positive.max(100_000).default(10),
      // Optional: your own class tree instead of the scaled default, checked here by the
      // HTB's own schema (src/qos/htb-config.ts): [[tunnel.classes]] name, parent, rate, ceil
      // ("10mbit" or bytes/s), burst, cburst, prio 0..7, quantum, limit. A leaf 'free'
      // (streams without a grant) and the leaves of the ticket groups must exist.
      classes: z.array(z.unknown()).max(256).pipe(htbClassTreeSchema).optional(),
      // Optional: which leaf a grant's streams get by the tickets paid into it in the current
      // window, [[tunnel.groups]] minTickets → leaf, in increasing minTickets. Default
      // docs/design.md §8's: 1–3 tickets → 'group4', 4 or more → 'group1' (the top tier).
      groups: z.array(z.unknown()).max(64).pipe(ticketGroupsSchema).optional(),
    })
    // Only on a table whose own keys passed: a linkMbit of 0 or a broken class tree has been
    // reported under its key, and would make the default tree or the groups check throw.
    .superRefine(checkTicketGroups, { when: (payload) => payload.issues.length === 0 })
    .prefault({}),
  tor: z
    .strictObject({
      // Tor's control port: when set, the relay creates its onion service there (ADD_ONION).
      control: hostPort.optional(),
      // HASHEDPASSWORD: a file (0600) with the control password; else $POWBRIDGE_TOR_PASSWORD.
      // No password key: secrets stay out of config files.
      passwordFile: z.string().min(1).optional(),
      // Read the auth cookie here instead of where Tor says (Tor in a container).
      cookieFile: z.string().min(1).optional(),
      // The onion service's port: 80 gives clients ws://<address>.onion/v1/circuit.
      virtualPort: z.number().int().min(1).max(65535).default(80),
      // For --print-torrc: the HiddenServiceDir Tor keeps the service key in.
      hiddenServiceDir: z.string().min(1).default('/var/lib/tor/powbridge'),
    })
    .prefault({}),
  verify: z.strictObject({ threads: z.number().int().min(1).max(64).default(1) }).prefault({}),
  // Where spent tickets and grants are kept: absent, SQLite files in relay.dataDir; a
  // postgres:// URL, one PostgreSQL database shared by a family of relays (src/storage/).
  storage: z
    .strictObject({
      url: z
        .string()
        .max(MAX_STORAGE_URL_LENGTH)
        .superRefine((url, ctx) => {
          const problem = storageUrlProblem(url);
          if (problem !== null) ctx.addIssue({ code: 'custom', message: problem });
        })
        .optional(),
      // The database password, in a 0600 file; else $PGPASSWORD. Never in the URL.
      passwordFile: z.string().min(1).optional(),
      // The family key, in a 0600 file (powbridge keys family-key): the keys are kept sealed
      // in the database and every instance holds the same ones. Without it, keys stay in
      // relay.dataDir (a family on one machine shares the data directory).
      familyKeyFile: z.string().min(1).max(4096).optional(),
    })
    .refine((storage) => storage.passwordFile === undefined || storage.url !== undefined, {
      error: 'passwordFile is for a PostgreSQL url: set storage.url too',
      path: ['passwordFile'],
    })
    .refine((storage) => storage.familyKeyFile === undefined || storage.url !== undefined, {
      error: 'familyKeyFile shares keys through a PostgreSQL database: set storage.url too',
      path: ['familyKeyFile'],
    })
    .prefault({}),
  // The history behind the dashboard's charts (GET /v1/status/history), in memory only.
  status: z
    .strictObject({
      sampleSeconds: z
        .number({ error: 'expected a number of seconds' })
        .min(1, { error: 'at least 1 second' })
        .max(3600, { error: 'at most 3600 seconds' })
        .default(10),
      historyHours: z
        .number({ error: 'expected a number of hours' })
        .positive({ error: 'must be more than 0 hours' })
        .max(24 * 31, { error: 'at most 744 hours (31 days)' })
        .default(24),
    })
    .superRefine(checkHistorySize)
    .prefault({}),
  peering: peeringConfigSchema.prefault({}),
  peers: peersConfigSchema,
});

export type RelayConfig = z.output<typeof relayConfigSchema>;

/** Validate an already-parsed object (tests, and flags merged over the file). */
export function parseRelayConfig(value: unknown, origin = 'config'): RelayConfig {
  // Below the schemas' own messages: "required", or what a key takes and what it got.
  const result = relayConfigSchema.safeParse(value, { error: configErrorMap });
  if (!result.success) {
    throw new ConfigError(`${origin}:\n${describeIssues(result.error, value)}`);
  }
  return result.data;
}

/** Why a config file cannot be read, in words (the code stays for searching). */
function unreadable(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  const words: Record<string, string> = {
    ENOENT: 'no such file',
    EACCES: 'cannot read it: permission denied',
    EPERM: 'cannot read it: permission denied',
    EISDIR: 'is a directory, not a config file',
    ENOTDIR: 'a part of the path is not a directory',
  };
  return code ? `${words[code] ?? 'cannot read it'} (${code})` : `cannot read it (${String(err)})`;
}

/**
 * "relay.toml:12:5: not valid TOML: <what>". smol-toml's message goes on with the lines around
 * the mistake; they are left out, since a line with a broken string may hold a password.
 */
function tomlProblem(file: string, err: unknown): string {
  const first = (err instanceof Error ? err.message : String(err)).split('\n')[0] ?? '';
  const what = first.replace(/^Invalid TOML document: /, '');
  const where = err instanceof TomlError ? `${file}:${err.line}:${err.column}` : file;
  return `${where}: not valid TOML: ${what}`;
}

/**
 * Read and validate a TOML file. Relative paths inside it (dataDir, cookie and CA files) are
 * resolved against the file's folder, so a config works wherever the relay is started from.
 */
export function loadRelayConfig(file: string, env: NodeJS.ProcessEnv = process.env): RelayConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`${file}: ${unreadable(err)}`);
  }
  let raw: unknown;
  try {
    raw = parseToml(text);
  } catch (err) {
    throw new ConfigError(tomlProblem(file, err));
  }
  // Secrets may come from the environment instead of the file: set before validation, so a
  // file without rpcPassword is complete when the variable supplies it.
  // A cookie file needs no password: the variable is for user/password auth only.
  const source = isRecord(raw) ? raw['source'] : undefined;
  const node = isRecord(source) ? source['node'] : undefined;
  if (isRecord(node) && node['rpcCookieFile'] === undefined && env.POWBRIDGE_RPC_PASSWORD) {
    node['rpcPassword'] = env.POWBRIDGE_RPC_PASSWORD;
  }
  const config = parseRelayConfig(raw, file);
  const base = dirname(resolve(file));
  config.relay.dataDir = resolve(base, config.relay.dataDir);
  if (config.source.node && 'rpcCookieFile' in config.source.node) {
    config.source.node.rpcCookieFile = resolve(base, config.source.node.rpcCookieFile);
  }
  for (const p of config.source.pools ?? []) {
    if (p.tlsCaFile) p.tlsCaFile = resolve(base, p.tlsCaFile);
  }
  if (config.tor.passwordFile) config.tor.passwordFile = resolve(base, config.tor.passwordFile);
  if (config.tor.cookieFile) config.tor.cookieFile = resolve(base, config.tor.cookieFile);
  if (config.storage.passwordFile) {
    config.storage.passwordFile = resolve(base, config.storage.passwordFile);
  }
  if (config.storage.familyKeyFile) {
    config.storage.familyKeyFile = resolve(base, config.storage.familyKeyFile);
  }
  return config;
}

/** A host:port flag, checked like the keys it overrides; throws the problem in words. */
export function checkHostPort(value: string): string {
  const result = hostPort.safeParse(value);
  if (result.success) return value;
  throw new ConfigError(result.error.issues[0]?.message ?? 'expected host:port');
}

/** "host:port" → { host, port } (IPv6 in brackets). */
export function splitHostPort(value: string): { host: string; port: number } {
  const at = value.lastIndexOf(':');
  return {
    host: value.slice(0, at).replace(/^\[(.*)\]$/, '$1'),
    port: Number(value.slice(at + 1)),
  };
}
