import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { z } from 'zod';
import { ALGORITHMS } from '../work/algorithm.js';
import { MIN_DIFFICULTY } from '../work/target.js';

/**
 * The relay's configuration (config/relay.example.toml documents every key). TOML is parsed,
 * then validated by one schema; a bad file is refused with a message that names the key and
 * the problem, e.g. "source.node.payoutAddress: required".
 */

export class ConfigError extends Error {
  override name = 'ConfigError';
}

const hostPort = z
  .string()
  .regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, {
    error: 'expected host:port, e.g. 127.0.0.1:8640',
  })
  .refine((v) => Number(v.slice(v.lastIndexOf(':') + 1)) <= 65535, { error: 'port above 65535' });

const positive = z.number().positive();
const difficulty = z.number().refine((d) => Number.isFinite(d) && d >= MIN_DIFFICULTY, {
  error: `must be a number >= ${MIN_DIFFICULTY}`,
});

const nodeSource = z
  .strictObject({
    rpcUrl: z.url({ protocol: /^https?$/, error: 'expected an http:// URL of the node RPC' }),
    rpcUser: z.string().min(1).optional(),
    rpcPassword: z.string().min(1).optional(),
    rpcCookieFile: z.string().min(1).optional(),
    payoutAddress: z.string().min(1).max(128),
    coinbaseTag: z.string().max(40).default('/powbridge/'),
    longPoll: z.boolean().default(true),
    pollIntervalSeconds: positive.default(5),
  })
  .refine((n) => n.rpcCookieFile !== undefined || (n.rpcUser && n.rpcPassword), {
    error: 'set rpcCookieFile, or rpcUser and rpcPassword',
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

const source = z
  .strictObject({
    type: z.enum(['node', 'pool'], { error: 'expected "node" (solo) or "pool"' }),
    algorithm: z.enum(ALGORITHMS).default('scrypt'),
    node: nodeSource.optional(),
    pools: z.array(pool).min(1).max(16).optional(),
    versionRolling: z.boolean().default(true),
    requestTimeoutSeconds: positive.default(10),
    primaryRetrySeconds: positive.default(60),
  })
  .superRefine((s, ctx) => {
    if (s.type === 'node' && !s.node) {
      ctx.addIssue({ code: 'custom', path: ['node'], message: 'required when type = "node"' });
    }
    if (s.type === 'pool' && !s.pools) {
      ctx.addIssue({ code: 'custom', path: ['pools'], message: 'required when type = "pool"' });
    }
  });

const difficultySection = z
  .strictObject({
    initial: difficulty.default(2 ** -10),
    min: difficulty.default(2 ** -16),
    max: difficulty.default(2 ** 32),
    targetShareSeconds: positive.default(15),
    retargetSeconds: positive.default(60),
    ticketDifficulty: difficulty.default(1),
  })
  .refine((d) => d.min <= d.max, { error: 'min must be <= max' });

const peerName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9-]{0,31}$/, { error: 'expected a label: a-z, 0-9 and -, at most 32' });

/** A backup relay (Protocol 2, DESIGN §7): both relays list each other. */
const peer = z.strictObject({
  name: peerName,
  // The peer relay's HTTP base URL (its relay.listen, or its onion address through peering.proxy).
  url: z.url({ protocol: /^https?$/, error: 'expected the http:// base URL of the peer relay' }),
  // Its Ed25519 identity (`powbridge keys show` on the peer): every peer message is checked against it.
  identity: z.string().regex(/^[0-9a-f]{64}$/, { error: 'expected 64 lowercase hex characters' }),
  // Accept this peer's tickets here (we are its backup).
  acceptTickets: z.boolean().default(true),
  // While the peer is unreachable, accept its tickets anyway and sync the serials later.
  acceptWhenOffline: z.boolean().default(true),
  // Send the peer a PAYMENT_REQUEST every this many of its tickets served here.
  paymentEvery: z.number().int().min(1).max(10_000).default(10),
  // Stop accepting its tickets (error 36) while this many billed tickets are unpaid.
  maxUnpaid: z.number().int().min(1).max(1_000_000).default(100),
});

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
      level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    })
    .prefault({}),
  source,
  difficulty: difficultySection.prefault({}),
  limits: z
    .strictObject({
      maxClients: z.number().int().min(1).max(100_000).default(10_000),
      maxFrameBytes: z
        .number()
        .int()
        .min(1024)
        .max(1 << 20)
        .default(16 * 1024),
      maxInvalidFrames: z.number().int().min(1).max(1000).default(10),
      maxRequestsPerSecond: positive.default(20),
    })
    .prefault({}),
  tickets: z
    .strictObject({
      // Credit one ticket costs (1 credit = one share at difficulty.ticketDifficulty).
      price: positive.default(16),
      windowSeconds: z.number().int().min(10).max(86_400).default(600),
      maxOpenSessions: z
        .number()
        .int()
        .min(1)
        .max(8, { error: 'at most 8: more concurrent sessions open the ROS attack (DESIGN §6.2)' })
        .default(4),
      sessionTtlSeconds: positive.max(60).default(10),
      keyLifetimeDays: z.number().int().min(1).max(366).default(30),
    })
    .prefault({}),
  tunnel: z
    .strictObject({
      // Destination ports the priority tunnel may reach: numbers or [from, to] ranges.
      ports: z
        .array(
          z.union([
            z.number().int().min(1).max(65535),
            z.tuple([z.number().int().min(1).max(65535), z.number().int().min(1).max(65535)]),
          ]),
        )
        .default([80, 443]),
      // Loopback, private, link-local and other non-public addresses are refused after DNS
      // resolution unless allowed here (a private test network, or single CIDRs).
      allowPrivate: z.boolean().default(false),
      allowCidrs: z.array(z.string().min(3).max(64)).default([]),
      maxStreams: z.number().int().min(1).max(100_000).default(256),
      idleTimeoutSeconds: positive.default(300),
      // The bandwidth the tunnel shapes, Mbit/s: DESIGN §8's class tree is scaled to it
      // (free 20% guaranteed, 40% ceiling; paid 80%, split into ticket groups).
      linkMbit: positive.max(100_000).default(10),
      // Optional: your own class tree instead of the scaled default (checked when the relay
      // starts, with errors naming the class): [[tunnel.classes]] name, parent, rate, ceil
      // ("10mbit" or bytes/s), burst, cburst, prio 0..7, quantum. Leaves 'free', 'group1'
      // and 'group4' must exist (streams without a grant, 1+ tickets, 4+ tickets).
      classes: z.array(z.record(z.string(), z.unknown())).max(256).optional(),
    })
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
  peering: z
    .strictObject({
      // How far a peer's clock may be off, and so how long a signed peer request stays valid.
      clockSkewSeconds: z.number().int().min(5).max(600).default(60),
      // How often descriptors are refreshed, spent logs pulled and payment messages sent.
      syncIntervalSeconds: positive.max(3600).default(10),
      requestTimeoutSeconds: positive.max(60).default(3),
      // Reach peers through SOCKS5 (e.g. Tor's socks5h://127.0.0.1:9050 for onion peers).
      proxy: z
        .string()
        .regex(/^socks5h?:\/\/[^\s]+$/, { error: 'expected socks5h://host:port' })
        .optional(),
    })
    .prefault({}),
  peers: z
    .array(peer)
    .max(32)
    .default([])
    .superRefine((peers, ctx) => {
      const seen = new Set<string>();
      for (const [i, p] of peers.entries()) {
        for (const key of [`name:${p.name}`, `identity:${p.identity}`]) {
          if (seen.has(key)) {
            ctx.addIssue({
              code: 'custom',
              path: [i, key.split(':')[0]!],
              message: 'listed twice',
            });
          }
          seen.add(key);
        }
      }
    }),
});

export type RelayConfig = z.output<typeof relayConfigSchema>;
export type PeerConfig = RelayConfig['peers'][number];
export type PeeringConfig = RelayConfig['peering'];

function describe(error: z.ZodError): string {
  return error.issues
    .map((issue) => {
      const key = issue.path.join('.') || '(top level)';
      const message =
        issue.code === 'unrecognized_keys'
          ? `unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.join(', ')}`
          : issue.code === 'invalid_type' && issue.input === undefined
            ? 'required'
            : issue.message;
      return `${key}: ${message}`;
    })
    .join('\n');
}

/** Validate an already-parsed object (tests, and flags merged over the file). */
export function parseRelayConfig(value: unknown, origin = 'config'): RelayConfig {
  const result = relayConfigSchema.safeParse(value);
  if (!result.success) throw new ConfigError(`${origin}:\n${describe(result.error)}`);
  return result.data;
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
    throw new ConfigError(
      `${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? String(err)})`,
    );
  }
  let raw: unknown;
  try {
    raw = parseToml(text);
  } catch (err) {
    throw new ConfigError(`${file}: not valid TOML: ${(err as Error).message.split('\n')[0]}`);
  }
  // Secrets may come from the environment instead of the file: set before validation, so a
  // file without rpcPassword is complete when the variable supplies it.
  const node = (raw as { source?: { node?: Record<string, unknown> } }).source?.node;
  if (node && typeof node === 'object' && env.POWBRIDGE_RPC_PASSWORD) {
    node.rpcPassword = env.POWBRIDGE_RPC_PASSWORD;
  }
  const config = parseRelayConfig(raw, file);
  const base = dirname(resolve(file));
  config.relay.dataDir = resolve(base, config.relay.dataDir);
  if (config.source.node?.rpcCookieFile) {
    config.source.node.rpcCookieFile = resolve(base, config.source.node.rpcCookieFile);
  }
  for (const p of config.source.pools ?? []) {
    if (p.tlsCaFile) p.tlsCaFile = resolve(base, p.tlsCaFile);
  }
  if (config.tor.passwordFile) config.tor.passwordFile = resolve(base, config.tor.passwordFile);
  if (config.tor.cookieFile) config.tor.cookieFile = resolve(base, config.tor.cookieFile);
  return config;
}

/** "host:port" → { host, port } (IPv6 in brackets). */
export function splitHostPort(value: string): { host: string; port: number } {
  const at = value.lastIndexOf(':');
  return {
    host: value.slice(0, at).replace(/^\[(.*)\]$/, '$1'),
    port: Number(value.slice(at + 1)),
  };
}
