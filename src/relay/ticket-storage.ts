import { join } from 'node:path';
import { PostgresDatabase } from '../storage/postgres.js';
import { PostgresGrantStorage } from '../storage/postgres-grant-storage.js';
import { PostgresSpentLog } from '../storage/postgres-spent-log.js';
import type { GrantStorage } from '../storage/grant-storage.js';
import type { SpentLog } from '../storage/spent-log.js';
import { GRANT_STORE_FILE, GrantStore } from '../tickets/grant-store.js';
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
  // The file's permissions are checked as for key files: 0600, or the relay will not start.
  const password = passwordFile
    ? (await readPrivateFile(passwordFile)).replace(/\r?\n$/, '')
    : undefined;
  const database = await PostgresDatabase.open({
    url,
    password,
    onError: options.onConnectionError,
  });
  const spent = new PostgresSpentLog(database);
  const grants = new PostgresGrantStorage(database, { onError: options.onGrantError });
  return {
    spent,
    grants,
    description: `PostgreSQL ${database.description}`,
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
    close: async () => {
      await grants.close();
      await spent.close();
    },
  };
}
