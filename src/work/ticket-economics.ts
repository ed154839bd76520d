import type { Algorithm } from './algorithm.js';
import { hashesPerDifficulty } from './target.js';

/**
 * What a relay's ticket terms cost a miner and what the miner's work is worth to the relay
 * (`powbridge terms`): pure arithmetic over expected values, no clock, no I/O.
 *
 * Credit (docs/design.md §4.4): an accepted share of difficulty d earns d ÷ ticketDifficulty
 * credit, and a ticket costs `price` credit, so a ticket is `price × ticketDifficulty`
 * difficulty units of work, whatever difficulty vardiff gives the miner.
 */

/**
 * Expected hashes per block at a network difficulty as the node reports it (`getdifficulty`,
 * what explorers show). Bitcoin Core and Litecoin Core both measure it against 0x1d00ffff,
 * sha256d's difficulty-1 target, whatever the proof-of-work: Litecoin's regtest target
 * 0x207fffff reads 4.66e-10, about 2 hashes a block.
 */
export function hashesPerBlock(networkDifficulty: number): number {
  return networkDifficulty * hashesPerDifficulty('sha256d');
}

/** A node's network difficulty in the algorithm's Stratum unit (scrypt: × 65536). */
export function networkShareDifficulty(networkDifficulty: number, algorithm: Algorithm): number {
  return hashesPerBlock(networkDifficulty) / hashesPerDifficulty(algorithm);
}

/** The coin each algorithm is mined for here, and its block subsidy (fees not included). */
export const DEFAULT_COIN: Readonly<Record<Algorithm, { coin: string; blockReward: number }>> = {
  // Litecoin's subsidy since the halving of August 2023 (height 2,520,000).
  scrypt: { coin: 'LTC', blockReward: 6.25 },
  // Bitcoin's subsidy since the halving of April 2024 (height 840,000).
  sha256d: { coin: 'BTC', blockReward: 3.125 },
};

export interface TicketTerms {
  algorithm: Algorithm;
  /** `tickets.price`: credit one ticket costs. */
  price: number;
  /** `difficulty.ticketDifficulty`: the share difficulty one credit is. */
  ticketDifficulty: number;
  /** `tickets.windowSeconds`: how long each redeemed ticket counts for its grant. */
  windowSeconds: number;
  /** `difficulty.targetShareSeconds`: vardiff's aim, which sets how lumpy credit comes. */
  targetShareSeconds: number;
  /** `[[tunnel.groups]]`: tickets counting in a window → the class a grant gets. */
  groups: readonly { minTickets: number; leaf: string }[];
}

/** What the miner's work is worth upstream; one basis or the other. */
export type EarningsBasis =
  | {
      kind: 'network';
      /** As the node's `getdifficulty` reports it. */
      networkDifficulty: number;
      /** Coins per block (subsidy, plus fees if the caller counts them). */
      blockReward: number;
      /** The pool's fee, percent (0 solo). */
      poolFeePercent: number;
    }
  | {
      kind: 'share-value';
      /** What the pool pays per share of difficulty 1 (Stratum unit), fees already taken. */
      shareValue: number;
    };

export interface EarningsInput {
  basis: EarningsBasis;
  coin: string;
  /**
   * Share difficulty the upstream asks for (Stratum unit): only shares meeting it are
   * forwarded. Solo, it is the network's; unknown for a pool unless given.
   */
  upstreamDifficulty: number | null;
}

export interface GroupCost {
  leaf: string;
  minTickets: number;
  /** Tickets an hour that keep this many counting all the time. */
  ticketsPerHour: number;
  /** That rate as a fraction of what the miner earns (above 1: this hash rate cannot). */
  shareOfEarnings: number;
}

export interface MinerSide {
  /** Expected hashes for one credit. */
  hashesPerCredit: number;
  hashesPerTicket: number;
  secondsPerTicket: number;
  ticketsPerHour: number;
  /** Shares per ticket at vardiff's aim (fewer than 1: one share pays several tickets). */
  sharesPerTicket: number;
  /** Relative spread (standard deviation ÷ mean) of the time per ticket. */
  timeSpread: number;
  groups: GroupCost[];
}

export interface RelaySide {
  coin: string;
  basis: EarningsBasis;
  /** Expected hashes per block (network basis only). */
  hashesPerBlock: number | null;
  /** The network difficulty in the algorithm's Stratum unit (network basis only). */
  networkShareDifficulty: number | null;
  valuePerTicket: number;
  valuePerHour: number;
  /** Chance that one ticket's work holds a block (network basis only). */
  blockChancePerTicket: number | null;
  /** Mean time for this hash rate alone to find a block (network basis only). */
  secondsPerBlock: number | null;
  upstreamDifficulty: number | null;
  /** Expected shares forwarded upstream per ticket's work (null: upstream unknown). */
  forwardedPerTicket: number | null;
  forwardedPerHour: number | null;
}

export interface TermsReport {
  terms: TicketTerms;
  hashrate: number;
  miner: MinerSide;
  relay: RelaySide | null;
}

export class TermsError extends Error {
  override name = 'TermsError';
}

function requirePositive(name: string, value: number): void {
  if (!(Number.isFinite(value) && value > 0)) {
    throw new TermsError(`${name} must be a positive number, got ${value}`);
  }
}

export function minerSide(terms: TicketTerms, hashrate: number): MinerSide {
  requirePositive('price', terms.price);
  requirePositive('ticketDifficulty', terms.ticketDifficulty);
  requirePositive('windowSeconds', terms.windowSeconds);
  requirePositive('targetShareSeconds', terms.targetShareSeconds);
  requirePositive('hash rate', hashrate);
  const hashesPerCredit = terms.ticketDifficulty * hashesPerDifficulty(terms.algorithm);
  const hashesPerTicket = terms.price * hashesPerCredit;
  const secondsPerTicket = hashesPerTicket / hashrate;
  const ticketsPerHour = 3600 / secondsPerTicket;
  const sharesPerTicket = secondsPerTicket / terms.targetShareSeconds;
  return {
    hashesPerCredit,
    hashesPerTicket,
    secondsPerTicket,
    ticketsPerHour,
    sharesPerTicket,
    // Waiting for n shares of equal difficulty is a sum of n exponential waits: spread 1/√n.
    // A ticket needs at least one share, however cheap it is.
    timeSpread: 1 / Math.sqrt(Math.max(1, sharesPerTicket)),
    groups: terms.groups.map((group) => {
      // Each ticket counts for one window from its redemption (docs/design.md §8).
      const perHour = (group.minTickets * 3600) / terms.windowSeconds;
      return {
        leaf: group.leaf,
        minTickets: group.minTickets,
        ticketsPerHour: perHour,
        shareOfEarnings: perHour / ticketsPerHour,
      };
    }),
  };
}

export function relaySide(
  terms: TicketTerms,
  hashrate: number,
  miner: MinerSide,
  input: EarningsInput,
): RelaySide {
  const { basis } = input;
  let valuePerHash: number;
  let perBlock: number | null = null;
  if (basis.kind === 'network') {
    requirePositive('network difficulty', basis.networkDifficulty);
    requirePositive('block reward', basis.blockReward);
    if (!(basis.poolFeePercent >= 0 && basis.poolFeePercent < 100)) {
      throw new TermsError(
        `pool fee must be a percentage in [0, 100), got ${basis.poolFeePercent}`,
      );
    }
    perBlock = hashesPerBlock(basis.networkDifficulty);
    valuePerHash = (basis.blockReward * (1 - basis.poolFeePercent / 100)) / perBlock;
  } else {
    requirePositive('share value', basis.shareValue);
    valuePerHash = basis.shareValue / hashesPerDifficulty(terms.algorithm);
  }
  if (input.upstreamDifficulty !== null) {
    requirePositive('upstream difficulty', input.upstreamDifficulty);
  }
  const ticketWork = terms.price * terms.ticketDifficulty;
  const forwardedPerTicket =
    input.upstreamDifficulty === null ? null : ticketWork / input.upstreamDifficulty;
  return {
    coin: input.coin,
    basis,
    hashesPerBlock: perBlock,
    networkShareDifficulty:
      basis.kind === 'network'
        ? networkShareDifficulty(basis.networkDifficulty, terms.algorithm)
        : null,
    valuePerTicket: miner.hashesPerTicket * valuePerHash,
    valuePerHour: hashrate * 3600 * valuePerHash,
    blockChancePerTicket: perBlock === null ? null : miner.hashesPerTicket / perBlock,
    secondsPerBlock: perBlock === null ? null : perBlock / hashrate,
    upstreamDifficulty: input.upstreamDifficulty,
    forwardedPerTicket,
    forwardedPerHour:
      forwardedPerTicket === null ? null : forwardedPerTicket * miner.ticketsPerHour,
  };
}

/** The whole answer of `powbridge terms`; `earnings` null leaves the relay side out. */
export function ticketEconomics(
  terms: TicketTerms,
  hashrate: number,
  earnings: EarningsInput | null,
): TermsReport {
  const miner = minerSide(terms, hashrate);
  return {
    terms,
    hashrate,
    miner,
    relay: earnings === null ? null : relaySide(terms, hashrate, miner, earnings),
  };
}

/** The assumptions behind every figure, said once, for the text and the JSON alike. */
export function termsAssumptions(report: TermsReport): string[] {
  const lines = [
    'Every figure is an expected value: each hash is an independent trial, so the time per ' +
      'ticket varies from ticket to ticket (the spread shown is one standard deviation).',
    'The hash rate is the miner at full duty (powbridge mine --cpu 100); --cpu lowers it and ' +
      '--jitter (default 20%) varies it, and the relay counts only accepted shares.',
  ];
  const relay = report.relay;
  if (relay !== null) {
    lines.push(
      relay.basis.kind === 'network'
        ? 'The work is valued at the block reward given (the subsidy: transaction fees are not ' +
            'counted) over the network difficulty given, which changes as the network does.'
        : 'The work is valued at the pool payment per difficulty-1 share given (pay-per-share).',
      'Solo, the relay is paid only for the blocks found, all or nothing: at this share of ' +
        "the network's work the value is a long-run average, with a variance as large as the " +
        'block reward. A pool pays for every share forwarded (at its difficulty) and smooths that.',
    );
  }
  lines.push(
    "Not counted: the relay's cost of checking shares and signing tickets, and the bandwidth a " +
      'ticket buys.',
  );
  return lines;
}
