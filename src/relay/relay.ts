import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { SocksProxyAgent } from 'socks-proxy-agent';
import { Teardown } from '../lib/teardown.js';
import { WorkBudget } from '../lib/work-budget.js';
import { routeUpgrades } from '../lib/upgrade-router.js';
import { type Logger, silentLogger } from '../log.js';
import type { WorkSource } from '../sources/work-source.js';
import { HtbShaper } from '../qos/htb-shaper.js';
import { TUNNEL_PATH, TunnelConnector } from '../qos/tunnel.js';
import { registerPeerApi } from '../peers/peer-api.js';
import { PEER_KEYS_DIR, PeerKeyDirectory } from '../peers/peer-keys.js';
import { Peering } from '../peers/peering.js';
import { PostgresKeyVault } from '../storage/postgres-key-vault.js';
import type { SpentLog } from '../storage/spent-log.js';
import { IssuedCounter } from '../storage/issued-counter.js';
import { createBlindSignerPool } from '../tickets/blind-signer.js';
import { GrantBook } from '../tickets/grant-book.js';
import { TicketIssuer } from '../tickets/issuer.js';
import { utcDay } from '../tickets/keyring.js';
import type { KeyStore } from '../tickets/key-store.js';
import { Redeemer } from '../tickets/redeemer.js';
import { RsaIssuer } from '../tickets/rsa-issuer.js';
import type { RsaPrivateKey } from '../tickets/rsa-scheme.js';
import { openTicketKeys, TicketDesk } from '../tickets/ticket-desk.js';
import { createTicketVerifierPool } from '../tickets/ticket-verifier.js';
import { type OnionService, startOnionService } from '../tor/onion-service.js';
import { CIRCUIT_PATH, CircuitConnector } from './circuit-connector.js';
import { historySamples, type RelayConfig, splitHostPort } from './config.js';
import { createSource } from './create-source.js';
import {
  createHttpApi,
  relayDescriptor,
  type StatusParts,
  statusReader,
  ticketStatus,
} from './http-api.js';
import { RelayMetrics } from './metrics.js';
import { FamilyKeys, type FamilyKeysOptions, readFamilyKeyFile } from './family-keys.js';
import { createShareHasher } from './share-hasher.js';
import { historySample, StatusHistory } from './status-history.js';
import type { LoadStatus, TunnelStatus } from './status-schema.js';
import { RelayStats } from './stats.js';
import { Stratifier } from './stratifier.js';
import { StratumConnector } from './stratum-connector.js';
import {
  openIssuanceStorage,
  openPeerStorage,
  openTicketStorage,
  type TicketStorage,
} from './ticket-storage.js';
import { relayVersion } from './version.js';

/**
 * The relay bridge's composition root: the one place that builds its parts, in dependency
 * order, and stops them in reverse. Data flows work source → stratifier → connectors, with
 * stats, metrics and the HTTP API listening on the side.
 */

export interface Relay {
  /** Where the HTTP API and /v1/circuit listen. */
  readonly url: string;
  /** host:port of the Stratum port for standard miners, when configured. */
  readonly stratumAddress: string | null;
  readonly stratifier: Stratifier;
  readonly source: WorkSource;
  readonly stats: RelayStats;
  /** Samples of the status for the dashboard (GET /v1/status/history). */
  readonly history: StatusHistory;
  readonly app: FastifyInstance;
  readonly tickets: TicketDesk;
  /** The onion service made through Tor's control port (tor.control); null without one. */
  readonly onion: OnionService | null;
  /** Protocol 2 with backup relays; null when no peers are configured. */
  readonly peering: Peering | null;
  /** The family's keys kept in step through the database (storage.familyKeyFile); else null. */
  readonly familyKeys: FamilyKeys | null;
  close(): Promise<void>;
}

export interface RelayDeps {
  logger?: Logger;
  /** Replace the configured source (tests drive a ManualSource through the whole relay). */
  source?: WorkSource;
  /** Tor control password when tor.passwordFile is not set (the CLI: $POWBRIDGE_TOR_PASSWORD). */
  torPassword?: string;
  /** Where new RSA ticket keys come from (tests hand out pre-made ones: safe primes are slow). */
  generateRsaKey?: () => Promise<RsaPrivateKey>;
  /** Unix seconds stamped on the status history's samples (tests seed a past with it). */
  historyClock?: () => number;
}

export async function startRelay(config: RelayConfig, deps: RelayDeps = {}): Promise<Relay> {
  const teardown = new Teardown();
  try {
    return await assembleRelay(config, deps, teardown);
  } catch (err) {
    // A start that fails halfway stops what it started, through the same steps as close().
    await teardown.run();
    throw err;
  }
}

/**
 * Every part built in dependency order and handed what it needs through its constructor:
 * stores and keys, Protocol 2, redeemer and issuer, the work side, the HTTP API and the
 * connectors, then the listeners. Each part's stop goes on `teardown` as soon as the part
 * exists, so close() runs them in reverse.
 */
async function assembleRelay(
  config: RelayConfig,
  deps: RelayDeps,
  teardown: Teardown,
): Promise<Relay> {
  const logger = deps.logger ?? silentLogger;
  const now = () => Date.now() / 1000;
  const startedAt = now();
  const { dataDir } = config.relay;
  const { difficulty, limits } = config;
  const algorithm = config.source.algorithm;

  // First, before anything holds a resource: a bad class tree fails the start cleanly.
  const shaper = new HtbShaper({
    // A tree from the file was checked by the config schema (errors name tunnel.classes[i]).
    ...(config.tunnel.classes ? { classes: config.tunnel.classes } : {}),
    // Checked against the tree by the config schema (docs/design.md §8's invariant).
    ...(config.tunnel.groups ? { groups: config.tunnel.groups } : {}),
    linkBitsPerSecond: config.tunnel.linkMbit * 1e6,
    // Buckets cover event-loop timer lateness (see defaultHtbConfig).
    burstSeconds: 0.02,
  });
  teardown.add(() => shaper.close());
  for (const warning of shaper.warnings) logger.warn({ warning }, 'tunnel class tree');

  // Stores and keys.
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  // Spent tickets and paid grants: SQLite in dataDir, or a family's PostgreSQL ([storage]).
  const storage = await openTicketStorage(config, {
    onGrantError: (err) =>
      logger.error({ err: String(err) }, 'grant not stored: it lasts until restart'),
    onConnectionError: (err) =>
      logger.warn({ err: String(err) }, 'ticket database connection lost: reconnecting'),
  });
  teardown.add(() => storage.close());
  logger.info({ storage: storage.description }, 'ticket storage open');
  const keyOptions = {
    lifetimeDays: config.tickets.keyLifetimeDays,
    now,
    scheme: config.tickets.scheme,
    ...(deps.generateRsaKey ? { generateRsaKey: deps.generateRsaKey } : {}),
  };
  // With storage.familyKeyFile the keys are the family's, kept in step through the database.
  const familyKeys = await openFamilyKeys(config, storage, keyOptions, logger);
  const keys = familyKeys?.keys ?? (await openTicketKeys(dataDir, keyOptions));
  if (familyKeys) {
    familyKeys.start();
    teardown.add(() => familyKeys.stop());
  }
  const { spent, grants: grantStore } = storage;
  // Paid grants outlive a restart, as their spent tickets do (docs/design.md §6.3).
  const grants = new GrantBook();
  const restored = await grantStore.restore(grants, now());
  if (restored > 0) logger.info({ restored }, 'restored paid grants');
  const peering =
    config.peers.length > 0
      ? await openPeering(config, { keys, spent, storage, now }, logger, teardown)
      : null;

  // Tickets: redeemed through Protocol 2's gate when there are peers.
  const redeemer = new Redeemer({
    keyring: peering?.keyring ?? keys,
    store: spent,
    grants,
    grantStore,
    // A family shares grants: a top-up may name one another instance made.
    grantsShared: storage.database !== null,
    windowSeconds: config.tickets.windowSeconds,
    ...(peering ? { foreign: peering.gate } : {}),
    // Signature checks off the event loop, within one budget for every circuit (issue 15).
    verifier: createTicketVerifierPool({ threads: config.verify.threads }),
    budget: new WorkBudget({ perSecond: limits.maxVerificationsPerSecond }),
  });
  teardown.add(() => redeemer.close());
  // Issuance: the AO K-sessions cap and the issued counts, family-wide on a family's database.
  const issuance = openIssuanceStorage(config, storage);
  teardown.add(() => issuance.close());
  const issuedCounter = new IssuedCounter(issuance.counts, {
    today: () => utcDay(now()),
    onError: (err) => logger.warn({ err: String(err) }, 'issued-ticket count not stored: retrying'),
  });
  issuedCounter.start();
  teardown.add(() => issuedCounter.close());
  let issuer: TicketIssuer | RsaIssuer;
  if (config.tickets.scheme === 'rsa') {
    const signer = createBlindSignerPool({ threads: config.tickets.signerThreads });
    teardown.add(() => signer.close());
    issuer = new RsaIssuer({ keyring: keys, signer, price: config.tickets.price, now });
    issuer.on('failure', () => logger.error('RSA signing failure caught by the check'));
    issuer.on('issued', (e) => issuedCounter.count(e.day, e.keyId, 'rsa'));
  } else {
    issuer = new TicketIssuer({
      keyring: keys,
      price: config.tickets.price,
      maxOpenSessions: config.tickets.maxOpenSessions,
      sessionTtlMs: config.tickets.sessionTtlSeconds * 1000,
      slots: issuance.slots,
      now,
    });
    issuer.on('issued', (e) => issuedCounter.count(e.day, e.keyId, 'ao'));
    issuer.on('slotsFailed', (err) =>
      logger.warn({ err: String(err) }, 'ticket sessions: database unreachable, requests wait'),
    );
  }
  const tickets = new TicketDesk(
    { keys, store: spent, issuer, redeemer, grantStore },
    {
      price: config.tickets.price,
      windowSeconds: config.tickets.windowSeconds,
      keyLifetimeDays: config.tickets.keyLifetimeDays,
      backupRelays: config.peers.map((p) => ({
        identity: p.identity,
        // http(s) → ws(s): clients reach a backup's circuit like ours.
        url: new URL(CIRCUIT_PATH, p.url.replace(/^http/, 'ws')).toString(),
      })),
      descriptorBase: () =>
        relayDescriptor({
          algorithm,
          initialDifficulty: difficulty.initial,
          ticketDifficulty: difficulty.ticketDifficulty,
          vardiffTargetSeconds: difficulty.targetShareSeconds,
        }),
      now,
      logger: logger.child({ component: 'tickets' }),
      ...(familyKeys ? { maintainKeys: () => familyKeys.maintain() } : {}),
    },
  );
  tickets.start();
  teardown.add(() => tickets.stop());

  // The work side: source → stratifier, with stats listening.
  const source = deps.source ?? createSource(config, logger);
  const hasher = await createShareHasher(algorithm, { threads: config.verify.threads });
  teardown.add(() => hasher.close());
  const stratifier = new Stratifier({
    source,
    algorithm,
    hasher: hasher.hash,
    initialDifficulty: difficulty.initial,
    ticketDifficulty: difficulty.ticketDifficulty,
    maxClients: limits.maxClients,
    maxStratumClients: limits.maxStratumClients,
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
  teardown.add(() => stats.detach());

  // The circuit connector first: its counts are read by the status and metrics (its stop is
  // added with the other connectors', so it still runs before the HTTP server's).
  const circuits = new CircuitConnector(stratifier, {
    limits: {
      maxFrameBytes: limits.maxFrameBytes,
      maxInvalidFrames: limits.maxInvalidFrames,
      maxRequestsPerSecond: limits.maxRequestsPerSecond,
      maxUnregistered: limits.maxUnregistered,
      maxUnregisteredRequestsPerSecond: limits.maxUnregisteredRequestsPerSecond,
      registerTimeoutMs: limits.registerTimeoutSeconds * 1000,
      ticketSessionCost: config.tickets.sessionTtlSeconds,
    },
    logger: logger.child({ component: 'circuit' }),
    tickets: tickets.service,
  });

  // The tunnel too: the status counts its streams (its stop is added with the connectors').
  const tunnels = new TunnelConnector({
    grants: redeemer.grants,
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
    // A family's instances see each other's grants through the database (docs/design.md §6.3).
    ...(storage.database !== null
      ? {
          fetchGrant: async (id: string) => {
            const runs = await grantStore.load(id, now());
            redeemer.grants.adopt(id, runs, now());
          },
        }
      : {}),
  });
  // Every leaf class, 0 when it has no stream, so the dashboard's series do not come and go.
  const leaves = shaper.htb.leafNames;
  const readTunnel = (): TunnelStatus => ({
    streams: {
      ...Object.fromEntries(leaves.map((leaf) => [leaf, 0])),
      ...tunnels.streamsByClass(),
    },
    opened: tunnels.counts().opened,
  });

  // HTTP: status, metrics, descriptor, dashboard, peer API.
  const metrics = new RelayMetrics(stats, { qos: () => shaper.stats() });
  const readTickets = () => ({
    ...ticketStatus(tickets.issued(), redeemer.counts()),
    issuedToday: issuedCounter.today(utcDay(now())),
  });
  metrics.watchTickets(readTickets);
  // What was shed or refused for load (issue 15): 38s, the unregistered cap, the deadline.
  const readLoad = (): LoadStatus => ({
    overloaded: { redeem: redeemer.overloaded(), share: hasher.overloaded() },
    circuits: circuits.counts(),
  });
  metrics.watchLoad(readLoad);
  const version = relayVersion();
  const statusParts: StatusParts = {
    stats,
    upstreamUrl: () => source.status().upstream,
    qos: () => shaper.stats(),
    tickets: readTickets,
    load: readLoad,
    relayInfo: () => ({ version, startedAt, uptimeSeconds: now() - startedAt }),
    tunnel: readTunnel,
  };
  // The dashboard's past: samples of the same numbers /v1/status shows (started below).
  const readStatus = statusReader(statusParts);
  const history = new StatusHistory({
    read: () => historySample(readStatus()),
    intervalSeconds: config.status.sampleSeconds,
    capacity: historySamples(config.status),
    ...(deps.historyClock ? { now: deps.historyClock } : {}),
  });
  const app = createHttpApi({
    ...statusParts,
    stratifier,
    metrics,
    descriptor: () => tickets.descriptor(),
    history,
    ...(peering
      ? { sections: { peers: () => peering.status(), peerApi: () => peering.apiStatus() } }
      : {}),
    logger: logger.child({ component: 'http' }),
  });
  teardown.add(() => app.close());
  if (peering) {
    peering.registerMetrics(metrics.registry);
    registerPeerApi(app, {
      peers: peering.roster,
      handlers: peering.handlers((ticket, at, origin) =>
        redeemer.spendForSettlement(ticket, at, origin),
      ),
      identity: keys.identity,
      clockSkewSeconds: config.peering.clockSkewSeconds,
      guard: peering.apiGuard,
      logger: logger.child({ component: 'peer-api' }),
    });
  }

  // Connectors: circuits and the tunnel on the HTTP port, standard miners on their own.
  teardown.add(() => circuits.close());
  teardown.add(() => tunnels.close());
  routeUpgrades(
    app.server,
    new Map([
      [CIRCUIT_PATH, circuits.handleUpgrade.bind(circuits)],
      [TUNNEL_PATH, tunnels.handleUpgrade.bind(tunnels)],
    ]),
  );
  const miners = config.relay.stratumListen
    ? new StratumConnector(stratifier, {
        initialDifficulty: difficulty.stratumInitial,
        limits: {
          // Room for as many again in their handshake, each bounded by its deadline.
          maxConnections: 2 * limits.maxStratumClients,
          handshakeTimeoutMs: limits.stratumHandshakeTimeoutSeconds * 1000,
          shareTimeoutMs: limits.stratumShareTimeoutSeconds * 1000,
        },
        logger: logger.child({ component: 'stratum' }),
      })
    : null;
  if (miners) {
    teardown.add(() => miners.close());
    stats.attachStratum(miners);
    metrics.watchStratum();
  }

  // Start: work flows, then the listeners, then Tor (which forwards to a listener that exists).
  stratifier.start();
  teardown.add(() => stratifier.stop());
  source.start();
  teardown.add(() => source.stop());
  const { host, port } = splitHostPort(config.relay.listen);
  await app.listen({ host, port });
  let stratumAddress: string | null = null;
  if (miners && config.relay.stratumListen) {
    const at = splitHostPort(config.relay.stratumListen);
    await miners.listen(at.host, at.port);
    const bound = miners.address();
    if (bound) stratumAddress = `${at.host}:${bound.port}`;
  }
  const onion = config.tor.control
    ? await startRelayOnion(config, deps, app.server.address() as AddressInfo, logger)
    : null;
  if (onion) {
    // Stopped first, so Tor stops sending clients to a relay that is going away.
    teardown.add(() => onion.close());
    tickets.addEndpoint('onion', onion.url('ws', CIRCUIT_PATH));
  }
  peering?.start();
  history.start();
  teardown.add(() => history.stop());

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
    history,
    app,
    tickets,
    peering,
    onion,
    familyKeys,
    close: () => teardown.run(),
  };
}

/** The family's key vault on the ticket database, when storage.familyKeyFile is set. */
async function openFamilyKeys(
  config: RelayConfig,
  storage: TicketStorage,
  keyOptions: FamilyKeysOptions['keys'],
  logger: Logger,
): Promise<FamilyKeys | null> {
  const { familyKeyFile } = config.storage;
  if (familyKeyFile === undefined || storage.database === null) return null;
  const familyKeys = await FamilyKeys.open({
    vault: new PostgresKeyVault(storage.database, await readFamilyKeyFile(familyKeyFile)),
    dataDir: config.relay.dataDir,
    where: storage.database.description,
    keys: keyOptions,
    logger: logger.child({ component: 'family-keys' }),
  });
  logger.info({ identity: familyKeys.keys.identity.publicKeyHex }, 'family keys in step');
  return familyKeys;
}

/** Protocol 2: the peer ledger and key cache opened here, the rest built by Peering. */
async function openPeering(
  config: RelayConfig,
  {
    keys,
    spent,
    storage,
    now,
  }: { keys: KeyStore; spent: SpentLog; storage: TicketStorage; now: () => number },
  logger: Logger,
  teardown: Teardown,
): Promise<Peering> {
  const { dataDir } = config.relay;
  // Beside the spent log: peers.sqlite, or the family's database with one instance syncing.
  const peerStorage = await openPeerStorage(config, storage, {
    onLeaderChange: (leading) =>
      logger.info(
        { leading },
        leading ? 'running the peer sync loop' : 'another instance syncs peers',
      ),
    onLeaderError: (err) =>
      logger.warn({ err: String(err) }, 'peer sync leader connection lost: campaigning again'),
  });
  teardown.add(() => peerStorage.close());
  const { ledger, leadership } = peerStorage;
  const peering = new Peering({
    peers: config.peers,
    settings: config.peering,
    identity: keys.identity,
    ownKeys: keys,
    store: spent,
    ledger,
    leadership,
    keys: new PeerKeyDirectory(join(dataDir, PEER_KEYS_DIR), now),
    now,
    logger: logger.child({ component: 'peers' }),
    apiLogger: logger.child({ component: 'peer-api' }),
    ...(config.peering.proxy ? { agent: new SocksProxyAgent(config.peering.proxy) } : {}),
  });
  teardown.add(() => peering.stop());
  return peering;
}

/** The onion service through Tor's control port, forwarding to the bound HTTP listener. */
function startRelayOnion(
  config: RelayConfig,
  deps: RelayDeps,
  bound: AddressInfo,
  logger: Logger,
): Promise<OnionService> {
  return startOnionService({
    control: splitHostPort(config.tor.control ?? ''),
    dataDir: config.relay.dataDir,
    target: { host: bound.address, port: bound.port },
    virtualPort: config.tor.virtualPort,
    ...(config.tor.passwordFile ? { passwordFile: config.tor.passwordFile } : {}),
    ...(deps.torPassword ? { password: deps.torPassword } : {}),
    ...(config.tor.cookieFile ? { cookieFile: config.tor.cookieFile } : {}),
    logger: logger.child({ component: 'tor' }),
  });
}
