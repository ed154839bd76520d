import { Command, InvalidArgumentError, Option } from 'commander';
import { type HashrateMeasurement, measureHashrate } from '../client/hashrate-probe.js';
import { DEFAULT_TICKET_GROUPS } from '../qos/ticket-groups.js';
import { loadRelayConfig, type RelayConfig, relayConfigSchema } from '../relay/config.js';
import { ALGORITHMS, type Algorithm } from '../work/algorithm.js';
import { MIN_DIFFICULTY } from '../work/target.js';
import {
  DEFAULT_COIN,
  type EarningsInput,
  networkShareDifficulty,
  type TermsReport,
  termsAssumptions,
  ticketEconomics,
  type TicketTerms,
} from '../work/ticket-economics.js';
import { fail } from './output.js';
import { UsageError } from './usage-error.js';

/**
 * `powbridge terms`: what a relay's ticket terms cost a miner (hashes, minutes, tickets an
 * hour) and what the miner's work is worth to the relay upstream. The arithmetic is in
 * src/work/ticket-economics.ts, the measurement in src/client/hashrate-probe.ts.
 */

interface TermsFlags {
  config?: string;
  algorithm?: Algorithm;
  price?: number;
  ticketDifficulty?: number;
  window?: number;
  hashrate?: number;
  threads?: number;
  measureSeconds: number;
  networkDifficulty?: number;
  blockReward?: number;
  poolFee: number;
  shareValue?: number;
  upstreamDifficulty?: number;
  json?: boolean;
}

export type Measure = (options: {
  algorithm: Algorithm;
  threads: number;
  seconds: number;
}) => Promise<HashrateMeasurement>;

export interface TermsCommandDeps {
  /** This machine's hash rate (default: the miner's threads and kernels); tests inject one. */
  measure?: Measure;
  stdout?: (text: string) => void;
  stderr?: (text: string) => void;
}

function positiveNumber(what: string) {
  return (value: string): number => {
    const n = /^\s*$/.test(value) ? NaN : Number(value);
    if (!(Number.isFinite(n) && n > 0)) throw new InvalidArgumentError(`expected ${what} > 0`);
    return n;
  };
}

function numberIn(min: number, max: number, what: string) {
  return (value: string): number => {
    const n = /^\s*$/.test(value) ? NaN : Number(value);
    if (!(n >= min && n <= max)) throw new InvalidArgumentError(`expected ${what}`);
    return n;
  };
}

function difficultyArg(value: string): number {
  const n = /^\s*$/.test(value) ? NaN : Number(value);
  if (!(Number.isFinite(n) && n >= MIN_DIFFICULTY)) {
    throw new InvalidArgumentError('expected a difficulty >= 2^-32');
  }
  return n;
}

function windowArg(value: string): number {
  const n = /^\d{1,5}$/.test(value) ? Number(value) : NaN;
  if (!(n >= 10 && n <= 86_400)) {
    throw new InvalidArgumentError(
      'expected whole seconds from 10 to 86400 (tickets.windowSeconds)',
    );
  }
  return n;
}

function threadsArg(value: string): number {
  const n = /^\d{1,3}$/.test(value) ? Number(value) : NaN;
  if (!(n >= 1 && n <= 256))
    throw new InvalidArgumentError('expected a whole number from 1 to 256');
  return n;
}

const SI_PREFIXES: Readonly<Record<string, number>> = { k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15 };

/** A hash rate as people write it: 5000, 5e3, 5k, 5kH/s, 1.2 MH/s. */
export function parseHashrate(value: string): number {
  const match = /^\s*(\d+(?:\.\d+)?(?:e[+-]?\d+)?)\s*([kMGTP])?\s*(?:H\/s)?\s*$/i.exec(value);
  const prefix = match?.[2];
  const scale = prefix === undefined ? 1 : SI_PREFIXES[prefix === 'K' ? 'k' : prefix];
  const hps = match?.[1] !== undefined && scale !== undefined ? Number(match[1]) * scale : NaN;
  if (!(Number.isFinite(hps) && hps > 0)) {
    throw new InvalidArgumentError('expected hashes per second > 0, e.g. 5000, 5k or 1.2MH/s');
  }
  return hps;
}

/** The relay's own defaults, read from its config schema so the two cannot drift apart. */
function defaultSections(): Pick<RelayConfig, 'tickets' | 'difficulty' | 'tunnel'> & {
  algorithm: Algorithm;
} {
  const shape = relayConfigSchema.shape;
  return {
    tickets: shape.tickets.parse(undefined),
    difficulty: shape.difficulty.parse(undefined),
    tunnel: shape.tunnel.parse(undefined),
    algorithm: shape.source.options[0].shape.algorithm.parse(undefined),
  };
}

/** Terms from --config (else the relay's defaults), each flag given replacing its key. */
function termsOf(flags: TermsFlags, config: RelayConfig | null): TicketTerms {
  const sections = config ?? defaultSections();
  return {
    algorithm: flags.algorithm ?? config?.source.algorithm ?? defaultSections().algorithm,
    price: flags.price ?? sections.tickets.price,
    ticketDifficulty: flags.ticketDifficulty ?? sections.difficulty.ticketDifficulty,
    windowSeconds: flags.window ?? sections.tickets.windowSeconds,
    targetShareSeconds: sections.difficulty.targetShareSeconds,
    groups: sections.tunnel.groups ?? DEFAULT_TICKET_GROUPS,
  };
}

function earningsOf(
  flags: TermsFlags,
  terms: TicketTerms,
  config: RelayConfig | null,
): EarningsInput | null {
  const coin = DEFAULT_COIN[terms.algorithm];
  const solo = config?.source.type === 'node';
  if (flags.shareValue !== undefined) {
    return {
      basis: { kind: 'share-value', shareValue: flags.shareValue },
      coin: coin.coin,
      upstreamDifficulty: flags.upstreamDifficulty ?? null,
    };
  }
  if (flags.networkDifficulty === undefined) return null;
  return {
    basis: {
      kind: 'network',
      networkDifficulty: flags.networkDifficulty,
      blockReward: flags.blockReward ?? coin.blockReward,
      poolFeePercent: flags.poolFee,
    },
    coin: coin.coin,
    // Solo, the node is the upstream: only a block is forwarded.
    upstreamDifficulty:
      flags.upstreamDifficulty ??
      (solo ? networkShareDifficulty(flags.networkDifficulty, terms.algorithm) : null),
  };
}

// ---- printing ----

const PREFIXES = ['', 'k', 'M', 'G', 'T', 'P', 'E'];

/** 3 significant digits with an SI prefix: "65.5 k hashes", "5 kH/s". */
function si(value: number, unit: string): string {
  let scaled = value;
  let i = 0;
  while (Math.abs(scaled) >= 999.5 && i < PREFIXES.length - 1) {
    scaled /= 1000;
    i += 1;
  }
  const prefix = PREFIXES[i] ?? '';
  // A prefix joins a symbol (kH/s) but stands apart from a word (k hashes).
  const symbol = unit.includes('/');
  return `${num(scaled)} ${prefix}${symbol || prefix === '' ? '' : ' '}${unit}`;
}

/** 3 significant digits (whole numbers below 1e6 in full): 0.0117, 17.2, 4,096, 619,000, 2.58e17. */
function num(value: number): string {
  if (value === 0) return '0';
  const abs = Math.abs(value);
  if (abs >= 1e6 || abs < 1e-3) {
    return value
      .toExponential(2)
      .replace(/\.?0+e/, 'e')
      .replace('e+', 'e');
  }
  if (abs >= 100) return grouped(Number.isInteger(value) ? value : Number(value.toPrecision(3)));
  const text = value.toPrecision(3);
  return text.includes('.') ? text.replace(/\.?0+$/, '') : text;
}

function grouped(value: number): string {
  return Math.round(value).toLocaleString('en-US');
}

function duration(seconds: number): string {
  if (seconds < 90) return `${num(seconds)} s`;
  if (seconds < 90 * 60) return `${num(seconds / 60)} min`;
  if (seconds < 48 * 3600) return `${num(seconds / 3600)} h`;
  if (seconds < 730 * 86_400) return `${num(seconds / 86_400)} days`;
  return `${num(seconds / (365.25 * 86_400))} years`;
}

function percent(fraction: number): string {
  const value = fraction * 100;
  return `${value >= 10 ? Math.round(value) : num(value)}%`;
}

function powerOfTwo(value: number): string {
  const exponent = Math.log2(value);
  return Number.isInteger(exponent) && Math.abs(exponent) >= 4 ? ` (2^${exponent})` : '';
}

interface HashrateOrigin {
  hps: number;
  measured: HashrateMeasurement | null;
}

/** A paragraph as lines of at most `width` characters, the first after `bullet`. */
function wrap(text: string, bullet: string, width = 78): string[] {
  const lines: string[] = [];
  let line = bullet;
  for (const word of text.split(' ')) {
    if (line.length + word.length > width && line.trim() !== bullet.trim()) {
      lines.push(line.trimEnd());
      line = ' '.repeat(bullet.length);
    }
    line += `${word} `;
  }
  lines.push(line.trimEnd());
  return lines;
}

/** A labelled line, its text wrapped under itself. */
function row(label: string, text: string): string {
  const [first = '', ...rest] = wrap(text, '');
  const indent = ' '.repeat(20);
  return [`  ${label.padEnd(18)}${first}`, ...rest.map((line) => indent + line.trim())].join('\n');
}

export function termsText(
  report: TermsReport,
  origin: { hashrate: HashrateOrigin; termsFrom: string; solo: boolean },
): string {
  const { terms, miner, relay } = report;
  const rate = si(report.hashrate, 'H/s');
  const measured = origin.hashrate.measured;
  const lines = [
    `Terms: ${terms.algorithm}, price ${num(terms.price)} credit, ticketDifficulty ` +
      `${num(terms.ticketDifficulty)}${powerOfTwo(terms.ticketDifficulty)}, window ` +
      `${grouped(terms.windowSeconds)} s (${origin.termsFrom})`,
    measured === null
      ? `Hash rate: ${rate} (given)`
      : `Hash rate: ${rate}, measured on this machine: ${measured.threads} ` +
        `thread${measured.threads === 1 ? '' : 's'} of the miner's ${measured.algorithm} kernel ` +
        `for ${measured.seconds.toFixed(1)} s`,
    ...(measured !== null && measured.load.average > measured.load.cpus - measured.threads + 0.5
      ? wrap(
          `(this machine is busy: load average ${measured.load.average.toFixed(1)} on ` +
            `${measured.load.cpus} CPUs, so the figure is low; measure again when it is idle, ` +
            'or give --hashrate)',
          '',
          96,
        )
      : []),
    '',
    'The miner',
    row(
      'one credit',
      `one accepted share at difficulty ${num(terms.ticketDifficulty)} = ` +
        `${si(miner.hashesPerCredit, 'hashes')} expected`,
    ),
    row(
      'one ticket',
      `${num(terms.price)} credit = ${si(miner.hashesPerTicket, 'hashes')} expected`,
    ),
    row(
      'time per ticket',
      `${duration(miner.secondsPerTicket)} at ${rate} (±${percent(miner.timeSpread)}: ` +
        (miner.sharesPerTicket >= 1
          ? `about ${grouped(miner.sharesPerTicket)} shares at vardiff's one per ` +
            `${num(terms.targetShareSeconds)} s)`
          : `one share, at vardiff's one per ${num(terms.targetShareSeconds)} s, pays for ` +
            `${num(1 / miner.sharesPerTicket)} tickets)`),
    ),
    row('tickets per hour', num(miner.ticketsPerHour)),
    row(
      'priority',
      `each ticket counts ${duration(terms.windowSeconds)} from its redemption; to stay in`,
    ),
    ...miner.groups.map((group) =>
      row(
        `  ${group.leaf} (${group.minTickets}+)`,
        `${num(group.ticketsPerHour)} tickets/h, ${percent(group.shareOfEarnings)} of ` +
          `what this hash rate earns${group.shareOfEarnings > 1 ? ': more than it earns' : ''}`,
      ),
    ),
    '',
  ];
  if (relay === null) {
    lines.push(
      "The relay: give --network-difficulty (your node's getdifficulty, or an explorer's figure)",
      "  for what the miner's work is worth upstream, or --share-value for a pool's pay per share.",
    );
  } else {
    const { coin, basis } = relay;
    lines.push("The relay (the expected value of the miner's work upstream)");
    if (basis.kind === 'network') {
      lines.push(
        row(
          'network',
          `difficulty ${num(basis.networkDifficulty)} (getdifficulty; ` +
            `${num(relay.networkShareDifficulty ?? 0)} in ${terms.algorithm} share units): ` +
            `${num(relay.hashesPerBlock ?? 0)} hashes a block`,
        ),
        row(
          'block reward',
          `${num(basis.blockReward)} ${coin}` +
            (basis.poolFeePercent > 0 ? `, less a ${num(basis.poolFeePercent)}% pool fee` : ''),
        ),
      );
    } else {
      lines.push(row('share value', `${num(basis.shareValue)} ${coin} per difficulty-1 share`));
    }
    lines.push(
      row('per ticket', `${num(relay.valuePerTicket)} ${coin}`),
      row('per hour', `${num(relay.valuePerHour)} ${coin} at ${rate}`),
    );
    if (relay.blockChancePerTicket !== null && relay.secondsPerBlock !== null) {
      lines.push(
        row(
          'blocks',
          `one ticket's work holds a block with chance ${num(relay.blockChancePerTicket)}; ` +
            `this hash rate alone finds one every ${duration(relay.secondsPerBlock)}`,
        ),
      );
    }
    if (origin.solo && relay.blockChancePerTicket !== null) {
      lines.push(row('forwarded', 'solo: a share goes up only as a block (above)'));
    } else if (relay.forwardedPerTicket === null || relay.upstreamDifficulty === null) {
      lines.push(
        row(
          'forwarded',
          "give --upstream-difficulty (the pool's share difficulty) for how often a share goes up",
        ),
      );
    } else {
      const per = relay.forwardedPerTicket;
      lines.push(
        row(
          'forwarded',
          `shares at upstream difficulty ${num(relay.upstreamDifficulty)}: ` +
            (per >= 1
              ? `${num(per)} per ticket`
              : `one per ${num(1 / per)} tickets (one every ` +
                `${duration(miner.secondsPerTicket / per)} at ${rate})`),
        ),
      );
    }
  }
  lines.push('', 'Assumptions');
  for (const assumption of termsAssumptions(report)) lines.push(...wrap(assumption, '  - ', 96));
  return `${lines.join('\n')}\n`;
}

export function termsCommand(deps: TermsCommandDeps = {}): Command {
  const measure: Measure = deps.measure ?? ((options) => measureHashrate(options));
  const stdout = deps.stdout ?? ((text: string) => void process.stdout.write(text));
  const stderr = deps.stderr ?? ((text: string) => void process.stderr.write(text));
  return new Command('terms')
    .description(
      "what a relay's ticket terms cost a miner (hashes, minutes, tickets an hour) and what " +
        'the work is worth to the relay',
    )
    .addOption(
      new Option(
        '-c, --config <file>',
        'relay config (TOML): its algorithm, price, ticketDifficulty, window and groups',
      ),
    )
    .addOption(
      new Option(
        '-a, --algorithm <name>',
        "proof of work (default: the config's, else scrypt)",
      ).choices(ALGORITHMS),
    )
    .option(
      '--price <credit>',
      "tickets.price (default: the config's, else 16)",
      positiveNumber('a price'),
    )
    .option(
      '--ticket-difficulty <d>',
      "difficulty.ticketDifficulty: the share difficulty of one credit (default: the config's, else 1)",
      difficultyArg,
    )
    .option(
      '--window <seconds>',
      "tickets.windowSeconds (default: the config's, else 600)",
      windowArg,
    )
    .addOption(
      new Option(
        '--hashrate <H/s>',
        "the miner's hash rate, e.g. 5k or 1.2MH/s (default: measure this machine)",
      )
        .argParser(parseHashrate)
        .conflicts('threads'),
    )
    .option('--threads <n>', 'threads to measure with (default: 1)', threadsArg)
    .option(
      '--measure-seconds <s>',
      'how long to measure',
      numberIn(0.2, 60, 'seconds from 0.2 to 60'),
      2,
    )
    .option(
      '--network-difficulty <d>',
      "the network's difficulty as the node's getdifficulty (or an explorer) reports it",
      positiveNumber('a difficulty'),
    )
    .option(
      '--block-reward <coins>',
      'coins per block (default: the subsidy, 6.25 LTC for scrypt, 3.125 BTC for sha256d)',
      positiveNumber('coins'),
    )
    .option(
      '--pool-fee <percent>',
      "the pool's fee, taken off the block reward",
      numberIn(0, 99.99, 'a percentage from 0 to 99.99'),
      0,
    )
    .addOption(
      new Option(
        '--share-value <coins>',
        'instead: what the pool pays per difficulty-1 share (its Stratum unit), fee taken',
      )
        .argParser(positiveNumber('coins'))
        .conflicts(['networkDifficulty', 'blockReward']),
    )
    .option(
      '--upstream-difficulty <d>',
      "the pool's share difficulty: how often a share is forwarded (solo: the network's)",
      positiveNumber('a difficulty'),
    )
    .option('--json', 'print one JSON object instead of text')
    .action(async (flags: TermsFlags) => {
      try {
        if (flags.blockReward !== undefined && flags.networkDifficulty === undefined) {
          throw new UsageError('--block-reward needs --network-difficulty');
        }
        const config = flags.config === undefined ? null : loadRelayConfig(flags.config);
        const terms = termsOf(flags, config);
        let hashrate: HashrateOrigin;
        if (flags.hashrate !== undefined) {
          hashrate = { hps: flags.hashrate, measured: null };
        } else {
          const threads = flags.threads ?? 1;
          stderr(
            `measuring this machine's ${terms.algorithm} hash rate with ${threads} ` +
              `thread${threads === 1 ? '' : 's'} for ${flags.measureSeconds} s…\n`,
          );
          const measured = await measure({
            algorithm: terms.algorithm,
            threads,
            seconds: flags.measureSeconds,
          });
          hashrate = { hps: measured.hps, measured };
        }
        const report = ticketEconomics(terms, hashrate.hps, earningsOf(flags, terms, config));
        if (flags.json) {
          stdout(
            `${JSON.stringify({
              ...report,
              measurement: hashrate.measured,
              assumptions: termsAssumptions(report),
            })}\n`,
          );
          return;
        }
        const termsFrom =
          flags.config === undefined
            ? "the relay's defaults" + (hasTermFlags(flags) ? ', flags over them' : '')
            : `${flags.config}${hasTermFlags(flags) ? ', flags over it' : ''}`;
        stdout(termsText(report, { hashrate, termsFrom, solo: config?.source.type === 'node' }));
      } catch (err) {
        fail('terms', err);
      }
    });
}

function hasTermFlags(flags: TermsFlags): boolean {
  return [flags.algorithm, flags.price, flags.ticketDifficulty, flags.window].some(
    (value) => value !== undefined,
  );
}
