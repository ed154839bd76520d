import { EventEmitter } from 'node:events';
import { RpcError, RpcErrorCode } from '../protocol/errors.js';
import { MemorySessionSlots, type SessionSlots, type SlotLease } from '../storage/session-slots.js';
import { csprng, decodeScalar, encodePoint, encodeScalar, type RandomBytes } from './group.js';
import { type Keyring, utcDay } from './keyring.js';
import {
  InfoPointCache,
  type SignerKey,
  type SignerResponse,
  type SignerSession,
  signerCommit,
  signerRespond,
} from './scheme.js';

/**
 * The ticket issuer (docs/design.md §6.2). Abe–Okamoto is forgeable when many signing sessions for
 * one (key, day) are open at once (the ROS attack: ~200 sessions give a forgery in seconds,
 * fewer still a sub-exponential one), so this class is the only place the signer runs and
 * it enforces, without exception:
 * - at most K open sessions per (key, day) (default 4, never more than 8); further requests
 *   wait in a bounded FIFO queue, and are refused with 33 + retryAfter when it is full;
 * - a session opens only for a circuit whose credit covers the price, one per circuit; the
 *   price is deducted at open and forfeited if the session expires unanswered: with a refund,
 *   a few funded circuits could hold all K slots for free, for ever (issue 14's measurement);
 * - exactly one `e` is answered per session, and its state is deleted before the reply;
 * - sessions expire after a short TTL (default 10 s);
 * - u, s, d come fresh from a CSPRNG for every session.
 * Key rotation alone does not mitigate ROS; the cap does.
 *
 * The cap is about the key, so it holds for every instance that signs with it: each open
 * session holds a slot of `SessionSlots` (src/storage/session-slots.ts), in this process for a
 * single relay, in PostgreSQL for a family. A request finding K slots held waits in this
 * instance's queue and is retried when one of our sessions ends, or every `pollIntervalMs`
 * (another instance's may have ended). A slot outlives its session by `slotGraceSeconds`, so
 * an instance that died frees its slots on its own and no instance sees a slot free while its
 * session can still be answered. Credit stays per circuit, on the instance holding it.
 */

export const HARD_MAX_OPEN_SESSIONS = 8;

/** The circuit's side: its credit, and whether it earns tickets at all. */
export interface CreditAccount {
  readonly id: number;
  readonly mode: 'tickets' | 'donate';
  credit: number;
}

export interface IssuerOptions {
  keyring: Keyring;
  /** Credit one ticket costs. */
  price: number;
  maxOpenSessions?: number;
  /** Requests waiting for a free session slot, across all circuits. */
  maxQueued?: number;
  /** Longest a request waits in the queue before it is refused with 33. */
  maxWaitMs?: number;
  sessionTtlMs?: number;
  /** Where the K slots are kept (default: this process's memory, for a single relay). */
  slots?: SessionSlots;
  /** How often waiting requests look for a slot another instance freed (default 250 ms). */
  pollIntervalMs?: number;
  /**
   * How long a slot outlives its session's TTL (default 5 s): room for the clocks of a
   * family's machines to differ and for the time between taking a slot and starting the
   * session's timer.
   */
  slotGraceSeconds?: number;
  /** Unix seconds. */
  now?: () => number;
  /** Must be a CSPRNG outside tests. */
  random?: RandomBytes;
}

export interface OpenedSession {
  session: string;
  keyId: string;
  day: number;
  a: string;
  b: string;
}

export type FinishedSession = { r: string; c: string; s: string; d: string };

interface OpenSession {
  id: string;
  owner: number;
  account: CreditAccount;
  slot: string;
  lease: SlotLease;
  key: SignerKey;
  state: SignerSession;
  timer: NodeJS.Timeout;
}

interface Waiter {
  account: CreditAccount;
  slot: string;
  keyId: string;
  day: number;
  resolve: (lease: SlotLease) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

export interface IssuerEvents {
  /** A signing session opened; `open` is how many are open for its (key, day) now. */
  opened: [{ slot: string; open: number }];
  closed: [{ slot: string; open: number; reason: 'answered' | 'expired' | 'circuit-closed' }];
  /** A ticket signed (a session answered with a valid e); `keyId` is hex. */
  issued: [{ day: number; keyId: string }];
  /** Taking or giving back a slot failed (the database is unreachable): requests wait. */
  slotsFailed: [err: unknown];
}

export class TicketIssuer extends EventEmitter<IssuerEvents> {
  readonly price: number;
  private readonly keyring: Keyring;
  private readonly maxOpen: number;
  private readonly maxQueued: number;
  private readonly maxWaitMs: number;
  private readonly ttlMs: number;
  private readonly slots: SessionSlots;
  private readonly pollMs: number;
  private readonly graceSeconds: number;
  private readonly now: () => number;
  private readonly random: RandomBytes;
  private readonly infoPoints = new InfoPointCache();
  private readonly sessions = new Map<string, OpenSession>();
  /** (key, day) slot → slots this instance holds (its sessions, and grants about to open one). */
  private readonly openCount = new Map<string, number>();
  /** (key, day) slot → slots being asked for outside the queue. */
  private readonly asking = new Map<string, number>();
  private readonly queues = new Map<string, Waiter[]>();
  private queued = 0;
  /** Slots whose queue is being served, and those to serve again when that round ends. */
  private readonly pumping = new Set<string>();
  private readonly pumpAgain = new Set<string>();
  private readonly polls = new Map<string, NodeJS.Timeout>();
  private stopped = false;
  /** Whether the slot store's last answer was a failure (reported once per outage). */
  private slotsFailing = false;
  private issuedCount = 0;
  /** Circuits with a queued or open session. */
  private readonly busy = new Set<number>();

  constructor(options: IssuerOptions) {
    super();
    const maxOpen = options.maxOpenSessions ?? 4;
    if (!Number.isInteger(maxOpen) || maxOpen < 1 || maxOpen > HARD_MAX_OPEN_SESSIONS) {
      throw new RangeError(`maxOpenSessions must be 1..${HARD_MAX_OPEN_SESSIONS} (ROS)`);
    }
    if (!(options.price > 0)) throw new RangeError('price must be positive');
    this.keyring = options.keyring;
    this.price = options.price;
    this.maxOpen = maxOpen;
    this.maxQueued = options.maxQueued ?? 256;
    this.maxWaitMs = options.maxWaitMs ?? 30_000;
    this.ttlMs = options.sessionTtlMs ?? 10_000;
    this.slots = options.slots ?? new MemorySessionSlots();
    this.pollMs = options.pollIntervalMs ?? 250;
    this.graceSeconds = options.slotGraceSeconds ?? 5;
    this.now = options.now ?? (() => Date.now() / 1000);
    this.random = options.random ?? csprng;
  }

  /** Tickets signed since start (sessions answered with a valid e), for the status page. */
  issued(): number {
    return this.issuedCount;
  }

  /** Sessions open right now on this instance for a (key id hex, day). */
  openSessions(keyIdHex: string, day: number): number {
    return this.openCount.get(`${keyIdHex}:${day}`) ?? 0;
  }

  /** ticket.open: waits for a slot if K sessions are open; throws RpcError 33/34. */
  async open(account: CreditAccount): Promise<OpenedSession> {
    if (account.mode !== 'tickets') {
      throw new RpcError(RpcErrorCode.notEnoughCredit, 'donation-mode circuits earn no tickets');
    }
    if (account.credit < this.price) {
      throw new RpcError(RpcErrorCode.notEnoughCredit, 'not enough credit for a ticket', {
        credit: account.credit,
        price: this.price,
      });
    }
    if (this.busy.has(account.id)) {
      throw new RpcError(
        RpcErrorCode.issuerBusy,
        'a ticket session is already open on this circuit',
        {
          retryAfter: Math.ceil(this.ttlMs / 1000),
        },
      );
    }
    const day = utcDay(this.now());
    const issuing = this.keyring.issuingKey(day);
    if (!issuing) throw new RpcError(RpcErrorCode.internalError, 'no ticket key for today');
    if (this.stopped) throw new RpcError(RpcErrorCode.issuerBusy, 'ticket issuer stopped');
    const key = issuing.key;
    const keyId = Buffer.from(key.keyId).toString('hex');
    const slot = `${keyId}:${day}`;
    this.busy.add(account.id);
    let lease: SlotLease;
    try {
      lease = await this.takeSlot(account, slot, keyId, day);
    } catch (err) {
      this.busy.delete(account.id);
      throw err;
    }
    // The circuit closed, or the relay stopped, while the slot was being taken.
    if (!this.busy.has(account.id) || this.stopped) {
      this.busy.delete(account.id);
      this.giveBack(slot, lease);
      throw new RpcError(RpcErrorCode.issuerBusy, 'circuit closed');
    }
    // Only this circuit spends its credit and it has no other session, but the wait
    // yielded: check again rather than assume.
    if (account.credit < this.price) {
      this.busy.delete(account.id);
      this.giveBack(slot, lease);
      throw new RpcError(RpcErrorCode.notEnoughCredit, 'not enough credit for a ticket');
    }
    account.credit -= this.price;
    const { z } = this.infoPoints.get(key.keyId, day);
    const { session: state, commitment } = signerCommit(z, this.random);
    const id = Buffer.from(this.random(16)).toString('hex');
    const open: OpenSession = {
      id,
      owner: account.id,
      account,
      slot,
      lease,
      key,
      state,
      timer: setTimeout(() => this.expire(id), this.ttlMs),
    };
    open.timer.unref();
    this.sessions.set(id, open);
    this.emit('opened', { slot, open: this.openCount.get(slot) ?? 0 });
    return {
      session: id,
      keyId: Buffer.from(key.keyId).toString('hex'),
      day,
      a: Buffer.from(encodePoint(commitment.a)).toString('hex'),
      b: Buffer.from(encodePoint(commitment.b)).toString('hex'),
    };
  }

  /** ticket.finish: exactly one answer per session; its state is gone before we answer. */
  finish(account: CreditAccount, sessionId: string, eHex: string): FinishedSession {
    const open = this.sessions.get(sessionId);
    if (!open || open.owner !== account.id) {
      throw new RpcError(RpcErrorCode.invalidParams, 'unknown or expired ticket session');
    }
    let e: bigint;
    try {
      e = decodeScalar(new Uint8Array(Buffer.from(eHex, 'hex')), 'e');
    } catch (err) {
      // A malformed e still consumes the session: no second attempt with the same u, s, d.
      this.close(open, 'answered');
      throw new RpcError(RpcErrorCode.invalidParams, (err as Error).message);
    }
    // Take the nonces out, then delete the session (which wipes its copy), then answer.
    const key = open.key;
    const state: SignerSession = { ...open.state };
    this.close(open, 'answered');
    const response: SignerResponse = signerRespond(key, state, e);
    this.issuedCount += 1;
    this.emit('issued', { day: open.lease.day, keyId: open.lease.keyId });
    const hex = (v: bigint) => Buffer.from(encodeScalar(v)).toString('hex');
    return { r: hex(response.r), c: hex(response.c), s: hex(response.s), d: hex(response.d) };
  }

  /** The circuit closed: drop its queued request and its open session (no refund: it is gone). */
  circuitClosed(account: CreditAccount): void {
    for (const open of this.sessions.values()) {
      if (open.owner === account.id) this.close(open, 'circuit-closed');
    }
    for (const [slot, queue] of this.queues) {
      const index = queue.findIndex((w) => w.account.id === account.id);
      if (index === -1) continue;
      const [waiter] = queue.splice(index, 1);
      if (!waiter) continue;
      clearTimeout(waiter.timer);
      this.queued -= 1;
      waiter.reject(new RpcError(RpcErrorCode.issuerBusy, 'circuit closed'));
      if (queue.length === 0) this.queues.delete(slot);
    }
    this.busy.delete(account.id);
  }

  /** Stop: drop every open session and refuse the waiting requests (shutdown). */
  closeAll(): void {
    this.stopped = true;
    for (const open of [...this.sessions.values()]) this.close(open, 'expired');
    for (const timer of this.polls.values()) clearTimeout(timer);
    this.polls.clear();
    for (const [slot, queue] of this.queues) {
      for (const waiter of queue.splice(0)) {
        clearTimeout(waiter.timer);
        this.queued -= 1;
        waiter.reject(new RpcError(RpcErrorCode.issuerBusy, 'ticket issuer stopped'));
      }
      this.queues.delete(slot);
    }
  }

  /**
   * A slot for this request: straight from the store while nobody here waits and this
   * instance holds fewer than K, else (or when the family holds K) in turn through the queue.
   */
  private async takeSlot(
    account: CreditAccount,
    slot: string,
    keyId: string,
    day: number,
  ): Promise<SlotLease> {
    const waiting = this.queues.get(slot)?.length ?? 0;
    const mine = (this.openCount.get(slot) ?? 0) + (this.asking.get(slot) ?? 0);
    if (waiting === 0 && mine < this.maxOpen) {
      this.asking.set(slot, (this.asking.get(slot) ?? 0) + 1);
      let lease: SlotLease | null = null;
      try {
        lease = await this.acquire(keyId, day);
      } catch (err) {
        this.slotsFailure(err);
      } finally {
        const left = (this.asking.get(slot) ?? 1) - 1;
        if (left === 0) this.asking.delete(slot);
        else this.asking.set(slot, left);
      }
      if (lease) {
        this.reserve(slot);
        return lease;
      }
    }
    return this.wait(account, slot, keyId, day);
  }

  /** One slot from the store, expiring `slotGraceSeconds` after the session would. */
  private async acquire(keyId: string, day: number): Promise<SlotLease | null> {
    const now = this.now();
    const lease = await this.slots.acquire({
      keyId,
      day,
      limit: this.maxOpen,
      now,
      expiresAt: now + this.ttlMs / 1000 + this.graceSeconds,
    });
    this.slotsFailing = false;
    return lease;
  }

  private slotsFailure(err: unknown): void {
    if (!this.slotsFailing) this.emit('slotsFailed', err);
    this.slotsFailing = true;
  }

  private wait(
    account: CreditAccount,
    slot: string,
    keyId: string,
    day: number,
  ): Promise<SlotLease> {
    if (this.queued >= this.maxQueued) {
      return Promise.reject(
        new RpcError(RpcErrorCode.issuerBusy, 'ticket issuer busy, retry later', {
          retryAfter: Math.ceil(this.ttlMs / 1000),
        }),
      );
    }
    return new Promise<SlotLease>((resolve, reject) => {
      const waiter: Waiter = {
        account,
        slot,
        keyId,
        day,
        resolve,
        reject,
        timer: setTimeout(() => {
          const queue = this.queues.get(slot) ?? [];
          const index = queue.indexOf(waiter);
          if (index !== -1) queue.splice(index, 1);
          this.queued -= 1;
          reject(
            new RpcError(RpcErrorCode.issuerBusy, 'ticket issuer busy, retry later', {
              retryAfter: Math.ceil(this.ttlMs / 1000),
            }),
          );
        }, this.maxWaitMs),
      };
      waiter.timer.unref();
      const queue = this.queues.get(slot) ?? [];
      queue.push(waiter);
      this.queues.set(slot, queue);
      this.queued += 1;
      // Our own sessions ending wake the queue; the poll catches slots freed elsewhere.
      this.schedulePoll(slot);
    });
  }

  private expire(id: string): void {
    const open = this.sessions.get(id);
    if (!open) return;
    // Unanswered: the price stays spent (no free refunds, or holding slots costs nothing).
    this.close(open, 'expired');
  }

  private close(open: OpenSession, reason: 'answered' | 'expired' | 'circuit-closed'): void {
    if (!this.sessions.delete(open.id)) return;
    clearTimeout(open.timer);
    // Forget the nonces at once: the session object may linger in a closure.
    open.state.u = 0n;
    open.state.s = 0n;
    open.state.d = 0n;
    this.busy.delete(open.owner);
    this.emit('closed', {
      slot: open.slot,
      open: (this.openCount.get(open.slot) ?? 1) - 1,
      reason,
    });
    this.giveBack(open.slot, open.lease);
  }

  private reserve(slot: string): void {
    this.openCount.set(slot, (this.openCount.get(slot) ?? 0) + 1);
  }

  /** A slot freed here: back to the store, then to the first waiter for that (key, day). */
  private giveBack(slot: string, lease: SlotLease): void {
    const count = (this.openCount.get(slot) ?? 1) - 1;
    if (count === 0) this.openCount.delete(slot);
    else this.openCount.set(slot, count);
    // A release that fails leaves the slot to expire on its own (slotGraceSeconds after TTL).
    this.slots.release(lease).then(
      () => void this.pump(slot),
      (err: unknown) => {
        this.slotsFailure(err);
        void this.pump(slot);
      },
    );
  }

  /** Serve the queue of a (key, day) in order, one slot at a time, while slots are free. */
  private async pump(slot: string): Promise<void> {
    if (this.pumping.has(slot)) {
      this.pumpAgain.add(slot);
      return;
    }
    this.pumping.add(slot);
    const poll = this.polls.get(slot);
    if (poll) clearTimeout(poll);
    this.polls.delete(slot);
    try {
      for (;;) {
        this.pumpAgain.delete(slot);
        const head = this.queues.get(slot)?.[0];
        if (!head || this.stopped) return;
        let lease: SlotLease | null = null;
        try {
          lease = await this.acquire(head.keyId, head.day);
        } catch (err) {
          this.slotsFailure(err);
        }
        if (!lease) {
          // A slot freed here while we asked: ask again; else wait for one or for the poll.
          if (this.pumpAgain.has(slot)) continue;
          this.schedulePoll(slot);
          return;
        }
        // The head may have given up meanwhile: the slot goes to whoever is first now.
        const queue = this.queues.get(slot) ?? [];
        const waiter = queue.shift();
        if (queue.length === 0) this.queues.delete(slot);
        if (!waiter || this.stopped) {
          this.reserve(slot);
          this.giveBack(slot, lease);
          return;
        }
        clearTimeout(waiter.timer);
        this.queued -= 1;
        this.reserve(slot);
        waiter.resolve(lease);
      }
    } finally {
      this.pumping.delete(slot);
    }
  }

  private schedulePoll(slot: string): void {
    if (this.polls.has(slot) || this.stopped) return;
    const timer = setTimeout(() => {
      this.polls.delete(slot);
      void this.pump(slot);
    }, this.pollMs);
    timer.unref();
    this.polls.set(slot, timer);
  }
}
