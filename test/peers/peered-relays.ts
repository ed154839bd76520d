import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from '../../src/log.js';
import type { Relay } from '../../src/relay/relay.js';
import { KeyStore } from '../../src/tickets/key-store.js';
import { type TicketScheme, utcDay } from '../../src/tickets/keyring.js';
import { fixtureRsaKeys } from '../helpers/rsa-keys.js';
import { issueTicket } from '../helpers/ticket-issue.js';
import { issueTicketV2 } from '../helpers/ticket-v2.js';
import { relayTomlLines, startTestRelay } from '../helpers/test-relay.js';

/**
 * Two test relays peered with each other (Protocol 2) on fixed loopback ports, so either can
 * be stopped and started again at the same address while the other runs.
 */

export interface PeerSide {
  name: string;
  dir: string;
  port: number;
  identity: string;
  relay: Relay | null;
}

export interface PeeredRelays {
  a: PeerSide;
  b: PeerSide;
  /** Start (or restart) one side with the current options. */
  start(side: PeerSide): Promise<Relay>;
  stop(side: PeerSide): Promise<void>;
  /** A ticket signed with `side`'s issuing key for today (v2 with RSA, v1 with AO). */
  ticket(side: PeerSide): { text: string; serial: Uint8Array };
  /** A relay config file for `side` (what the CLI reads: dataDir and peers). */
  configFile(side: PeerSide): string;
  close(): Promise<void>;
}

export interface PeerOptions {
  /** Ticket scheme both relays issue with (default "rsa", the relay's default). */
  scheme?: TicketScheme;
  acceptWhenOffline?: boolean;
  paymentEvery?: number;
  maxUnpaid?: number;
  /** Tunnel policy of both relays (e.g. allow a loopback echo server). */
  tunnel?: { ports?: (number | [number, number])[]; allowCidrs?: string[] };
  /** Where both relays log (e.g. a capture); silent by default. */
  logger?: Logger;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export async function startPeeredRelays(options: PeerOptions = {}): Promise<PeeredRelays> {
  const root = mkdtempSync(join(tmpdir(), 'powbridge-peers-'));
  const { scheme = 'rsa', tunnel, logger, ...peerOptions } = options;
  // Pre-generated RSA keys, one per side (their relays then start with a key for today).
  const generateRsaKey = fixtureRsaKeys(4);
  const side = async (name: string): Promise<PeerSide> => {
    const dir = join(root, name);
    const keys = await KeyStore.open(dir, { now: () => Date.now() / 1000, scheme, generateRsaKey });
    return { name, dir, port: await freePort(), identity: keys.identity.publicKeyHex, relay: null };
  };
  const a = await side('r1');
  const b = await side('r2');
  const other = (s: PeerSide) => (s === a ? b : a);

  const start = async (s: PeerSide): Promise<Relay> => {
    const peer = other(s);
    const { relay } = await startTestRelay({
      ...(tunnel ? { tunnel } : {}),
      ...(logger ? { logger } : {}),
      scheme,
      dataDir: s.dir,
      listen: `127.0.0.1:${s.port}`,
      peers: [
        {
          name: peer.name,
          url: `http://127.0.0.1:${peer.port}`,
          identity: peer.identity,
          ...peerOptions,
        },
      ],
      // Syncs are driven by the tests (syncPeer); the timer only backs them up.
      peering: { syncIntervalSeconds: 3600, requestTimeoutSeconds: 2 },
    });
    s.relay = relay;
    return relay;
  };
  const stop = async (s: PeerSide) => {
    const relay = s.relay;
    s.relay = null;
    await relay?.close();
  };
  return {
    a,
    b,
    start,
    stop,
    ticket(s) {
      const relay = s.relay;
      if (!relay) throw new Error(`${s.name} is not running`);
      const day = utcDay(Date.now() / 1000);
      const keys = relay.tickets.keys;
      const issuing = scheme === 'rsa' ? keys.issuingRsaKey(day) : keys.issuingKey(day);
      if (!issuing) throw new Error(`no ${scheme} issuing key`);
      return 'p' in issuing.key ? issueTicketV2(issuing.key, day) : issueTicket(issuing.key, day);
    },
    configFile(s) {
      const peer = other(s);
      const file = join(root, `${s.name}.toml`);
      writeFileSync(
        file,
        [
          ...relayTomlLines(s.dir, `127.0.0.1:${s.port}`),
          '[tickets]',
          `scheme = "${scheme}"`,
          '[[peers]]',
          `name = "${peer.name}"`,
          `url = "http://127.0.0.1:${peer.port}"`,
          `identity = "${peer.identity}"`,
          ...Object.entries(peerOptions).map(([k, v]) => `${k} = ${String(v)}`),
          '',
        ].join('\n'),
      );
      return file;
    },
    async close() {
      await stop(a);
      await stop(b);
      rmSync(root, { recursive: true, force: true });
    },
  };
}
