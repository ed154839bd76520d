import { constants } from 'node:fs';
import { open, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { type Logger, silentLogger } from '../log.js';
import {
  FamilyKey,
  FamilyKeyFileError,
  newFamilyKeyText,
  parseFamilyKeyText,
} from '../storage/key-sealing.js';
import type { KeyVaultSession, PostgresKeyVault, VaultKey } from '../storage/postgres-key-vault.js';
import { SCHEME_NAMES } from '../tickets/descriptor.js';
import { encodePoint } from '../tickets/group.js';
import {
  ensurePrivateDir,
  readPrivateFile,
  withLock,
  writePrivateFile,
} from '../tickets/key-files.js';
import {
  IDENTITY_FILE,
  isKeyFileName,
  parseIdentity,
  parseTicketKey,
  type RelayIdentity,
  type StoredKey,
  ticketFileName,
  ticketKeyText,
} from '../tickets/key-format.js';
import {
  dayDate,
  KEYS_DIR,
  type KeyStore,
  REDEEM_GRACE_DAYS,
  type TicketKeyInfo,
} from '../tickets/key-store.js';
import { utcDay } from '../tickets/keyring.js';
import { openTicketKeys } from '../tickets/ticket-desk.js';

/**
 * A relay family's keys kept the same on every instance through the database
 * (`[storage] familyKeyFile`, docs/design.md §6.4, docs/operating.md "Sharing keys in a
 * family"). The key files in `<dataDir>/keys/` stay what the key store reads; the vault
 * (src/storage/postgres-key-vault.ts) holds a sealed copy of each, and a sync under the
 * family's key lock makes the two agree:
 * - keys in the vault and not here are written here (how an instance joins a family);
 * - keys here and not in the vault are uploaded (how a single relay becomes a family's first
 *   instance, and how a `powbridge keys rotate` on one instance reaches the others);
 * - a key whose last issuing day was shortened (a rotation) is shortened on the other side;
 * - keys past their redemption day leave the vault (the key store prunes its files);
 * - anything else that differs (another identity, a key of another id over the same days)
 *   refuses, naming both keys: keys are never merged by guess.
 * The start, every key upkeep (pull, renew and prune, push) and a timer each run one sync
 * under the lock, so instances take turns and exactly one makes each new key.
 */

/** How often a running instance looks for keys made elsewhere (cheap when nothing changed). */
export const KEY_SYNC_INTERVAL_MS = 5 * 60_000;

/** Local keys that cannot join the family's without losing one side's (the start refuses). */
export class FamilyKeyConflictError extends Error {
  override name = 'FamilyKeyConflictError';
}

export interface FamilyKeysOptions {
  vault: PostgresKeyVault;
  dataDir: string;
  /** Where the vault is, for messages (no password): "postgres://user@host:port/db". */
  where: string;
  /** As for openTicketKeys. */
  keys: Parameters<typeof openTicketKeys>[1];
  logger?: Logger;
}

export interface KeySyncResult {
  /** File names written here from the vault. */
  pulled: string[];
  /** File names uploaded to the vault. */
  pushed: string[];
  /** Ticket key ids removed from the vault (past their redemption day). */
  removed: string[];
}

interface HeldTicket {
  text: string;
  stored: StoredKey;
}

interface HeldKeys {
  identity: { text: string; identity: RelayIdentity } | null;
  tickets: Map<string, HeldTicket>;
}

/** The family key from its file (0600, checked like a key file). */
export async function readFamilyKeyFile(file: string): Promise<FamilyKey> {
  return new FamilyKey(parseFamilyKeyText(file, await readPrivateFile(file)));
}

/**
 * Write a new family key to `file` (0600); never overwrites: the keys sealed under a family
 * key in use would no longer open.
 */
export async function writeFamilyKeyFile(file: string): Promise<void> {
  let handle;
  try {
    handle = await open(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'unknown error';
    throw new FamilyKeyFileError(
      code === 'EEXIST'
        ? `${file} exists; refusing to overwrite it (keys sealed under it would no longer open)`
        : `${file}: cannot create (${code})`,
    );
  }
  try {
    await handle.chmod(0o600);
    await handle.writeFile(newFamilyKeyText(), 'utf8');
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function publicKeyHex(stored: StoredKey): string {
  return Buffer.from(
    stored.scheme === 'rsa' ? stored.key.spki : encodePoint(stored.key.y),
  ).toString('hex');
}

function range(k: { notBeforeDay: number; notAfterDay: number }): string {
  return `${dayDate(k.notBeforeDay)} .. ${dayDate(k.notAfterDay)}`;
}

export class FamilyKeys {
  private seen: { generation: number; local: string; day: number } | null = null;
  /** One sync or upkeep at a time in this process (the lock orders instances). */
  private queue: Promise<unknown> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  /** Keys already built, by id: parsing an RSA key checks its primes (milliseconds). */
  private known = new Map<string, StoredKey['key']>();
  private readonly keysDir: string;
  private readonly log: Logger;

  private constructor(
    private readonly options: FamilyKeysOptions,
    readonly keys: KeyStore,
  ) {
    this.keysDir = join(options.dataDir, KEYS_DIR);
    this.log = options.logger ?? silentLogger;
  }

  /**
   * The relay's keys at start: the family's pulled here and this instance's pushed (first
   * instance), then opened and renewed like a single relay's, then what that made pushed; all
   * under the family's key lock, so instances starting together make one identity and one key
   * per day between them.
   */
  static async open(options: FamilyKeysOptions): Promise<FamilyKeys> {
    const keysDir = join(options.dataDir, KEYS_DIR);
    let family: FamilyKeys | undefined;
    await options.vault.locked(async (session) => {
      await reconcileWith(session, keysDir, options, new Map());
      const keys = await openTicketKeys(options.dataDir, options.keys);
      family = new FamilyKeys(options, keys);
      await family.reconcile(session);
    });
    if (!family) throw new Error('family keys: the start did not finish');
    return family;
  }

  /**
   * Bring this instance and the vault into agreement. Returns at once when neither the vault
   * (its change counter) nor the key files nor the day changed since the last sync.
   */
  sync(): Promise<KeySyncResult> {
    return this.serial(async () => {
      const generation = await this.options.vault.generation();
      const local = await this.localStamp();
      const day = this.today();
      const seen = this.seen;
      if (seen?.generation === generation && seen.local === local && seen.day === day) {
        return { pulled: [], pushed: [], removed: [] };
      }
      return this.options.vault.locked((session) => this.reconcile(session));
    });
  }

  /** The daily key upkeep of a family member: pull, renew and prune, push; under the lock. */
  maintain(): Promise<{ created: TicketKeyInfo[]; pruned: string[] }> {
    return this.serial(() =>
      this.options.vault.locked(async (session) => {
        await this.reconcile(session);
        const done = await this.keys.maintain({ lifetimeDays: this.options.keys.lifetimeDays });
        await this.reconcile(session);
        return done;
      }),
    );
  }

  /** Sync every `intervalMs` until stop(); failures are logged and retried next time. */
  start(intervalMs = KEY_SYNC_INTERVAL_MS): void {
    clearInterval(this.timer);
    this.timer = setInterval(() => {
      this.sync().then(
        (result) => {
          if (result.pulled.length + result.pushed.length + result.removed.length > 0) {
            this.log.info(result, 'family keys synchronised');
          }
        },
        (err: unknown) => this.log.error({ err: String(err) }, 'family key sync failed'),
      );
    }, intervalMs);
    this.timer.unref();
  }

  /** Stop the timer; resolves once a sync or upkeep under way has finished. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.queue;
  }

  private today(): number {
    return utcDay(this.options.keys.now());
  }

  private serial<T>(job: () => Promise<T>): Promise<T> {
    const run = this.queue.then(job, job);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async reconcile(session: KeyVaultSession): Promise<KeySyncResult> {
    const result = await reconcileWith(session, this.keysDir, this.options, this.known);
    // The store re-reads at once: a key made elsewhere is used without waiting for its watch.
    if (result.pulled.length > 0) await this.keys.reload();
    this.seen = {
      generation: await session.generation(),
      local: await this.localStamp(),
      day: this.today(),
    };
    return result;
  }

  /** Names, sizes and times of the key files: changes when a file is written or removed. */
  private async localStamp(): Promise<string> {
    const names = (await readdir(this.keysDir)).filter(isKeyFileName).sort();
    const parts = await Promise.all(
      names.map(async (name) => {
        const info = await stat(join(this.keysDir, name));
        return `${name}:${info.size}:${info.mtimeMs}`;
      }),
    );
    return parts.join('/');
  }
}

async function readHeld(keysDir: string, known: Map<string, StoredKey['key']>): Promise<HeldKeys> {
  const held: HeldKeys = { identity: null, tickets: new Map() };
  for (const name of (await readdir(keysDir)).filter(isKeyFileName).sort()) {
    const file = join(keysDir, name);
    const text = await readPrivateFile(file);
    if (name === IDENTITY_FILE) held.identity = { text, identity: parseIdentity(file, text) };
    else {
      const stored = parseTicketKey(file, name, text, known);
      known.set(stored.keyIdHex, stored.key);
      held.tickets.set(stored.keyIdHex, { text, stored });
    }
  }
  return held;
}

/** The vault's keys, parsed like key files (a damaged text is refused, not written here). */
function parseVault(
  keys: VaultKey[],
  where: string,
  known: Map<string, StoredKey['key']>,
): HeldKeys {
  const held: HeldKeys = { identity: null, tickets: new Map() };
  for (const key of keys) {
    const label = `${where}: ${key.kind} key ${key.keyId}`;
    if (key.kind === 'identity') {
      const identity = parseIdentity(label, key.text);
      if (identity.publicKeyHex !== key.keyId) {
        throw new FamilyKeyConflictError(`${label}: the sealed identity is another key`);
      }
      held.identity = { text: key.text, identity };
    } else {
      const stored = parseTicketKey(label, ticketFileName(key.keyId), key.text, known);
      known.set(stored.keyIdHex, stored.key);
      held.tickets.set(stored.keyIdHex, { text: key.text, stored });
    }
  }
  return held;
}

function vaultTicket(held: HeldTicket): VaultKey {
  const { stored } = held;
  return {
    kind: 'ticket',
    keyId: stored.keyIdHex,
    scheme: SCHEME_NAMES[stored.scheme],
    notBeforeDay: stored.notBeforeDay,
    notAfterDay: stored.notAfterDay,
    publicKey: publicKeyHex(stored),
    text: held.text,
  };
}

/**
 * One sync: plan every change first (so a conflict refuses before anything is written), then
 * write the files here and the rows there. Runs inside the vault's transaction: a failure
 * rolls the rows back, and files written here are the family's own keys anyway.
 */
async function reconcileWith(
  session: KeyVaultSession,
  keysDir: string,
  options: FamilyKeysOptions,
  known: Map<string, StoredKey['key']>,
): Promise<KeySyncResult> {
  const today = utcDay(options.keys.now());
  await ensurePrivateDir(keysDir);
  return withLock(keysDir, async () => {
    const here = await readHeld(keysDir, known);
    const there = parseVault(await session.keys(), options.where, known);
    const toWrite: { name: string; text: string }[] = [];
    const toPut: VaultKey[] = [];
    const toRemove: string[] = [];

    if (here.identity && there.identity) {
      const [mine, theirs] = [here.identity.identity, there.identity.identity];
      if (mine.publicKeyHex !== theirs.publicKeyHex) {
        throw new FamilyKeyConflictError(
          `${join(keysDir, IDENTITY_FILE)} is the identity ${mine.publicKeyHex}, but the ` +
            `family in ${options.where} has ${theirs.publicKeyHex}: an instance joining a ` +
            `family takes the family's keys. Move ${keysDir} aside (its ticket keys with it) ` +
            'and start again, or give this relay a database of its own',
        );
      }
    } else if (there.identity) {
      toWrite.push({ name: IDENTITY_FILE, text: there.identity.text });
    } else if (here.identity) {
      toPut.push({
        kind: 'identity',
        keyId: here.identity.identity.publicKeyHex,
        scheme: null,
        notBeforeDay: null,
        notAfterDay: null,
        publicKey: here.identity.identity.publicKeyHex,
        text: here.identity.text,
      });
    }

    const expired = (k: StoredKey) => today > k.notAfterDay + REDEEM_GRACE_DAYS;
    /** The keys both sides hold after this sync, and where each came from. */
    const merged: { stored: StoredKey; from: 'here' | 'there' | 'both' }[] = [];
    for (const [id, theirs] of there.tickets) {
      if (expired(theirs.stored)) {
        toRemove.push(id);
        continue;
      }
      const mine = here.tickets.get(id);
      const name = ticketFileName(id);
      if (!mine) {
        toWrite.push({ name, text: theirs.text });
        merged.push({ stored: theirs.stored, from: 'there' });
        continue;
      }
      // The same key id is the same public key; only a shortened last day may differ.
      const shortened = { ...mine.stored, notAfterDay: theirs.stored.notAfterDay };
      if (ticketKeyText(shortened) !== ticketKeyText(theirs.stored)) {
        throw new FamilyKeyConflictError(
          `${join(keysDir, name)} differs from the family's copy of ticket key ${id} in ` +
            `${options.where} (${range(mine.stored)} here, ${range(theirs.stored)} there): ` +
            `move the file out of ${keysDir} and start again to take the family's copy`,
        );
      }
      if (mine.stored.notAfterDay < theirs.stored.notAfterDay) toPut.push(vaultTicket(mine));
      if (mine.stored.notAfterDay > theirs.stored.notAfterDay)
        toWrite.push({ name, text: theirs.text });
      const shorter = mine.stored.notAfterDay < theirs.stored.notAfterDay ? mine : theirs;
      merged.push({ stored: shorter.stored, from: 'both' });
    }
    for (const [id, mine] of here.tickets) {
      // Expired files are the key store's to prune; they never go up.
      if (there.tickets.has(id) || expired(mine.stored)) continue;
      toPut.push(vaultTicket(mine));
      merged.push({ stored: mine.stored, from: 'here' });
    }
    refuseOverlaps(merged, keysDir, options.where);

    for (const { name, text } of toWrite) await writePrivateFile(keysDir, name, text);
    for (const key of toPut) await session.put(key);
    for (const id of toRemove) await session.remove('ticket', id);
    return {
      pulled: toWrite.map((w) => w.name),
      pushed: toPut.map((k) => (k.kind === 'identity' ? IDENTITY_FILE : ticketFileName(k.keyId))),
      removed: toRemove,
    };
  });
}

/**
 * Within a scheme no two keys may issue on one day (key-store.ts's invariant); a key of this
 * instance's own that overlaps one of the family's means it made keys before it joined.
 */
function refuseOverlaps(
  merged: { stored: StoredKey; from: 'here' | 'there' | 'both' }[],
  keysDir: string,
  where: string,
): void {
  for (const a of merged) {
    for (const b of merged) {
      if (a === b || a.stored.scheme !== b.stored.scheme) continue;
      if (a.stored.notBeforeDay > b.stored.notAfterDay) continue;
      if (b.stored.notBeforeDay > a.stored.notAfterDay) continue;
      const mine = a.from === 'here' ? a : b.from === 'here' ? b : null;
      const theirs = mine === a ? b : a;
      const first = dayDate(Math.max(a.stored.notBeforeDay, b.stored.notBeforeDay));
      if (mine) {
        throw new FamilyKeyConflictError(
          `${keysDir}: ticket key ${mine.stored.keyIdHex} (${mine.stored.scheme}, ` +
            `${range(mine.stored)}) and the family's ticket key ${theirs.stored.keyIdHex} ` +
            `(${range(theirs.stored)}) in ${where} both issue on ${first}: this instance made ` +
            `keys of its own. Move ${ticketFileName(mine.stored.keyIdHex)} out of ${keysDir} and ` +
            "start again to take the family's keys (tickets it issued are then refused)",
        );
      }
      throw new FamilyKeyConflictError(
        `${where}: ${a.stored.scheme} ticket keys ${a.stored.keyIdHex} and ` +
          `${b.stored.keyIdHex} both issue on ${first}; remove one from the database`,
      );
    }
  }
}
