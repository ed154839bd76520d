import pg from 'pg';
import type { PostgresDatabase } from './postgres.js';

/**
 * Which instance of a relay family runs Protocol 2's sync loop (docs/design.md §7): pulling
 * the peers' spent logs and delivering our bills and settlements. Every step of a round is
 * idempotent, so two instances syncing at once would do no harm, only the same work twice and
 * twice the requests at each peer; one at a time is what a peer should see of a family.
 *
 * With PostgreSQL the leader is whoever holds a session-level advisory lock, taken on a
 * connection of its own (not the pool's: a pooled connection would hand the lock to whatever
 * borrows it next). The lock lives as long as that session: when the leader's process dies,
 * or its connection drops, the server releases it and the next instance to try takes it. A
 * leader checks its connection each period and steps down the moment it fails, so it never
 * goes on syncing on a lock it may have lost. The lock is keyed by the schema too, so families
 * in separate schemas of one database elect separately. A single relay on SQLite always leads.
 */

export interface SyncLeadership {
  /** Whether this instance runs the sync loop now. */
  isLeading(): boolean;
  close(): Promise<void>;
}

/** A single relay (SQLite): it always syncs. */
export const ALWAYS_LEADING: SyncLeadership = {
  isLeading: () => true,
  close: () => Promise.resolve(),
};

/** The first key of the leader's advisory lock ("sync" in ASCII); the second is the schema's hash. */
const SYNC_LOCK_CLASS = 0x73796e63;
/** How the leader's connection shows in pg_stat_activity. */
export const LEADER_APPLICATION_NAME = 'powbridge-sync-leader';

export interface FamilyLeaderOptions {
  /** How often a standby tries for the lock and the leader checks its connection. */
  checkSeconds: number;
  /** Called when this instance starts or stops leading. */
  onChange?: (leading: boolean) => void;
  /** The lock's connection failed (it is made again at the next check). */
  onError?: (err: unknown) => void;
}

export class FamilyLeader implements SyncLeadership {
  private client: pg.Client | null = null;
  private leading = false;
  private closed = false;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> = Promise.resolve();

  private constructor(
    private readonly config: pg.ClientConfig,
    private readonly options: FamilyLeaderOptions,
  ) {}

  /** Campaign on `database`'s server now and every `checkSeconds`; resolves after the first try. */
  static async start(
    database: PostgresDatabase,
    options: FamilyLeaderOptions,
  ): Promise<FamilyLeader> {
    const pool = database.pool.options;
    const leader = new FamilyLeader(
      {
        ...pool,
        // pg keeps the password out of the spread (not enumerable, so it is never printed).
        password: pool.password,
        application_name: LEADER_APPLICATION_NAME,
        keepAlive: true,
      },
      options,
    );
    await leader.check();
    leader.timer = setInterval(() => void leader.check(), options.checkSeconds * 1000);
    leader.timer.unref();
    return leader;
  }

  isLeading(): boolean {
    return this.leading;
  }

  /** Stop campaigning; a leader's lock goes with its connection. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.running;
    this.stepDown();
  }

  /** One try for the lock, or one check that the leader still holds it; never two at once. */
  private check(): Promise<void> {
    this.running = this.running.then(() => this.tryOnce());
    return this.running;
  }

  private async tryOnce(): Promise<void> {
    if (this.closed) return;
    try {
      const client = this.client ?? (await this.connect());
      if (this.leading) {
        // The lock lives in this session: a working session still holds it.
        await client.query('SELECT 1');
        return;
      }
      const result = await client.query<{ got: boolean }>(
        'SELECT pg_try_advisory_lock($1, hashtext(current_schema())) AS got',
        [SYNC_LOCK_CLASS],
      );
      if (result.rows[0]?.got === true && !this.closed && this.client === client) {
        this.setLeading(true);
      }
    } catch (err) {
      this.options.onError?.(err);
      this.stepDown();
    }
  }

  private async connect(): Promise<pg.Client> {
    const client = new pg.Client(this.config);
    // The session dropped (server restart, network, pg_terminate_backend): the lock is gone.
    client.on('error', (err) => {
      if (this.client !== client) return;
      this.options.onError?.(err);
      this.stepDown();
    });
    client.on('end', () => {
      if (this.client === client) this.stepDown();
    });
    try {
      await client.connect();
    } catch (err) {
      await client.end().catch(() => undefined);
      throw err;
    }
    this.client = client;
    return client;
  }

  /** Stop leading and drop the session (with the lock, if the server still has it). */
  private stepDown(): void {
    const client = this.client;
    this.client = null;
    if (client) void client.end().catch(() => undefined);
    this.setLeading(false);
  }

  private setLeading(leading: boolean): void {
    if (this.leading === leading) return;
    this.leading = leading;
    this.options.onChange?.(leading);
  }
}
