import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { PostgresDatabase } from '../storage/postgres.js';
import { PostgresGrantStorage } from '../storage/postgres-grant-storage.js';
import { PostgresSpentLog } from '../storage/postgres-spent-log.js';
import { describeStorageUrl } from '../storage/storage-url.js';
import type { GrantStorage } from '../storage/grant-storage.js';
import type { SpentLog } from '../storage/spent-log.js';
import { ALWAYS_LEADING, FamilyLeader, type SyncLeadership } from '../storage/family-leader.js';
import type { PeerLedger } from '../storage/peer-ledger.js';
import { PostgresPeerLedger } from '../storage/postgres-peer-ledger.js';
import { openLedgerFile, peerLedgerPath } from '../peers/peer-report.js';
import { SqlitePeerLedger } from '../peers/peer-ledger.js';
import { GRANT_STORE_FILE, GrantStore } from '../tickets/grant-store.js';
import type { IssuedCountStorage } from '../storage/issued-counter.js';
import { PostgresIssuedCounts } from '../storage/postgres-issued-counts.js';
import { PostgresSessionSlots } from '../storage/postgres-session-slots.js';
import { MemorySessionSlots, type SessionSlots } from '../storage/session-slots.js';
import { ISSUED_STORE_FILE, IssuedStore } from '../tickets/issued-store.js';
import { readPrivateFile } from '../tickets/key-files.js';
import { SPENT_STORE_FILE, SpentStore } from '../tickets/spent-store.js';
import type { RelayConfig } from './config.js';

/**
 * Where the relay keeps spent tickets and paid grants, by `[storage]` (docs/operating.md): two
 * SQLite files in the data directory for a single relay (the default), or one PostgreSQL
 * database that a family of relays shares (`storage.url`). Everything above sees only the
 * `SpentLog` and `GrantStorage` interfaces (src/storage/).
 */

export interface TicketStorage {
  spent: SpentLog;
  grants: GrantStorage;
  /** What and where, without secrets: "SQLite in <dir>" or "PostgreSQL postgres://u@h:p/db". */
  description: string;
  /** The family's database (`storage.url`), for what else it keeps (the key vault); else null. */
  database: PostgresDatabase | null;
  close(): Promise<void>;
}

export interface TicketStorageOptions {
  /** A grant write that failed (the grant lasts until restart). */
  onGrantError: (err: unknown) => void;
  /** A pooled database connection that failed while idle (the pool replaces it). */
  onConnectionError: (err: unknown) => void;
}

export async function openTicketStorage(
  config: Pick<RelayConfig, 'relay' | 'storage'>,
  options: TicketStorageOptions,
): Promise<TicketStorage> {
  const { url, passwordFile } = config.storage;
  if (url === undefined) return openSqlite(config.relay.dataDir, options);
  const database = await PostgresDatabase.open({
    url,
    password: await storagePassword(passwordFile),
    onError: options.onConnectionError,
  });
  const spent = new PostgresSpentLog(database);
  const grants = new PostgresGrantStorage(database, { onError: options.onGrantError });
  return {
    spent,
    grants,
    description: `PostgreSQL ${database.description}`,
    database,
    close: async () => {
      await grants.close();
      await spent.close();
      await database.close();
    },
  };
}

function openSqlite(dataDir: string, options: TicketStorageOptions): TicketStorage {
  const spent = SpentStore.open(join(dataDir, SPENT_STORE_FILE));
  let grants: GrantStore;
  try {
    // Paid grants outlive a restart, as their spent tickets do (docs/design.md §6.3).
    grants = GrantStore.open(join(dataDir, GRANT_STORE_FILE), { onError: options.onGrantError });
  } catch (err) {
    void spent.close();
    throw err;
  }
  return {
    spent,
    grants,
    description: `SQLite in ${dataDir}`,
    database: null,
    close: async () => {
      await grants.close();
      await spent.close();
    },
  };
}

/** `storage.passwordFile`'s password; without one `pg` reads $PGPASSWORD (or ~/.pgpass). */
async function storagePassword(passwordFile: string | undefined): Promise<string | undefined> {
  // The file's permissions are checked as for key files: 0600, or the relay will not start.
  return passwordFile ? (await readPrivateFile(passwordFile)).replace(/\r?\n$/, '') : undefined;
}

/**
 * Protocol 2's storage (docs/design.md §7), opened beside the ticket storage for a relay with
 * peers: the peer ledger, and whether this instance runs the sync loop. A single relay keeps
 * `peers.sqlite` in its data directory and always syncs; a family shares the ledger in its
 * database and elects one instance to sync (src/storage/family-leader.ts). Closed before the
 * ticket storage, whose database it borrows.
 */
export interface PeerStorage {
  ledger: PeerLedger;
  leadership: SyncLeadership;
  close(): Promise<void>;
}

export interface PeerStorageOptions {
  /** This instance started or stopped running the family's sync loop. */
  onLeaderChange: (leading: boolean) => void;
  /** The leader election's own connection failed (it is made again). */
  onLeaderError: (err: unknown) => void;
}

export async function openPeerStorage(
  config: Pick<RelayConfig, 'relay' | 'peering'>,
  storage: Pick<TicketStorage, 'database'>,
  options: PeerStorageOptions,
): Promise<PeerStorage> {
  const { database } = storage;
  if (database === null) {
    const ledger = SqlitePeerLedger.open(peerLedgerPath(config.relay.dataDir));
    return { ledger, leadership: ALWAYS_LEADING, close: () => ledger.close() };
  }
  const ledger = new PostgresPeerLedger(database);
  const leadership = await FamilyLeader.start(database, {
    checkSeconds: config.peering.syncIntervalSeconds,
    onChange: options.onLeaderChange,
    onError: options.onLeaderError,
  });
  return {
    ledger,
    leadership,
    close: async () => {
      await leadership.close();
      await ledger.close();
    },
  };
}

/** Where `powbridge peers` finds the relay's peer ledger, whether the relay runs or not. */
export interface PeerLedgerPlace {
  /** What to show: the SQLite file's path, or "PostgreSQL postgres://u@h:p/db". */
  where: string;
  /** Whether there is a ledger yet: the file exists once the relay started with peers. */
  exists: boolean;
  /** The ledger (null while none exists), on a connection of its own; the caller closes it. */
  open: () => Promise<PeerLedger | null>;
}

export function peerLedgerPlace(config: Pick<RelayConfig, 'relay' | 'storage'>): PeerLedgerPlace {
  const { url, passwordFile } = config.storage;
  if (url === undefined) {
    const path = peerLedgerPath(config.relay.dataDir);
    return { where: path, exists: existsSync(path), open: () => openLedgerFile(path) };
  }
  return {
    where: `PostgreSQL ${describeStorageUrl(url)}`,
    exists: true,
    open: async () =>
      PostgresPeerLedger.open({ url, password: await storagePassword(passwordFile), poolSize: 2 }),
  };
}

/**
 * The issuer's storage (docs/design.md §6.2): Abe–Okamoto session slots and issued-ticket
 * counts. A single relay keeps its slots in memory (no round trip per session) and its counts
 * in `issued.sqlite`; a family keeps both in its database, so the K-sessions cap holds for the
 * whole family and a day has one count. Closed before the ticket storage, whose database it
 * borrows.
 */
export interface IssuanceStorage {
  slots: SessionSlots;
  counts: IssuedCountStorage;
  close(): Promise<void>;
}

export function openIssuanceStorage(
  config: Pick<RelayConfig, 'relay'>,
  storage: Pick<TicketStorage, 'database'>,
): IssuanceStorage {
  const { database } = storage;
  const slots = database ? new PostgresSessionSlots(database) : new MemorySessionSlots();
  const counts = database
    ? new PostgresIssuedCounts(database)
    : IssuedStore.open(join(config.relay.dataDir, ISSUED_STORE_FILE));
  return {
    slots,
    counts,
    close: async () => {
      await slots.close();
      await counts.close();
    },
  };
}
