import type { MineApp } from '../client/mine-app.js';
import type { Relay } from '../relay/relay.js';
import { RpcErrorCode } from '../protocol/errors.js';
import type { SourceState, SubmitOutcome } from '../sources/work-source.js';
import type { Narrator } from './narrator.js';

/**
 * Relay and miner events told in plain words. The first few of each kind are explained as
 * they happen; after that they only show in the periodic summary (see `summaryLine`), since
 * on regtest shares, blocks and jobs come several times a second.
 */

const FIRST_FEW = 3;

export interface RelayVoice {
  /** "main relay", "backup relay". */
  name: string;
  /** "node A": the litecoind it mines on. */
  node: string;
  /** Tell its rejected shares and its blocks (the relay the miner mines for). */
  mining: boolean;
}

/** Narrate one relay's source state and, for the relay being mined, rejects and blocks. */
export function narrateRelay(relay: Relay, voice: RelayVoice, n: Narrator): () => void {
  // Attached once the relay is live (the story says so itself): only changes are told.
  let down = false;
  const onState = (state: SourceState): void => {
    if (state === 'down' && !down) {
      down = true;
      n.firstFew(
        `${voice.name}:down`,
        FIRST_FEW,
        () =>
          `The ${voice.name} lost ${voice.node}; it retries, and keeps its miners connected meanwhile`,
      );
    } else if (state === 'live' && down) {
      down = false;
      n.firstFew(`${voice.name}:back`, FIRST_FEW, () => `The ${voice.name} has ${voice.node} back`);
    }
  };
  relay.source.on('state', onState);
  if (!voice.mining) return () => relay.source.off('state', onState);

  const onShare = ({ code, reason }: { code: number | null; reason?: string }): void => {
    if (code === null) return; // accepted shares are told from the miner's side, with its credit
    if (code === RpcErrorCode.jobNotFound) {
      n.firstFew(
        'share:stale',
        1,
        () =>
          `${voice.name}: a share came in after its job was replaced (stale, no credit); normal when blocks come this fast`,
      );
      return;
    }
    n.firstFew(
      'share:rejected',
      FIRST_FEW,
      () => `${voice.name}: a share was rejected (${reason ?? `code ${code}`})`,
    );
  };
  const onBlock = ({ hash, outcome }: { hash: string; outcome: SubmitOutcome | null }): void => {
    const block = `${hash.slice(0, 16)}…`;
    if (outcome === null) return; // met the network target only; nothing was submitted
    if (outcome.accepted) {
      n.firstFew(
        'block:accepted',
        FIRST_FEW,
        () =>
          `${voice.node} accepted block ${block} built from a miner's share (on regtest almost every share meets the network target)`,
      );
    } else {
      n.firstFew(
        'block:refused',
        1,
        () =>
          `Block ${block} came too late (${outcome.reason}): another block at the same height got there first, the usual fate of a late block on a chain this fast`,
      );
    }
  };
  relay.stratifier.on('share', onShare);
  relay.stratifier.on('block', onBlock);
  return () => {
    relay.source.off('state', onState);
    relay.stratifier.off('share', onShare);
    relay.stratifier.off('block', onBlock);
  };
}

/** Narrate the miner: its circuit, the jobs it gets, its credit after each share, its tickets. */
export function narrateMiner(app: MineApp, price: number, n: Narrator): () => void {
  let tickets = 0;
  const onState = (state: SourceState): void => {
    if (state === 'live') {
      n.firstFew(
        'miner:live',
        1,
        () =>
          'The miner is connected to the main relay over its circuit, registered for tickets, and has work',
      );
    } else if (state === 'down') {
      n.firstFew(
        'miner:down',
        FIRST_FEW,
        () => 'The miner lost its circuit to the relay; it reconnects by itself',
      );
    }
  };
  let jobs = 0;
  const onJob = ({ jobId, clean }: { jobId: string; clean: boolean }): void => {
    jobs += 1;
    if (jobs === 1) {
      n.say(
        `main relay → miner: job ${jobId}, a block template of node A with an easy share target`,
      );
    } else if (clean) {
      n.firstFew(
        'job:clean',
        1,
        () =>
          `main relay → miner: job ${jobId} replaces the old one (a block moved the chain on; this happens after every block)`,
      );
    }
  };
  const onCredit = (credit: number): void => {
    n.firstFew(
      'credit',
      FIRST_FEW,
      () =>
        `miner → main relay: share accepted; the miner's credit is now ${credit.toFixed(1)} (a ticket costs ${price})`,
    );
  };
  const onTicket = (): void => {
    tickets += 1;
    const count = tickets;
    n.firstFew('ticket', FIRST_FEW, () =>
      count === 1
        ? `Ticket 1 issued: the miner spent ${price} credit, the relay blind-signed a ticket it will not be able to recognise later, and the miner stored it in its wallet`
        : `Ticket ${count} issued and stored in the wallet`,
    );
  };
  app.source.on('state', onState);
  app.source.on('job', onJob);
  app.source.updates.on('credit', onCredit);
  app.on('ticket', onTicket);
  return () => {
    app.source.off('state', onState);
    app.source.off('job', onJob);
    app.source.updates.off('credit', onCredit);
    app.off('ticket', onTicket);
  };
}

export interface SummaryFigures {
  hashrate: number;
  sharesAccepted: number;
  blocksAccepted: number;
  height: number | null;
  credit: number;
  price: number;
  ticketsEarned: number;
  ticketsRedeemed: number;
}

/** One line of running totals. */
export function summaryLine(f: SummaryFigures): string {
  return [
    `so far: miner ${humanRate(f.hashrate)}`,
    `${f.sharesAccepted} shares accepted`,
    `${f.blocksAccepted} blocks${f.height === null ? '' : ` (chain height ${f.height})`}`,
    `credit ${f.credit.toFixed(1)}/${f.price}`,
    `tickets: ${f.ticketsEarned} earned, ${f.ticketsRedeemed} redeemed`,
  ].join(' · ');
}

function humanRate(hps: number): string {
  if (hps >= 1e6) return `${(hps / 1e6).toFixed(2)} MH/s`;
  if (hps >= 1e3) return `${(hps / 1e3).toFixed(2)} kH/s`;
  return `${hps.toFixed(0)} H/s`;
}
