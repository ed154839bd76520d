import { type Logger, silentLogger } from '../log.js';
import { RpcError, RpcErrorCode } from '../protocol/errors.js';
import { AO_SCHEME, RSA_SCHEME, type TicketTerms } from '../protocol/messages.js';
import type { GrantStorage } from '../storage/grant-storage.js';
import type { SpentLog } from '../storage/spent-log.js';
import { type BackupRelay, buildDescriptor, type SignedDescriptor } from './descriptor.js';
import { type CreditAccount, TicketIssuer } from './issuer.js';
import { KeyStore } from './key-store.js';
import { type TicketScheme, utcDay } from './keyring.js';
import type { Redeemer } from './redeemer.js';
import type { RsaIssuer } from './rsa-issuer.js';
import type { RsaPrivateKey } from './rsa-scheme.js';
import type { TicketService } from './service.js';

/**
 * The relay's ticket side in one place: keys, issuer, redeemer, spent store and the signed
 * descriptor, plus the upkeep they need (key renewal around midnight, grant expiry, pruning
 * of spent serials that can no longer be redeemed).
 */

export interface TicketDeskParts {
  keys: KeyStore;
  store: SpentLog;
  /** The issuer of the relay's scheme (`tickets.scheme`): Abe–Okamoto sessions or RSA. */
  issuer: TicketIssuer | RsaIssuer;
  redeemer: Redeemer;
  /** The redeemer's grants on disk, swept with the book. */
  grantStore?: GrantStorage;
}

export interface TicketDeskOptions {
  price: number;
  windowSeconds: number;
  keyLifetimeDays: number;
  /** Unsigned relay fields for the descriptor (algorithm, endpoints, difficulty terms). */
  descriptorBase: () => object;
  /** Backup relays listed in the descriptor (Protocol 2 peers that accept our tickets). */
  backupRelays?: readonly BackupRelay[];
  now?: () => number;
  logger?: Logger;
  /**
   * The hourly key upkeep (default `keys.maintain`); a family member wraps it in its key
   * vault's sync (src/relay/family-keys.ts), so exactly one instance makes each new key.
   */
  maintainKeys?: () => Promise<unknown>;
}

const HOUR_MS = 3_600_000;
const MINUTE_MS = 60_000;

/**
 * The relay's ticket keys, with today's and the coming days' keys of the issuing scheme made
 * if missing (keys of the other scheme stay until they expire: their tickets are redeemable).
 */
export async function openTicketKeys(
  dataDir: string,
  options: {
    lifetimeDays: number;
    now: () => number;
    scheme: TicketScheme;
    /** Tests pass pre-generated RSA keys; the default finds safe primes (seconds). */
    generateRsaKey?: () => Promise<RsaPrivateKey>;
  },
): Promise<KeyStore> {
  const keys = await KeyStore.open(dataDir, options);
  await keys.maintain({ lifetimeDays: options.lifetimeDays });
  return keys;
}

export class TicketDesk {
  readonly keys: KeyStore;
  readonly store: SpentLog;
  readonly issuer: TicketIssuer | RsaIssuer;
  readonly redeemer: Redeemer;
  readonly service: TicketService;
  private readonly grantStore: GrantStorage | undefined;
  private descriptorCache: { stamp: string; signed: SignedDescriptor } | null = null;
  private readonly timers: NodeJS.Timeout[] = [];
  private stopWatch: (() => void) | null = null;
  /** Endpoints known only after start (the onion service), merged over descriptorBase's. */
  private readonly extraEndpoints: Record<string, string> = {};
  private readonly now: () => number;
  private readonly log: Logger;

  /** The parts are built (and closed) by the caller; the desk runs their upkeep. */
  constructor(
    parts: TicketDeskParts,
    private readonly options: TicketDeskOptions,
  ) {
    this.keys = parts.keys;
    this.store = parts.store;
    this.issuer = parts.issuer;
    this.redeemer = parts.redeemer;
    this.grantStore = parts.grantStore;
    this.now = options.now ?? (() => Date.now() / 1000);
    this.log = options.logger ?? silentLogger;
    const { issuer, redeemer } = parts;
    const ao = issuer instanceof TicketIssuer ? issuer : null;
    const rsa = issuer instanceof TicketIssuer ? null : issuer;
    // One issuing scheme per relay, so a day's tickets form one anonymity set.
    const wrongScheme = (method: string, use: string): never => {
      throw new RpcError(RpcErrorCode.methodNotFound, `${method}: this relay issues with ${use}`);
    };
    const aoIssuer = (method: string): TicketIssuer =>
      ao ?? wrongScheme(method, `${RSA_SCHEME} (ticket.issue)`);
    const rsaIssuer = (): RsaIssuer =>
      rsa ?? wrongScheme('ticket.issue', `${AO_SCHEME} (ticket.open, ticket.finish)`);
    this.service = {
      terms: () => this.terms(),
      open: (account) => aoIssuer('ticket.open').open(account),
      finish: (account, session, e) => aoIssuer('ticket.finish').finish(account, session, e),
      issue: (account, params) => rsaIssuer().issue(account, params),
      redeem: (ticket, grant) => redeemer.redeemBatched(ticket, this.now(), grant),
      circuitClosed: (account: CreditAccount) => ao?.circuitClosed(account),
    };
  }

  /** Tickets signed since start, whichever the scheme. */
  issued(): number {
    return this.issuer.issued();
  }

  /** Terms for mining.register: today's issuing key of the relay's scheme, price, window. */
  terms(): TicketTerms | null {
    const day = utcDay(this.now());
    const common = { day, price: this.options.price, windowSeconds: this.options.windowSeconds };
    if (this.issuer instanceof TicketIssuer) {
      const issuing = this.keys.issuingKey(day);
      if (!issuing) return null;
      return {
        scheme: AO_SCHEME,
        keyId: Buffer.from(issuing.key.keyId).toString('hex'),
        publicKey: Buffer.from(issuing.key.y.toBytes()).toString('hex'),
        ...common,
      };
    }
    const issuing = this.keys.issuingRsaKey(day);
    if (!issuing) return null;
    return {
      scheme: RSA_SCHEME,
      keyId: Buffer.from(issuing.key.keyId).toString('hex'),
      publicKey: Buffer.from(issuing.key.spki).toString('hex'),
      ...common,
    };
  }

  /** The signed descriptor, re-signed when the day or the keys change (not per request). */
  descriptor(): SignedDescriptor {
    const keys = this.keys.ticketKeys();
    const stamp = `${utcDay(this.now())}:${keys.map((k) => k.keyId).join(',')}`;
    if (this.descriptorCache?.stamp !== stamp) {
      this.descriptorCache = {
        stamp,
        signed: buildDescriptor({
          base: this.options.descriptorBase(),
          identity: this.keys.identity,
          keys,
          price: this.options.price,
          windowSeconds: this.options.windowSeconds,
          ...(this.options.backupRelays ? { backupRelays: this.options.backupRelays } : {}),
          endpoints: this.extraEndpoints,
          issuedAt: Math.floor(this.now()),
        }),
      };
    }
    return this.descriptorCache.signed;
  }

  /** List an endpoint in the descriptor from now on, e.g. onion → ws://….onion/v1/circuit. */
  addEndpoint(name: string, url: string): void {
    this.extraEndpoints[name] = url;
    this.descriptorCache = null;
  }

  /** Stop the upkeep and drop open issuance sessions; the store stays open (its owner closes it). */
  stop(): void {
    for (const timer of this.timers.splice(0)) clearInterval(timer);
    this.stopWatch?.();
    this.stopWatch = null;
    if (this.issuer instanceof TicketIssuer) this.issuer.closeAll();
  }

  /** Key renewal around midnight, grant expiry, pruning of spent serials of expired days. */
  start(): void {
    // Another process (powbridge keys rotate) may change the keys: reload and re-sign.
    this.stopWatch = this.keys.watch((err) =>
      this.log.error({ err: String(err) }, 'ticket key reload failed'),
    );
    const every = (ms: number, job: () => unknown) => {
      const timer = setInterval(() => {
        Promise.resolve()
          .then(job)
          .catch((err: unknown) => this.log.error({ err: String(err) }, 'ticket upkeep failed'));
      }, ms);
      timer.unref();
      this.timers.push(timer);
    };
    every(MINUTE_MS, async () => {
      this.redeemer.grants.sweep(this.now());
      await this.grantStore?.sweep(this.now());
    });
    every(HOUR_MS, async () => {
      await (this.options.maintainKeys?.() ??
        this.keys.maintain({ lifetimeDays: this.options.keyLifetimeDays }));
      const pruned = await this.redeemer.pruneSpent(this.now());
      if (pruned > 0) this.log.info({ pruned }, 'pruned spent tickets of expired days');
    });
  }
}
