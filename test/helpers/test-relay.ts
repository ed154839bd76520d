import type { Logger } from '../../src/log.js';
import { parseRelayConfig } from '../../src/relay/config.js';
import { type Relay, startRelay } from '../../src/relay/relay.js';
import { MIN_DIFFICULTY } from '../../src/work/target.js';
import { ManualSource } from './manual-source.js';
import { fixtureRsaKeys } from './rsa-keys.js';

/**
 * One generator for every test relay of a test file: relays started side by side (a relay and
 * its backup) get different RSA keys, without finding safe primes in every test.
 */
const testRsaKeys = fixtureRsaKeys();

/**
 * A whole relay (stratifier, connectors, HTTP, tickets) on loopback, fed by a ManualSource
 * instead of a pool or node: for tests of what sits on top of the relay (clients, wallet,
 * CLI). The configured node source is never contacted; difficulties default to the floor so
 * any nonce is a valid share.
 */
export async function startTestRelay(options: {
  dataDir: string;
  listen?: string;
  /** A Stratum port for standard miners (config relay.stratumListen), e.g. 127.0.0.1:0. */
  stratumListen?: string;
  clientDifficulty?: number;
  ticketDifficulty?: number;
  price?: number;
  /** Ticket scheme (config tickets.scheme; default the relay's, "rsa"). */
  scheme?: 'rsa' | 'ao';
  /** Upstream difficulty once live (default: the floor, so shares are forwarded). */
  upstreamDifficulty?: number;
  /** Tunnel policy overrides (e.g. allow 127.0.0.1 and a test port). */
  tunnel?: { ports?: (number | [number, number])[]; allowCidrs?: string[] };
  /** Protocol 2 peers and settings (config `peers` / `peering`). */
  peers?: Record<string, unknown>[];
  peering?: Record<string, unknown>;
  /** Config `limits` overrides (e.g. a small verification budget). */
  limits?: Record<string, unknown>;
  /** Config `storage` (a PostgreSQL url and passwordFile; default SQLite in dataDir). */
  storage?: Record<string, unknown>;
  /** Config `status` overrides (the history's sampleSeconds and historyHours). */
  status?: Record<string, unknown>;
  /** The clock of the relay's status history (RelayDeps.historyClock). */
  historyClock?: () => number;
  logger?: Logger;
}): Promise<{ relay: Relay; upstream: ManualSource }> {
  const upstream = new ManualSource('sha256d');
  const relay = await startRelay(
    parseRelayConfig({
      relay: {
        listen: options.listen ?? '127.0.0.1:0',
        dataDir: options.dataDir,
        ...(options.stratumListen ? { stratumListen: options.stratumListen } : {}),
      },
      source: {
        type: 'node',
        algorithm: 'sha256d',
        node: { rpcUrl: 'http://127.0.0.1:1', rpcUser: 'u', rpcPassword: 'p', payoutAddress: 'a' },
      },
      difficulty: {
        initial: options.clientDifficulty ?? MIN_DIFFICULTY,
        stratumInitial: options.clientDifficulty ?? MIN_DIFFICULTY,
        min: MIN_DIFFICULTY,
        ticketDifficulty: options.ticketDifficulty ?? options.clientDifficulty ?? MIN_DIFFICULTY,
      },
      tickets: { price: options.price ?? 1, ...(options.scheme ? { scheme: options.scheme } : {}) },
      ...(options.tunnel ? { tunnel: options.tunnel } : {}),
      ...(options.peers ? { peers: options.peers } : {}),
      ...(options.peering ? { peering: options.peering } : {}),
      ...(options.limits ? { limits: options.limits } : {}),
      ...(options.storage ? { storage: options.storage } : {}),
      ...(options.status ? { status: options.status } : {}),
    }),
    {
      source: upstream,
      generateRsaKey: testRsaKeys,
      ...(options.historyClock ? { historyClock: options.historyClock } : {}),
      ...(options.logger ? { logger: options.logger } : {}),
    },
  );
  upstream.goLive({ difficulty: options.upstreamDifficulty ?? MIN_DIFFICULTY });
  return { relay, upstream };
}

/**
 * The TOML lines of a relay config whose source is never contacted (as startTestRelay's),
 * for tests of CLI commands that read a relay config but run no relay.
 */
export function relayTomlLines(dataDir: string, listen?: string): string[] {
  return [
    '[relay]',
    `dataDir = ${JSON.stringify(dataDir)}`,
    ...(listen ? [`listen = "${listen}"`] : []),
    '[source]',
    'type = "node"',
    'algorithm = "sha256d"',
    '[source.node]',
    'rpcUrl = "http://127.0.0.1:1"',
    'rpcUser = "u"',
    'rpcPassword = "p"',
    'payoutAddress = "a"',
  ];
}
