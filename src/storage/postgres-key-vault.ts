import type pg from 'pg';
import { type FamilyKey, KeySealError, type SealLabel } from './key-sealing.js';
import { type PostgresDatabase, safeInteger, storageError } from './postgres.js';
import { inTransaction } from './postgres-transaction.js';

/**
 * A relay family's keys in PostgreSQL (docs/design.md §6.4, schema version 2): the identity and
 * every ticket key, each as its key file's text sealed under the family key (key-sealing.ts),
 * with the public parts in clear so an operator can see what is there with psql. The database
 * never holds a private key in clear, and a row that was changed, or moved to another key's
 * place, does not open.
 *
 * Changes happen inside `locked`, one transaction holding the family's key lock, so instances
 * that start or renew keys at once take turns and exactly one makes each new key.
 */

export type VaultKeyKind = SealLabel['kind'];

export interface VaultKey {
  kind: VaultKeyKind;
  /** The ticket key id (16 hex digits), or the identity's public key (64). */
  keyId: string;
  /** The scheme's file name (key-format.ts); null for the identity. */
  scheme: string | null;
  notBeforeDay: number | null;
  notAfterDay: number | null;
  /** Lowercase hex, in clear. */
  publicKey: string;
  /** The key file's text (secret), sealed when stored. */
  text: string;
}

/** The family key is not the one the vault's keys were sealed with. */
export class FamilyKeyMismatchError extends Error {
  override name = 'FamilyKeyMismatchError';
}

/** A row does not open under the right family key: changed, moved or damaged in the database. */
export class KeyVaultDamagedError extends Error {
  override name = 'KeyVaultDamagedError';
}

/** What may be done while holding the family's key lock. */
export interface KeyVaultSession {
  /** Every key, opened; throws FamilyKeyMismatchError or KeyVaultDamagedError. */
  keys(): Promise<VaultKey[]>;
  /** Store (or replace) a key, sealed with a fresh nonce. */
  put(key: VaultKey): Promise<void>;
  remove(kind: VaultKeyKind, keyId: string): Promise<void>;
  /** The change counter as this transaction sees it. */
  generation(): Promise<number>;
}

/** pg_advisory_xact_lock's key for the vault: "powkeys" in ASCII. */
const VAULT_LOCK = '31647756085197171';

const MISMATCH =
  'the family key does not open the keys in the database: every instance of a family ' +
  'needs the same storage.familyKeyFile (copy it from an instance that runs)';

interface KeyRow {
  kind: VaultKeyKind;
  key_id: string;
  scheme: string | null;
  not_before_day: string | null;
  not_after_day: string | null;
  public_key: string;
  nonce: Buffer;
  sealed: Buffer;
}

function day(value: string | null): number | null {
  return value === null ? null : safeInteger(value);
}

export class PostgresKeyVault {
  constructor(
    private readonly database: PostgresDatabase,
    private readonly familyKey: FamilyKey,
  ) {}

  /** The change counter, read without the lock: a sync with nothing new stops here. */
  async generation(): Promise<number> {
    try {
      const result = await this.database.pool.query<{ generation: string }>(
        'SELECT generation FROM key_vault_head',
      );
      return safeInteger(result.rows[0]?.generation ?? 0);
    } catch (err) {
      throw storageError(err);
    }
  }

  /**
   * Run `work` in one transaction holding the family's key lock; its changes commit together
   * when it resolves and are rolled back when it throws.
   */
  async locked<T>(work: (session: KeyVaultSession) => Promise<T>): Promise<T> {
    try {
      return await inTransaction(this.database.pool, async (client) => {
        await client.query('SELECT pg_advisory_xact_lock($1::bigint)', [VAULT_LOCK]);
        return work(this.session(client));
      });
    } catch (err) {
      throw storageError(err);
    }
  }

  private session(client: pg.PoolClient): KeyVaultSession {
    const familyKey = this.familyKey;
    /**
     * The stored check value must be ours. An empty vault takes ours: nothing is sealed under
     * another key then (a new family, or one changing its family key after emptying the vault).
     */
    const checkFamilyKey = async (): Promise<void> => {
      const head = await client.query<{ key_check: Buffer | null; empty: boolean }>(
        'SELECT key_check, NOT EXISTS (SELECT 1 FROM key_vault) AS empty FROM key_vault_head',
      );
      const row = head.rows[0];
      const stored = row?.key_check ?? null;
      if (stored !== null && familyKey.matches(stored)) return;
      if (stored !== null && row?.empty !== true) throw new FamilyKeyMismatchError(MISMATCH);
      await client.query('UPDATE key_vault_head SET key_check = $1', [familyKey.check]);
    };
    const bump = () => client.query('UPDATE key_vault_head SET generation = generation + 1');
    return {
      async keys() {
        await checkFamilyKey();
        const result = await client.query<KeyRow>(
          `SELECT kind, key_id, scheme, not_before_day, not_after_day, public_key, nonce, sealed
           FROM key_vault ORDER BY kind, key_id`,
        );
        return result.rows.map((row) => {
          let text: string;
          try {
            text = familyKey.open(
              { nonce: row.nonce, box: row.sealed },
              { kind: row.kind, keyId: row.key_id },
            );
          } catch (err) {
            if (!(err instanceof KeySealError)) throw err;
            throw new KeyVaultDamagedError(
              `${row.kind} key ${row.key_id} in the database does not open under the family ` +
                'key that opens the others: its row was changed or damaged; restore it from a ' +
                'backup, or delete the row and let an instance that holds the key upload it again',
            );
          }
          return {
            kind: row.kind,
            keyId: row.key_id,
            scheme: row.scheme,
            notBeforeDay: day(row.not_before_day),
            notAfterDay: day(row.not_after_day),
            publicKey: row.public_key,
            text,
          };
        });
      },
      async put(key) {
        await checkFamilyKey();
        const { nonce, box } = familyKey.seal(key.text, { kind: key.kind, keyId: key.keyId });
        await client.query(
          `INSERT INTO key_vault
             (kind, key_id, scheme, not_before_day, not_after_day, public_key, nonce, sealed)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
           ON CONFLICT (kind, key_id) DO UPDATE SET
             scheme = EXCLUDED.scheme, not_before_day = EXCLUDED.not_before_day,
             not_after_day = EXCLUDED.not_after_day, public_key = EXCLUDED.public_key,
             nonce = EXCLUDED.nonce, sealed = EXCLUDED.sealed`,
          [
            key.kind,
            key.keyId,
            key.scheme,
            key.notBeforeDay,
            key.notAfterDay,
            key.publicKey,
            nonce,
            box,
          ],
        );
        await bump();
      },
      async remove(kind, keyId) {
        const result = await client.query('DELETE FROM key_vault WHERE kind = $1 AND key_id = $2', [
          kind,
          keyId,
        ]);
        if ((result.rowCount ?? 0) > 0) await bump();
      },
      async generation() {
        const result = await client.query<{ generation: string }>(
          'SELECT generation FROM key_vault_head',
        );
        return safeInteger(result.rows[0]?.generation ?? 0);
      },
    };
  }
}
