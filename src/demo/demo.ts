import { mkdtempSync, rmSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { MineApp } from '../client/mine-app.js';
import { circuitUrl, type RedeemOutcome, redeemFromWallet } from '../client/redeem.js';
import { Wallet } from '../client/wallet.js';
import type { Logger } from '../log.js';
import { type Relay, startRelay } from '../relay/relay.js';
import { redeemAtBackup } from './backup-peering.js';
import { CleanupRegistry } from './cleanup.js';
import { demoRelayConfig, planRelay, type RelayPlan } from './demo-relays.js';
import type { Narrator } from './narrator.js';
import { killRegtestNodesNow, type RegtestNode, startRegtestNetwork } from './regtest-network.js';
import { narrateMiner, narrateRelay, summaryLine } from './story-events.js';
import { measureFreeVsPaid, startByteSource } from './tunnel-throughput.js';

/**
 * `powbridge demo`: a whole powbridge network on this machine, told as a story. Two litecoind
 * regtest nodes, a relay mining solo on the first, a backup relay on the second peered with
 * it, and a one-thread miner; then the things a ticket is for: one earned, one redeemed for
 * priority, the priority measured through the tunnel, and one redeemed at the backup.
 *
 * Everything lives in one temporary directory and registers its undoing in a CleanupRegistry
 * the moment it exists, so a stop at any point (Ctrl-C, --duration, a failed step) leaves
 * nothing behind.
 */

export interface DemoOptions {
  narrator: Narrator;
  /** Path of the litecoind executable. */
  litecoind: string;
  /** Stop by itself after this many seconds; 0: run until stopped. */
  durationSeconds: number;
  /** Stop as soon as the story is complete. */
  exitWhenDone: boolean;
  /** For the relays' and the miner's own logs. */
  logger: Logger;
  /** The tunnel's shaped bandwidth, Mbit/s (low, so the HTB's effect shows on loopback). */
  linkMbit?: number;
  /** Credit per ticket (default 100); a regtest share earns one. */
  ticketPrice?: number;
}

export type DemoResult = { ok: true } | { ok: false; error: string };

export interface DemoRun {
  /** Stop and clean up (idempotent); `reason` is said first, e.g. "Ctrl-C". */
  stop(reason: string): void;
  /** Last resort when a clean stop hangs: kill the nodes and remove the directory now. */
  abandon(): void;
  readonly finished: Promise<DemoResult>;
}

/** What this is for, before anything starts: two sentences, then what the demo leaves out. */
const OPENING: readonly string[] = [
  'powbridge demo: proof-of-work as an anonymous micropayment for a Tor relay.',
  'Users pay the relay with work instead of money that would identify them: they mine for it and get priority tickets in return, blind-signed, so the relay cannot link a ticket it honours to the miner who earned it.',
  'This demo runs without Tor: a whole network on 127.0.0.1, told step by step. To try it through Tor, `npm run test:tor` builds a private Tor network on this machine and mines through an onion service; README.md ("Running a relay", "Mining for a relay") shows the real thing.',
  'Ctrl-C stops the demo and removes everything it started.',
];

const SUMMARY_EVERY_MS = 10_000;
/**
 * On regtest about every second hash meets the network target, so nearly every share is a
 * block. The relay sends one block per height (the rest are stale at once), so the node keeps
 * up; the miner still runs slowly so the story reads at a human pace, and a deeper RPC queue
 * lets the node ride out bursts.
 */
const MINER_CPU_PERCENT = 10;
const NODE_RPC_CAPACITY = ['rpcworkqueue=1024'];
const STEP_TIMEOUT_MS = 60_000;
const MEASURE_SECONDS = 4;
const BACKUP_PATIENCE_MS = 15_000;

/** Thrown at a checkpoint once a stop was asked for: not a failure. */
class StopRequested extends Error {
  override name = 'StopRequested';
}

export function startDemo(options: DemoOptions): DemoRun {
  const story = new DemoStory(options);
  return {
    stop: (reason) => story.stop(reason),
    abandon: () => story.abandon(),
    finished: story.lifecycle(),
  };
}

const now = (): number => Date.now() / 1000;

class DemoStory {
  private readonly n: Narrator;
  private readonly cleanup = new CleanupRegistry();
  private readonly aborter = new AbortController();
  private stopReason: string | null = null;
  private readonly stopped: Promise<void>;
  private resolveStopped: () => void = () => undefined;
  private workDir: string | null = null;
  private redeemed = 0;

  constructor(private readonly options: DemoOptions) {
    this.n = options.narrator;
    this.stopped = new Promise((resolve) => (this.resolveStopped = resolve));
  }

  stop(reason: string): void {
    if (this.stopReason !== null) return;
    this.stopReason = reason;
    // Said at once: the cleanup may take a few seconds, and events are not told any more.
    this.n.quiet();
    this.n.final(`${reason}: stopping…`);
    this.aborter.abort();
    this.resolveStopped();
  }

  abandon(): void {
    killRegtestNodesNow();
    if (this.workDir) rmSync(this.workDir, { recursive: true, force: true });
  }

  /** The whole run: the story, then waiting for a stop, then the cleanup. */
  async lifecycle(): Promise<DemoResult> {
    let failure: string | null = null;
    const { durationSeconds } = this.options;
    const timer =
      durationSeconds > 0
        ? setTimeout(
            () => this.stop(`Ran for ${durationSeconds} s (--duration)`),
            durationSeconds * 1000,
          )
        : null;
    try {
      await this.tell();
      await this.stopped;
    } catch (err) {
      // Anything thrown after a stop was asked for is the stop taking effect.
      if (!this.aborter.signal.aborted) failure = err instanceof Error ? err.message : String(err);
    } finally {
      if (timer) clearTimeout(timer);
    }
    const n = this.n;
    n.quiet();
    if (failure !== null) n.final(`The demo failed: ${failure}`);
    n.final(
      `Stopping the miner, the relays and the litecoind nodes${this.workDir ? `, and removing ${this.workDir}` : ''}…`,
    );
    const failures = await this.cleanup.runAll();
    for (const f of failures) n.final(`Could not stop ${f.name}: ${f.error}`);
    if (failures.length === 0) n.final('Stopped. Nothing the demo started is left.');
    if (failure !== null) return { ok: false, error: failure };
    if (failures.length > 0) return { ok: false, error: 'cleanup incomplete' };
    return { ok: true };
  }

  private async tell(): Promise<void> {
    const n = this.n;
    const linkMbit = this.options.linkMbit ?? 8;
    const price = this.options.ticketPrice ?? 100;

    for (const line of OPENING) n.plain(line);
    const dir = mkdtempSync(join(tmpdir(), 'powbridge-demo-'));
    this.workDir = dir;
    // Last resort, should the process end without the cleanup (a crash): the directory goes.
    const removeDir = (): void => rmSync(dir, { recursive: true, force: true });
    process.on('exit', removeDir);
    this.cleanup.add('the working directory', async () => {
      await rm(dir, { recursive: true, force: true });
      process.off('exit', removeDir);
    });
    n.plain(`Working directory: ${dir} (removed when the demo stops)`);

    // 1. Two regtest nodes: the main relay's node needs a peer to hand out templates.
    n.say('Starting two litecoind nodes in regtest mode: a private test blockchain on 127.0.0.1…');
    const net = await startRegtestNetwork(
      [
        { auth: 'password', extraConfig: NODE_RPC_CAPACITY },
        { auth: 'cookie', extraConfig: NODE_RPC_CAPACITY },
      ],
      {
        binary: this.options.litecoind,
        baseDir: dir,
      },
    );
    this.cleanup.add('the litecoind nodes', () => net.stop());
    this.checkpoint();
    const [a, b] = net.nodes as [RegtestNode, RegtestNode];
    n.say(
      `Nodes up: node A (RPC 127.0.0.1:${a.rpcPort}) and node B (RPC 127.0.0.1:${b.rpcPort}), peers of each other`,
    );
    await a.rpc.call('createwallet', ['demo'], z.object({ name: z.string() }));
    const payoutAddress = await a.wallet('demo').call('getnewaddress', [], z.string().min(1));
    await a.rpc.call('generatetoaddress', [1, payoutAddress], z.array(z.string()));
    await this.until('node B to receive block 1', async () => (await height(b)) >= 1);
    n.say(
      'Mined block 1 on node A: nodes hand out block templates only once past "initial block download"',
    );

    // 2. The relays: keys first (each pins the other's identity), then configs, then start.
    const bytes = await startByteSource();
    this.cleanup.add('the test download server', () => bytes.close());
    const mainPlan = await planRelay(dir, 'main');
    const backupPlan = await planRelay(dir, 'backup');
    this.checkpoint();
    n.say(
      `Created identity and ticket keys for two relays: main ${short(mainPlan.identity)}, backup ${short(backupPlan.identity)}`,
    );
    const relayConfig = (self: RelayPlan, peer: RelayPlan, node: RegtestNode) =>
      demoRelayConfig({
        self,
        peer,
        node,
        payoutAddress,
        ticketPrice: price,
        linkMbit,
        tunnelPort: bytes.port,
      });
    const main = await startRelay(relayConfig(mainPlan, backupPlan, a), {
      logger: this.options.logger.child({ relay: 'main' }),
    });
    this.cleanup.add('the main relay', () => main.close());
    this.checkpoint();
    const backup = await startRelay(relayConfig(backupPlan, mainPlan, b), {
      logger: this.options.logger.child({ relay: 'backup' }),
    });
    this.cleanup.add('the backup relay', () => backup.close());
    this.checkpoint();
    await this.until(
      'both relays to get work from their nodes',
      () => isLive(main) && isLive(backup),
    );
    narrateRelay(main, { name: 'main relay', node: 'node A', mining: true }, n);
    narrateRelay(backup, { name: 'backup relay', node: 'node B', mining: false }, n);
    n.say(
      `Main relay up at ${main.url}, mining solo: it builds blocks from node A's templates, paying node A's wallet`,
    );
    n.say(
      `Backup relay up at ${backup.url}, on node B; the two relays list each other as peers, so the backup accepts the main relay's tickets`,
    );
    n.plain(`dashboard: ${main.url}/`);

    // 3. The miner: one thread, tickets into a wallet.
    const wallet = Wallet.open(join(dir, 'wallet.sqlite'));
    this.cleanup.add('the wallet', () => wallet.close());
    const mainCircuit = circuitUrl(main.url);
    const app = new MineApp({
      relayUrl: mainCircuit,
      mode: 'tickets',
      threads: 1,
      cpuPercent: MINER_CPU_PERCENT,
      jitterPercent: 0,
      wallet,
      relayIdentity: mainPlan.identity,
      logger: this.options.logger.child({ component: 'miner' }),
    });
    const unnarrateMiner = narrateMiner(app, price, n);
    app.start();
    let minerStopped: Promise<void> | null = null;
    const stopMiner = (): Promise<void> => (minerStopped ??= app.stop());
    this.cleanup.add('the miner', stopMiner);
    n.say(
      `Miner started with 1 thread at ${MINER_CPU_PERCENT}% CPU (plenty on regtest) on ${mainCircuit}; each accepted share earns about 1 credit, a ticket costs ${price}`,
    );
    const summary = setInterval(() => void this.summarise(main, app, a, price), SUMMARY_EVERY_MS);
    this.cleanup.add('the summaries', () => clearInterval(summary));

    // 4. A ticket earned is redeemed for priority at the main relay…
    await this.until('the first ticket', () => wallet.counts().unspent >= 1, 90_000);
    n.say(
      'Redeeming a ticket at the main relay, over a new connection that has nothing to do with the mining one…',
    );
    const granted = await redeemFromWallet(wallet, { relayUrl: mainCircuit, now });
    this.checkpoint();
    if (granted.kind !== 'granted') {
      throw new Error(`the main relay did not grant priority: ${describeRedeem(granted)}`);
    }
    this.redeemed += 1;
    const { grant } = granted;
    n.say(
      `Priority granted by the main relay: class "${grant.class}" until ${clock(grant.expiresAt)} (grant token ${grant.token.slice(0, 8)}…)`,
    );

    // 5. …and the priority shows as bandwidth through the relay's tunnel.
    n.say(
      `Measuring the relay's tunnel (shaped to ${linkMbit} Mbit/s): a download from a local test server through a free stream and a paid stream at the same time, for ${MEASURE_SECONDS} s…`,
    );
    const rates = await measureFreeVsPaid({
      relayUrl: main.url,
      to: bytes.address,
      token: grant.token,
      seconds: MEASURE_SECONDS,
      signal: this.aborter.signal,
    });
    this.checkpoint();
    const ratio = rates.freeMbit > 0 ? ` (${(rates.paidMbit / rates.freeMbit).toFixed(1)}×)` : '';
    n.say(
      `Tunnel throughput: free stream ${rates.freeMbit.toFixed(1)} Mbit/s, paid stream ${rates.paidMbit.toFixed(1)} Mbit/s${ratio}: paid traffic goes first, free traffic is guaranteed 20% of the link`,
    );

    // 6. A ticket of the main relay spent at the backup relay (Protocol 2).
    await this.until('another ticket', () => wallet.counts().unspent >= 1, 90_000);
    n.say(
      "Redeeming a main-relay ticket at the backup relay: it checks the main relay's signature and reserves the ticket there, so it cannot be spent twice…",
    );
    const atBackup = await redeemAtBackup(wallet, {
      issuedBy: mainCircuit,
      backup: circuitUrl(backup.url),
      now,
      patienceMs: BACKUP_PATIENCE_MS,
      signal: this.aborter.signal,
    });
    this.checkpoint();
    if (atBackup.kind === 'granted') {
      this.redeemed += 1;
      n.say(
        `Priority granted by the backup relay: class "${atBackup.grant.class}" until ${clock(atBackup.grant.expiresAt)}`,
      );
    } else {
      n.say(`The backup relay did not accept the ticket: ${describeRedeem(atBackup)}`);
    }

    // 7. Mining goes on (the dashboard keeps moving) with a summary now and then.
    await this.summarise(main, app, a, price);
    this.checkpoint();
    if (this.options.exitWhenDone) {
      clearInterval(summary);
      unnarrateMiner(); // its circuit closing now is no news
      await stopMiner();
      this.stop('Story complete (--exit-when-done)');
      return;
    }
    n.say(
      'Story complete. Mining goes on, with a summary every 10 s; the dashboard shows it live. Press Ctrl-C to stop and remove everything.',
    );
  }

  private async summarise(relay: Relay, app: MineApp, node: RegtestNode, price: number) {
    const snapshot = relay.stats.snapshot();
    const status = app.status();
    const chain = await height(node).catch(() => null);
    this.n.say(
      summaryLine({
        hashrate: status.miner?.hashrate ?? 0,
        sharesAccepted: snapshot.shares.accepted,
        blocksAccepted: snapshot.blocks.accepted,
        height: chain,
        credit: status.credit,
        price,
        ticketsEarned: status.tickets,
        ticketsRedeemed: this.redeemed,
      }),
    );
  }

  private checkpoint(): void {
    if (this.aborter.signal.aborted) throw new StopRequested('stopped');
  }

  /** Poll `check` until it holds; fails after `timeoutMs`, stops early on a stop. */
  private async until(
    what: string,
    check: () => boolean | Promise<boolean>,
    timeoutMs = STEP_TIMEOUT_MS,
  ): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      this.checkpoint();
      if (await check()) return;
      if (Date.now() > deadline) {
        throw new Error(`gave up after ${timeoutMs / 1000} s waiting for ${what}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
}

function isLive(relay: Relay): boolean {
  return relay.stratifier.upstreamState === 'live';
}

async function height(node: RegtestNode): Promise<number> {
  return node.rpc.call('getblockcount', [], z.number().int().nonnegative());
}

function short(hex: string): string {
  return `${hex.slice(0, 8)}…`;
}

/** Local wall-clock time of a unix timestamp, HH:MM:SS. */
function clock(unixSeconds: number): string {
  return new Date(unixSeconds * 1000).toTimeString().slice(0, 8);
}

function describeRedeem(outcome: RedeemOutcome): string {
  switch (outcome.kind) {
    case 'none':
      return 'the wallet had no ticket for it';
    case 'granted':
      return 'granted';
    case 'refused':
      return `refused (code ${outcome.code}: ${outcome.message})`;
    default:
      return `${outcome.kind}: ${outcome.message}`;
  }
}
