import { join } from 'node:path';
import { type RelayConfig, parseRelayConfig } from '../relay/config.js';
import { KeyStore } from '../tickets/key-store.js';
import { peeringSections } from './backup-peering.js';
import type { RegtestNode } from './regtest-network.js';
import { freePort } from './regtest-network.js';

/**
 * The two relays of the demo: the main one mines solo on node 0, the backup on node 1, and
 * each lists the other as a peer (docs/design.md §7). A peer is pinned by its identity key, which
 * exists only once its key store does, and by its URL, so both are settled first (keys
 * created, ports chosen) and the configs written after.
 */

export interface RelayPlan {
  /** Peer label, as the other relay's config names it. */
  readonly name: string;
  readonly dataDir: string;
  readonly port: number;
  /** HTTP base URL: API, dashboard, /v1/circuit and /v1/tunnel. */
  readonly url: string;
  /** Ed25519 identity, hex (what `powbridge keys show` prints). */
  readonly identity: string;
}

/**
 * Regtest's share difficulty, as the relay caps it (the network's): at this ticket difficulty
 * one share earns one credit, which is easy to follow.
 */
const TICKET_DIFFICULTY = 2 ** -15;
/**
 * On regtest nearly every hash is a share (and a block), so one thread sends far more shares
 * than the default per-circuit request limit (20/s) allows a real client; the relay would
 * drop the miner's circuit.
 */
const MAX_REQUESTS_PER_SECOND = 500;

/** Create the relay's keys in `<baseDir>/<name>` and choose its port. */
export async function planRelay(baseDir: string, name: string): Promise<RelayPlan> {
  const dataDir = join(baseDir, `relay-${name}`);
  const keys = await KeyStore.open(dataDir, { now: () => Date.now() / 1000 });
  const port = await freePort();
  return {
    name,
    dataDir,
    port,
    url: `http://127.0.0.1:${port}`,
    identity: keys.identity.publicKeyHex,
  };
}

export interface DemoRelayOptions {
  self: RelayPlan;
  peer: RelayPlan;
  node: RegtestNode;
  payoutAddress: string;
  /** Credit one ticket costs. */
  ticketPrice: number;
  /** The tunnel's shaped bandwidth, Mbit/s. */
  linkMbit: number;
  /** The local byte source the tunnel may reach (and nothing else private). */
  tunnelPort: number;
}

export function demoRelayConfig(options: DemoRelayOptions): RelayConfig {
  const { self, node } = options;
  const auth =
    'cookieFile' in node.auth
      ? { rpcCookieFile: node.auth.cookieFile }
      : { rpcUser: node.auth.user, rpcPassword: node.auth.password };
  return parseRelayConfig(
    {
      relay: { listen: `127.0.0.1:${self.port}`, dataDir: self.dataDir },
      source: {
        type: 'node',
        algorithm: 'scrypt',
        node: {
          rpcUrl: node.rpcUrl,
          ...auth,
          payoutAddress: options.payoutAddress,
          pollIntervalSeconds: 1,
        },
      },
      difficulty: { ticketDifficulty: TICKET_DIFFICULTY },
      limits: { maxRequestsPerSecond: MAX_REQUESTS_PER_SECOND },
      tickets: { price: options.ticketPrice },
      tunnel: {
        ports: [options.tunnelPort],
        allowCidrs: ['127.0.0.1/32'],
        linkMbit: options.linkMbit,
      },
      ...peeringSections(options.peer),
    },
    `demo ${self.name} relay config`,
  );
}
