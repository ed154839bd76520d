import { readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { SocksProxyAgent } from 'socks-proxy-agent';
import { type Logger, silentLogger } from '../log.js';
import { GbtSource } from '../sources/gbt-source.js';
import { StratumPool } from '../sources/stratum-pool.js';
import type { WorkSource } from '../sources/work-source.js';
import type { HtbInput } from '../qos/htb-config.js';
import { HtbShaper } from '../qos/htb-shaper.js';
import { TUNNEL_PATH, TunnelConnector } from '../qos/tunnel.js';
import { registerPeerApi } from '../peers/peer-api.js';
import { Peering } from '../peers/peering.js';
import { TicketDesk } from '../tickets/ticket-desk.js';
import { type OnionService, startOnionService } from '../tor/onion-service.js';
import { BIP320_MASK } from '../work/version.js';
import { CIRCUIT_PATH, CircuitConnector } from './circuit-connector.js';
import { type RelayConfig, splitHostPort } from './config.js';
import { createHttpApi, relayDescriptor, ticketStatus } from './http-api.js';
import { RelayMetrics } from './metrics.js';
import { createShareHasher, type ShareHasher } from './share-hasher.js';
import { RelayStats } from './stats.js';
import { Stratifier } from './stratifier.js';
import { StratumConnector } from './stratum-connector.js';
import { routeUpgrades } from './upgrade-router.js';

/**
 * The relay bridge assembled from its parts, in data-flow order: work source → stratifier →
 * connectors, with stats and the HTTP API listening on the side. `startRelay` wires and
 * starts everything; `close` stops it in reverse order.
 */

export interface Relay {
  /** Where the HTTP API and /v1/circuit listen. */
  readonly url: string;
  /** host:port of the Stratum port for standard miners, when configured. */
  readonly stratumAddress: string | null;
  readonly stratifier: Stratifier;
  readonly source: WorkSource;
  readonly stats: RelayStats;
  readonly app: FastifyInstance;
  readonly tickets: TicketDesk;
  /** The onion service made through Tor's control port (tor.control); null without one. */
  readonly onion: OnionService | null;
  /** Protocol 2 with backup relays; null when no peers are configured. */
  readonly peering: Peering | null;
  close(): Promise<void>;
}

export interface RelayDeps {
  logger?: Logger;
  /** Replace the configured source (tests drive a ManualSource through the whole relay). */
  source?: WorkSource;
  /** Tor control password when tor.passwordFile is not set (the CLI: $POWBRIDGE_TOR_PASSWORD). */
  torPassword?: string;
}

export function createSource(config: RelayConfig, logger: Logger): WorkSource {
  const { source } = config;
  if (source.type === 'node') {
    const node = source.node!;
    return new GbtSource(
      {
        rpcUrl: node.rpcUrl,
        auth: node.rpcCookieFile
          ? { cookieFile: node.rpcCookieFile }
          : { user: node.rpcUser!, password: node.rpcPassword! },
        payoutAddress: node.payoutAddress,
        coinbaseTag: node.coinbaseTag,
        longPoll: node.longPoll,
        pollIntervalMs: node.pollIntervalSeconds * 1000,
        algorithm: source.algorithm,
      },
      { logger: logger.child({ component: 'source' }) },
    );
  }
  return new StratumPool({
    pools: source.pools!.map((p) => ({
      url: p.url,
      user: p.user,
      password: p.password,
      tls: {
        rejectUnauthorized: p.tlsRejectUnauthorized,
        ...(p.tlsCaFile ? { ca: readFileSync(p.tlsCaFile, 'utf8') } : {}),
      },
    })),
    algorithm: source.algorithm,
    requestTimeoutMs: source.requestTimeoutSeconds * 1000,
    primaryRetryMs: source.primaryRetrySeconds * 1000,
    versionRolling: source.versionRolling ? { mask: BIP320_MASK } : null,
    logger: logger.child({ component: 'source' }),
  });
}

export async function startRelay(config: RelayConfig, deps: RelayDeps = {}): Promise<Relay> {
  const logger = deps.logger ?? silentLogger;
  // First, before anything holds a resource: a bad class tree fails the start cleanly.
  const shaper = new HtbShaper({
    // The tree from the file is checked by parseHtbConfig inside HtbShaper (named errors).
    ...(config.tunnel.classes
      ? { config: { classes: config.tunnel.classes } as unknown as HtbInput }
      : {}),
    linkBitsPerSecond: config.tunnel.linkMbit * 1e6,
    // Buckets cover event-loop timer lateness (see defaultHtbConfig).
    burstSeconds: 0.02,
  });
  for (const warning of shaper.warnings) logger.warn({ warning }, 'tunnel class tree');
  await mkdir(config.relay.dataDir, { recursive: true, mode: 0o700 });
  const algorithm = config.source.algorithm;
  const source = deps.source ?? createSource(config, logger);
  const hasher: ShareHasher = await createShareHasher(algorithm, {
    threads: config.verify.threads,
  });
  const { difficulty, limits } = config;
  const stratifier = new Stratifier({
    source,
    algorithm,
    hasher: hasher.hash,
    initialDifficulty: difficulty.initial,
    ticketDifficulty: difficulty.ticketDifficulty,
    maxClients: limits.maxClients,
    vardiff: {
      targetShareSeconds: difficulty.targetShareSeconds,
      retargetSeconds: difficulty.retargetSeconds,
      minDifficulty: difficulty.min,
      maxDifficulty: difficulty.max,
    },
    logger: logger.child({ component: 'stratifier' }),
  });
  const stats = new RelayStats();
  stats.attach(stratifier);
  const metrics = new RelayMetrics(stats, { qos: () => shaper.stats() });
  let tickets: TicketDesk;
  // Assigned inside TicketDesk.open's callback, so TS must not narrow it to null here.
  let peering = null as Peering | null;
  try {
    tickets = await TicketDesk.open({
      dataDir: config.relay.dataDir,
      ...config.tickets,
      backupRelays: config.peers.map((p) => ({
        identity: p.identity,
        // http(s) → ws(s): clients reach a backup's circuit like ours.
        url: new URL(CIRCUIT_PATH, p.url.replace(/^http/, 'ws')).toString(),
      })),
      ...(config.peers.length > 0
        ? {
            peers: ({ keys, store }) => {
              peering = new Peering({
                peers: config.peers,
                settings: config.peering,
                dataDir: config.relay.dataDir,
                identity: keys.identity,
                ownKeys: keys,
                store,
                logger: logger.child({ component: 'peers' }),
                ...(config.peering.proxy
                  ? { agent: new SocksProxyAgent(config.peering.proxy) }
                  : {}),
              });
              return { keyring: peering.keyring, foreign: peering.gate };
            },
          }
        : {}),
      descriptorBase: () =>
        relayDescriptor({
          algorithm,
          initialDifficulty: difficulty.initial,
          ticketDifficulty: difficulty.ticketDifficulty,
          vardiffTargetSeconds: difficulty.targetShareSeconds,
        }),
      logger: logger.child({ component: 'tickets' }),
    });
  } catch (err) {
    // Key files refused (permissions, damage): leave nothing running behind.
    await peering?.close();
    stats.detach();
    shaper.close();
    await hasher.close();
    throw err;
  }
  const readTickets = () => ticketStatus(tickets.issuer.issued(), tickets.redeemer.counts());
  metrics.watchTickets(readTickets);
  const app = createHttpApi({
    stratifier,
    stats,
    metrics,
    descriptor: () => tickets.descriptor(),
    upstreamUrl: () => source.status().upstream,
    qos: () => shaper.stats(),
    tickets: readTickets,
    ...(peering ? { sections: { peers: () => peering?.status() } } : {}),
    logger: logger.child({ component: 'http' }),
  });
  if (peering) {
    const redeemer = tickets.redeemer;
    peering.useTicketSpender((ticket, now, origin) =>
      redeemer.spendForSettlement(ticket, now, origin),
    );
    peering.registerMetrics(metrics.registry);
    registerPeerApi(app, {
      peering,
      identity: tickets.keys.identity,
      clockSkewSeconds: config.peering.clockSkewSeconds,
      logger: logger.child({ component: 'peer-api' }),
    });
  }
  const circuits = new CircuitConnector(stratifier, {
    limits: {
      maxFrameBytes: limits.maxFrameBytes,
      maxInvalidFrames: limits.maxInvalidFrames,
      maxRequestsPerSecond: limits.maxRequestsPerSecond,
    },
    logger: logger.child({ component: 'circuit' }),
    tickets: tickets.service,
  });
  const tunnels = new TunnelConnector({
    grants: tickets.redeemer.grants,
    shaper,
    policy: {
      ports: config.tunnel.ports,
      allowPrivate: config.tunnel.allowPrivate,
      allowCidrs: config.tunnel.allowCidrs,
    },
    limits: {
      maxStreams: config.tunnel.maxStreams,
      idleTimeoutMs: config.tunnel.idleTimeoutSeconds * 1000,
    },
    logger: logger.child({ component: 'tunnel' }),
  });
  routeUpgrades(
    app.server,
    new Map([
      [CIRCUIT_PATH, circuits.handleUpgrade.bind(circuits)],
      [TUNNEL_PATH, tunnels.handleUpgrade.bind(tunnels)],
    ]),
  );

  const miners = config.relay.stratumListen
    ? new StratumConnector(stratifier, { logger: logger.child({ component: 'stratum' }) })
    : null;

  stratifier.start();
  source.start();
  const { host, port } = splitHostPort(config.relay.listen);
  let stratumAddress: string | null = null;
  let onion: OnionService | null = null;
  // Everything above in reverse order: for close(), and for a start that fails from here on.
  const stopAll = async () => {
    // First, so Tor stops sending clients to a relay that is going away.
    await onion?.close();
    await miners?.close();
    circuits.close();
    tunnels.close();
    shaper.close();
    await app.close();
    stratifier.stop();
    stats.detach();
    await peering?.close();
    tickets.close();
    await source.stop();
    await hasher.close();
  };
  try {
    await app.listen({ host, port });
    if (miners && config.relay.stratumListen) {
      const at = splitHostPort(config.relay.stratumListen);
      await miners.listen(at.host, at.port);
      const bound = miners.address();
      if (bound) stratumAddress = `${at.host}:${bound.port}`;
    }
    // Last: Tor forwards the onion service to the listener, which exists now.
    if (config.tor.control) {
      const bound = app.server.address() as AddressInfo;
      onion = await startOnionService({
        control: splitHostPort(config.tor.control),
        dataDir: config.relay.dataDir,
        target: { host: bound.address, port: bound.port },
        virtualPort: config.tor.virtualPort,
        ...(config.tor.passwordFile ? { passwordFile: config.tor.passwordFile } : {}),
        ...(deps.torPassword ? { password: deps.torPassword } : {}),
        ...(config.tor.cookieFile ? { cookieFile: config.tor.cookieFile } : {}),
        logger: logger.child({ component: 'tor' }),
      });
      tickets.addEndpoint('onion', onion.url('ws', CIRCUIT_PATH));
    }
  } catch (err) {
    await stopAll();
    throw err;
  }
  peering?.start();
  const address = app.server.address() as AddressInfo;
  const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `http://${shownHost}:${address.port}`;
  logger.info(
    { url, stratum: stratumAddress, source: config.source.type, algorithm },
    'relay listening',
  );

  return {
    url,
    stratumAddress,
    stratifier,
    source,
    stats,
    app,
    tickets,
    peering,
    onion,
    close: stopAll,
  };
}
