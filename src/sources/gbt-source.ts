import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { type Logger, silentLogger } from '../log.js';
import { RpcErrorCode } from '../protocol/errors.js';
import type { Algorithm } from '../work/algorithm.js';
import { sha256d } from '../work/hash.js';
import { headerFromJob } from '../work/header.js';
import { isHex, parseHex, reversed, toHex } from '../work/hex.js';
import { createPowHasher, type PowHasher } from '../work/pow.js';
import { hashMeetsTarget, targetToDifficulty } from '../work/target.js';
import { BIP320_MASK } from '../work/version.js';
import { Backoff } from '../lib/backoff.js';
import { serializeBlock } from './gbt-block.js';
import { MAX_COINBASE_SCRIPTSIG, MAX_HEIGHT_PUSH, withCoinbaseWitness } from './gbt-coinbase.js';
import { jobFromTemplate, type TemplateJob } from './gbt-job.js';
import {
  type BlockTemplate,
  blockTemplateSchema,
  checkTemplateSupported,
  GBT_RULES,
  submitBlockResultSchema,
  validateAddressSchema,
} from './gbt-template.js';
import { NodeRpc, NodeRpcError, type RpcAuth } from './node-rpc.js';
import type {
  SourceJob,
  SourceState,
  SourceStatus,
  SubmitOutcome,
  UpstreamShare,
  UpstreamTerms,
  WorkSource,
  WorkSourceEvents,
} from './work-source.js';

/**
 * Solo mining: the coin node is the "upstream". Jobs come from getblocktemplate (long-poll
 * plus a periodic refresh), the coinbase pays the operator, and a share that meets the network
 * target becomes a block sent with submitblock.
 */

export interface GbtSourceConfig {
  rpcUrl: string;
  auth: RpcAuth;
  payoutAddress: string;
  /** Text put in the coinbase scriptSig after the extranonce (UTF-8, ≤ 83 bytes). */
  coinbaseTag?: string;
  /** Template refresh period; also how fast a dead node is noticed (default 5 s). */
  pollIntervalMs?: number;
  /** Use getblocktemplate long-poll for new blocks (default true). */
  longPoll?: boolean;
  /** Litecoin is scrypt (the default). */
  algorithm?: Algorithm;
  rpcTimeoutMs?: number;
  /** Reconnect backoff while the node is down (default 1 s doubling to 30 s). */
  retry?: { minMs: number; maxMs: number };
  /** Jobs kept for late shares since the last clean job (default 32). */
  maxJobs?: number;
  /** Least time between two jobs on the same tip (new transactions; default 30 s). */
  jobRefreshMs?: number;
}

export interface GbtSourceDeps {
  logger?: Logger;
  /** Hex, 4 bytes; tests pin it. Default: random per process. */
  extranonce1?: string;
}

export const GBT_EXTRANONCE1_SIZE = 4;
/** Wide enough for the relay to carve fixed client slots and leave clients a full search. */
export const GBT_EXTRANONCE2_SIZE = 8;
/**
 * BIP320 general-purpose bits. Consensus on Litecoin only needs version ≥ 4 and the rolled
 * bits cannot touch the top bits (001) or the deployment bits Litecoin signals on (segwit 1,
 * taproot 2, mweb 4 — all below bit 13). Core only logs an "unknown new rules" warning if one
 * rolled bit is set in most blocks of a retarget window, which random rolling does not do.
 */
export const GBT_VERSION_MASK = BIP320_MASK;

/**
 * Random per process so two bridges (or two runs) paying the same address never build the
 * same coinbase and so never search the same space.
 */
const PROCESS_EXTRANONCE1 = toHex(randomBytes(GBT_EXTRANONCE1_SIZE));

const MAX_TAG_BYTES =
  MAX_COINBASE_SCRIPTSIG - MAX_HEIGHT_PUSH - GBT_EXTRANONCE1_SIZE - GBT_EXTRANONCE2_SIZE;
/** Bound on one long-poll; Core itself may wait forever when nothing changes. */
const LONG_POLL_TIMEOUT_MS = 10 * 60_000;
/** A long-poll that fails faster than this waits before the next, so it cannot spin. */
const LONG_POLL_MIN_INTERVAL_MS = 1_000;
const SUBMIT_TIMEOUT_MS = 60_000;
const SUBMIT_ATTEMPTS = 3;

export class GbtConfigError extends Error {
  override name = 'GbtConfigError';
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export class GbtSource extends EventEmitter<WorkSourceEvents> implements WorkSource {
  readonly algorithm: Algorithm;
  readonly extranonce1: string;
  private readonly rpc: NodeRpc;
  private readonly log: Logger;
  private readonly payoutAddress: string;
  private readonly tag: Uint8Array;
  private readonly pollIntervalMs: number;
  private readonly longPoll: boolean;
  private readonly retry: { minMs: number; maxMs: number };
  private readonly maxJobs: number;
  private readonly jobRefreshMs: number;

  private state: SourceState = 'connecting';
  private session = 0;
  private terms: UpstreamTerms | null = null;
  private payoutScript: Uint8Array | null = null;
  /** Jobs of the current session since the last clean job, oldest first. */
  private readonly jobs = new Map<string, TemplateJob>();
  private current: { work: TemplateJob; job: SourceJob; at: number } | null = null;
  private jobCounter = 0;
  private lastError: string | null = null;
  private hasher: Promise<PowHasher> | null = null;
  /** Submissions run one after another (see submit). */
  private submitQueue: Promise<unknown> = Promise.resolve();
  /** Height of the last block the node accepted from us. */
  private solvedHeight = -1;

  private stopController: AbortController | null = null;
  private pollTask: Promise<void> | null = null;
  private longPollTask: Promise<void> | null = null;
  private readonly wakers = new Set<() => void>();

  constructor(config: GbtSourceConfig, deps: GbtSourceDeps = {}) {
    super();
    this.algorithm = config.algorithm ?? 'scrypt';
    this.extranonce1 = deps.extranonce1 ?? PROCESS_EXTRANONCE1;
    if (!isHex(this.extranonce1, GBT_EXTRANONCE1_SIZE)) {
      throw new GbtConfigError(`extranonce1 must be ${GBT_EXTRANONCE1_SIZE} bytes of hex`);
    }
    this.tag = new TextEncoder().encode(config.coinbaseTag ?? '');
    if (this.tag.length > MAX_TAG_BYTES) {
      throw new GbtConfigError(
        `coinbaseTag is ${this.tag.length} bytes; at most ${MAX_TAG_BYTES} fit in the coinbase`,
      );
    }
    if (config.payoutAddress.trim() === '') throw new GbtConfigError('payoutAddress is empty');
    this.payoutAddress = config.payoutAddress.trim();
    this.pollIntervalMs = config.pollIntervalMs ?? 5_000;
    this.longPoll = config.longPoll ?? true;
    this.retry = config.retry ?? { minMs: 1_000, maxMs: 30_000 };
    this.maxJobs = Math.max(1, config.maxJobs ?? 32);
    this.jobRefreshMs = config.jobRefreshMs ?? 30_000;
    this.rpc = new NodeRpc({
      url: config.rpcUrl,
      auth: config.auth,
      timeoutMs: config.rpcTimeoutMs,
    });
    this.log = (deps.logger ?? silentLogger).child({ source: 'gbt', node: this.rpc.url });
  }

  start(): void {
    if (this.stopController !== null) return;
    const controller = new AbortController();
    this.stopController = controller;
    this.hasher ??= createPowHasher(this.algorithm);
    this.pollTask = this.pollLoop(controller.signal);
  }

  async stop(): Promise<void> {
    const controller = this.stopController;
    if (controller === null) return;
    controller.abort();
    await Promise.allSettled([this.pollTask, this.longPollTask]);
    this.stopController = null;
    this.pollTask = null;
    this.longPollTask = null;
    this.rpc.close();
  }

  status(): SourceStatus {
    return {
      state: this.state,
      upstream: this.rpc.url,
      terms: this.terms,
      job: this.current?.job ?? null,
    };
  }

  /** Why the source is not live, for operators (null when live). */
  get error(): string | null {
    return this.lastError;
  }

  async submit(share: UpstreamShare): Promise<SubmitOutcome> {
    if (share.session !== this.session) {
      return {
        accepted: false,
        reason: 'stale share: job from an earlier node session',
        code: RpcErrorCode.jobNotFound,
      };
    }
    const work = this.jobs.get(share.jobId);
    if (work === undefined) {
      return { accepted: false, reason: 'job not found', code: RpcErrorCode.jobNotFound };
    }
    let header: Uint8Array;
    let coinbase: Uint8Array;
    try {
      parseHex(share.extranonce2, 'extranonce2', GBT_EXTRANONCE2_SIZE);
      ({ header, coinbase } = headerFromJob(work.job, this.extranonce1, share, GBT_VERSION_MASK));
    } catch (err) {
      return {
        accepted: false,
        reason: `invalid share: ${errorText(err)}`,
        code: RpcErrorCode.shareOther,
      };
    }
    this.hasher ??= createPowHasher(this.algorithm);
    const pow = await (await this.hasher)(header);
    if (!hashMeetsTarget(pow, work.target)) {
      return { accepted: false, reason: 'share does not meet network target' };
    }
    const block = serializeBlock(
      header,
      work.witness ? withCoinbaseWitness(coinbase) : coinbase,
      work.template.transactions.map((tx, i) => parseHex(tx.data, `transactions[${i}].data`)),
      work.mwebBlock,
    );
    const blockHash = toHex(reversed(sha256d(header)));
    const height = work.template.height;
    // One submitblock at a time, and none for a height we already solved: on an easy chain
    // (regtest) nearly every share is a block, and thousands of doomed submissions a second
    // would fill the node's RPC work queue and starve getblocktemplate of the next tip.
    const turn = this.submitQueue.then(() =>
      height <= this.solvedHeight
        ? { accepted: false as const, reason: `stale block: height ${height} is already solved` }
        : this.submitBlock(toHex(block), blockHash, height),
    );
    this.submitQueue = turn.catch(() => undefined);
    return turn;
  }

  private async submitBlock(
    hex: string,
    blockHash: string,
    height: number,
  ): Promise<SubmitOutcome> {
    for (let attempt = 1; ; attempt++) {
      try {
        const result = await this.rpc.call('submitblock', [hex], submitBlockResultSchema, {
          timeoutMs: SUBMIT_TIMEOUT_MS,
        });
        if (result !== null) {
          this.log.warn({ block: blockHash, height, reason: result }, 'block rejected by node');
          return { accepted: false, reason: result };
        }
        this.log.info({ block: blockHash, height }, 'block accepted');
        this.solvedHeight = Math.max(this.solvedHeight, height);
        this.wake(); // the next template builds on our block; don't wait for the poll
        return { accepted: true, block: blockHash };
      } catch (err) {
        // Retry only when the request certainly never reached the node: a block is worth it,
        // and a resend after a cut connection could come back as a misleading "duplicate".
        const retry =
          err instanceof NodeRpcError && err.kind === 'unreachable' && attempt < SUBMIT_ATTEMPTS;
        this.log.error(
          { block: blockHash, height, err: errorText(err), attempt },
          'submitblock failed',
        );
        if (!retry) return { accepted: false, reason: `submitblock failed: ${errorText(err)}` };
        await new Promise((resolve) => setTimeout(resolve, 500 * attempt));
      }
    }
  }

  /** The refresh loop: also the node's health check, with backoff while it is down. */
  private async pollLoop(signal: AbortSignal): Promise<void> {
    const backoff = new Backoff(this.retry);
    while (!signal.aborted) {
      try {
        await this.refresh(signal);
        backoff.reset();
        this.ensureLongPoll(signal);
        await this.pause(this.pollIntervalMs, signal);
      } catch (err) {
        if (signal.aborted) break;
        this.markDown(err);
        await this.pause(backoff.next(), signal);
      }
    }
  }

  private async refresh(signal: AbortSignal): Promise<void> {
    if (this.payoutScript === null) this.payoutScript = await this.resolvePayout(signal);
    const template = await this.rpc.call(
      'getblocktemplate',
      [{ rules: GBT_RULES }],
      blockTemplateSchema,
      { signal },
    );
    this.apply(template);
  }

  private async resolvePayout(signal: AbortSignal): Promise<Uint8Array> {
    const answer = await this.rpc.call(
      'validateaddress',
      [this.payoutAddress],
      validateAddressSchema,
      {
        signal,
      },
    );
    if (!answer.isvalid || answer.scriptPubKey === undefined) {
      throw new GbtConfigError(
        `payout address ${this.payoutAddress} is not a valid address for the node's network`,
      );
    }
    return parseHex(answer.scriptPubKey, 'scriptPubKey');
  }

  private ensureLongPoll(signal: AbortSignal): void {
    if (!this.longPoll || this.longPollTask !== null) return;
    this.longPollTask = this.longPollLoop(signal).finally(() => {
      this.longPollTask = null;
    });
  }

  /**
   * One long-poll in flight at a time while the node is live. Core answers when the tip
   * changes, or once the mempool has changed and a minute has passed; with no news it waits
   * indefinitely, so we bound the wait and ask again. A long-poll can also be cut by a proxy
   * or a node restart: after a quiet cut we simply ask again; if the node is really gone the
   * next try fails at once, the poll loop marks it down and restarts us once it is live.
   */
  private async longPollLoop(signal: AbortSignal): Promise<void> {
    while (!signal.aborted && this.state === 'live') {
      const longpollid = this.current?.work.template.longpollid;
      if (longpollid === undefined) return;
      const started = Date.now();
      try {
        const template = await this.rpc.call(
          'getblocktemplate',
          [{ rules: GBT_RULES, longpollid }],
          blockTemplateSchema,
          { signal, timeoutMs: LONG_POLL_TIMEOUT_MS },
        );
        this.apply(template);
      } catch (err) {
        if (signal.aborted) return;
        const elapsed = Date.now() - started;
        // A long-poll that ran a while and then timed out or was cut: just ask again.
        // Anything else may mean trouble, so the poll loop checks the node right away.
        const idleCut =
          err instanceof NodeRpcError &&
          (err.kind === 'disconnected' || err.kind === 'timeout') &&
          elapsed >= LONG_POLL_MIN_INTERVAL_MS;
        this.log.debug({ err: errorText(err), elapsed }, 'long-poll ended');
        if (!idleCut) this.wake();
        if (elapsed < LONG_POLL_MIN_INTERVAL_MS) {
          await this.pause(LONG_POLL_MIN_INTERVAL_MS - elapsed, signal, false);
        }
      }
    }
  }

  /**
   * Turn a template into a job if it is new work. Synchronous, so answers from the poll and
   * the long-poll never interleave; a late answer for an older tip is dropped by height.
   * Everything that can throw runs before any state changes.
   */
  private apply(template: BlockTemplate): void {
    checkTemplateSupported(template);
    // The node asks for a height we solved: our block was reorganised away; solve it again.
    if (template.height <= this.solvedHeight) this.solvedHeight = template.height - 1;
    const payoutScript = this.payoutScript;
    if (payoutScript === null) return;
    // Coming (back) to live opens a new node session: shares for jobs from before the outage
    // are refused, not sent.
    const becameLive = this.state !== 'live';
    const previous = becameLive ? null : this.current;
    let clean = true;
    if (previous !== null) {
      const old = previous.work.template;
      if (template.previousblockhash !== old.previousblockhash) {
        if (template.height < old.height) return;
      } else {
        // Same tip: new transactions are worth a job, but not more often than jobRefreshMs,
        // because every job goes to every client (over Tor).
        const changed = template.longpollid !== old.longpollid;
        if (!changed || Date.now() - previous.at < this.jobRefreshMs) return;
        clean = false;
      }
    }
    const jobId = (this.jobCounter + 1).toString(16);
    const work = jobFromTemplate(template, {
      jobId,
      clean,
      payoutScript,
      tag: this.tag,
      extranonceSize: GBT_EXTRANONCE1_SIZE + GBT_EXTRANONCE2_SIZE,
    });
    const difficulty = targetToDifficulty(work.target, this.algorithm);

    this.jobCounter += 1;
    if (becameLive) this.session += 1;
    if (clean) this.jobs.clear();
    this.jobs.set(jobId, work);
    for (const id of this.jobs.keys()) {
      if (this.jobs.size <= this.maxJobs) break;
      this.jobs.delete(id);
    }
    const job: SourceJob = { ...work.job, session: this.session };
    this.current = { work, job, at: Date.now() };
    if (becameLive || this.terms?.difficulty !== difficulty) {
      this.terms = {
        session: this.session,
        extranonce1: this.extranonce1,
        extranonce2Size: GBT_EXTRANONCE2_SIZE,
        difficulty,
        versionMask: GBT_VERSION_MASK,
      };
      this.emit('terms', this.terms);
    }
    if (becameLive) {
      this.lastError = null;
      this.setState('live');
      this.log.info({ session: this.session, height: template.height }, 'node live');
    }
    this.log.debug(
      { jobId, height: template.height, txs: template.transactions.length, clean },
      'new job',
    );
    this.emit('job', job);
  }

  private markDown(err: unknown): void {
    const text = errorText(err);
    if (text !== this.lastError) {
      this.log.warn({ err: text }, 'node not usable');
      this.emit('message', text);
    }
    this.lastError = text;
    // A config error (bad address) must not be cached away: re-check on the next try.
    if (err instanceof GbtConfigError) this.payoutScript = null;
    this.setState('down');
  }

  private setState(state: SourceState): void {
    if (this.state === state) return;
    this.state = state;
    this.emit('state', state);
  }

  /** Cut the poll loop's current wait short (new block found, long-poll ended). */
  private wake(): void {
    for (const waker of this.wakers) waker();
  }

  private pause(ms: number, signal: AbortSignal, wakeable = true): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        this.wakers.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener('abort', done, { once: true });
      if (wakeable) this.wakers.add(done);
    });
  }
}
