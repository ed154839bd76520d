import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { Command, InvalidArgumentError, Option } from 'commander';
import { circuitUrl, type RedeemOutcome, redeemFromWallet } from '../client/redeem.js';
import { isolatedSocksAgents, parseSocksProxy, resolvesLocally } from '../client/socks-agent.js';
import { type CheckedTicket } from '../client/ticket-check.js';
import { exportTickets, type ImportReport, importTickets } from '../client/ticket-import.js';
import {
  defaultWalletPath,
  TICKET_STATES,
  type TicketState,
  Wallet,
  type WalletCounts,
  type WalletTicket,
} from '../client/wallet.js';
import { dayDate } from '../tickets/key-store.js';
import { fail } from './output.js';
import { UsageError } from './usage-error.js';

/**
 * `powbridge tickets list | redeem | prune | import | export`: the client's ticket wallet. A ticket string is a
 * bearer token and a grant token is priority for whoever holds it, so neither is printed
 * unless asked for by flag.
 */

interface WalletFlags {
  wallet?: string;
}

const now = () => Date.now() / 1000;
const DEFAULT_WALLET_TEXT = '~/.powbridge/wallet.sqlite';
const DEFAULT_KEEP_DAYS = 30;
const MAX_COUNT = 100;
/** Tickets refused or settled without a grant in one redeem run before giving up on the relay. */
const MAX_SETBACKS = 3;
/** Outcomes that would be the same for the next ticket: the run stops at the first. */
const STOPS_THE_RUN: ReadonlySet<RedeemOutcome['kind']> = new Set([
  'none',
  'busy',
  'unreachable',
  'not-accepted',
]);

function wholeNumber(min: number, max: number) {
  return (value: string): number => {
    const n = /^\d{1,6}$/.test(value) ? Number(value) : NaN;
    if (!(n >= min && n <= max)) {
      throw new InvalidArgumentError(`expected a whole number from ${min} to ${max}`);
    }
    return n;
  };
}

/** A validating parser as a commander argument parser (its errors exit with 2). */
function argument<T>(parse: (value: string) => T): (value: string) => T {
  return (value) => {
    try {
      return parse(value);
    } catch (err) {
      throw new InvalidArgumentError(err instanceof Error ? err.message : String(err));
    }
  };
}

/**
 * An explicit --wallet must exist (a typo must not start an empty wallet), except for an
 * import, whose point is to fill one; the default is created.
 */
function openWallet(flags: WalletFlags, create = false): { wallet: Wallet; path: string } {
  if (flags.wallet && create) return { wallet: Wallet.open(flags.wallet), path: flags.wallet };
  if (flags.wallet) {
    if (!existsSync(flags.wallet)) {
      throw new Error(
        `no wallet at ${flags.wallet} (the miner creates its wallet with its first ticket)`,
      );
    }
    return { wallet: Wallet.open(flags.wallet, { create: false }), path: flags.wallet };
  }
  const path = defaultWalletPath();
  return { wallet: Wallet.open(path), path };
}

/** Open the wallet for one command, always close it, and report failures as that command's. */
async function withWallet(
  command: string,
  flags: WalletFlags,
  use: (wallet: Wallet, path: string) => void | Promise<void>,
  create = false,
): Promise<void> {
  try {
    const { wallet, path } = openWallet(flags, create);
    try {
      await use(wallet, path);
    } finally {
      wallet.close();
    }
  } catch (err) {
    fail(`tickets ${command}`, err);
  }
}

function subcommand(name: string, summary: string, details = ''): Command {
  return new Command(name)
    .summary(summary)
    .description(details ? `${summary}\n\n${details}` : summary)
    .option(
      '-w, --wallet <file>',
      `wallet file, must exist (default ${DEFAULT_WALLET_TEXT}, created if missing)`,
    );
}

const isoTime = (unix: number | null) =>
  unix === null ? '-' : new Date(unix * 1000).toISOString().replace('.000Z', 'Z');
const countsText = (c: WalletCounts) =>
  `${c.unspent} unspent, ${c.spent} spent, ${c.expired} expired`;

function listCommand(): Command {
  return subcommand(
    'list',
    'list the tickets in the wallet',
    'Unspent tickets past their last redeemable day are marked expired first. Ticket strings ' +
      'are bearer tokens (anyone holding one can spend it): shown only with --show-tickets.',
  )
    .addOption(new Option('--state <state>', 'only tickets in this state').choices(TICKET_STATES))
    .option('--json', 'print one JSON object')
    .option('--show-tickets', 'include the ticket strings (bearer tokens: anyone can spend them)')
    .action((flags: ListFlags) =>
      withWallet('list', flags, (wallet, path) => {
        wallet.expire(now());
        const tickets = wallet
          .list(flags.state ? { state: flags.state } : {})
          .map(({ ticket, ...rest }): Listed => (flags.showTickets ? { ...rest, ticket } : rest));
        const counts = wallet.counts();
        process.stdout.write(
          flags.json
            ? `${JSON.stringify({ wallet: path, counts, tickets })}\n`
            : listText(path, counts, tickets, flags.state),
        );
      }),
    );
}

type Listed = Omit<WalletTicket, 'ticket'> & { ticket?: string };

interface ListFlags extends WalletFlags {
  state?: TicketState;
  json?: boolean;
  showTickets?: boolean;
}

function listText(
  path: string,
  counts: WalletCounts,
  tickets: readonly Listed[],
  state?: TicketState,
): string {
  const lines = [`wallet ${path}: ${countsText(counts)}`];
  for (const t of tickets) {
    const settled = t.state === 'spent' ? `  spent ${isoTime(t.spentAt)}` : '';
    lines.push(
      `  ${t.id}  ${t.state.padEnd(7)}  day ${dayDate(t.day)}  key ${t.keyId}  ` +
        `${t.relay}  received ${isoTime(t.receivedAt)}${settled}`,
    );
    if (t.ticket !== undefined) lines.push(`      ${t.ticket}`);
  }
  if (tickets.length === 0) lines.push(state ? `  no ${state} tickets` : '  no tickets');
  return `${lines.join('\n')}\n`;
}

/** One line per attempt; the token only with --show-token. `topUp`: the grant it paid into. */
function outcomeLine(outcome: RedeemOutcome, showToken: boolean, topUp?: string): string {
  switch (outcome.kind) {
    case 'granted': {
      const { grant } = outcome;
      const how = grant.token === topUp ? 'paid into the same grant,' : 'granted';
      const line = `ticket ${outcome.ticketId}: ${how} class ${grant.class} until ${isoTime(grant.expiresAt)}`;
      return showToken ? `${line}\n  token ${grant.token}` : line;
    }
    case 'none':
      return 'no unspent ticket for this relay that is redeemable today';
    case 'already-spent':
      return `ticket ${outcome.ticketId}: already spent (${outcome.message}); marked spent`;
    case 'expired':
      return `ticket ${outcome.ticketId}: refused as expired (${outcome.message}); marked expired`;
    case 'busy': {
      const after = outcome.retryAfter === undefined ? 'later' : `in ${outcome.retryAfter} s`;
      return `ticket ${outcome.ticketId}: relay busy (${outcome.message}); kept, try again ${after}`;
    }
    case 'not-accepted':
      return (
        `ticket ${outcome.ticketId}: refused, code 36 (${outcome.message}); the backup takes ` +
        "none of this relay's tickets for now, so no other is tried; kept unspent"
      );
    case 'refused':
      return `ticket ${outcome.ticketId}: refused, code ${outcome.code} (${outcome.message}); kept unspent`;
    case 'unreachable':
      return `ticket ${outcome.ticketId}: no answer from the relay (${outcome.message}); kept unspent`;
  }
}

interface RedeemFlags extends WalletFlags {
  relay: string;
  at?: string;
  proxy?: URL;
  count: number;
  showToken?: boolean;
  forSocks?: boolean;
}

/** Said instead of spending a ticket on a grant whose token nobody would hold. */
const UNUSED_GRANT =
  'a grant is of use only to whoever holds its token: add --for-socks to keep it in the ' +
  'wallet for `powbridge mine --socks-listen`, or --show-token to print it; nothing was spent';

function redeemCommand(): Command {
  return subcommand(
    'redeem',
    'spend tickets at their relay for priority grants, each over a fresh circuit',
    'Tickets are spent oldest day first. The grant (class and expiry) is printed. A grant is ' +
      'of use only to whoever holds its token, so one of two is required: --for-socks keeps ' +
      'it in the wallet, where the SOCKS front of `powbridge mine --socks-listen` (same wallet, ' +
      'same relay) uses it before spending a ticket of its own, and the further tickets of ' +
      'the run (--count) are paid into that same grant (more tickets in a window: a higher ' +
      'group); --show-token prints each token. Exit status: 0 when every requested grant ' +
      'came, 1 when not (no tickets left, relay unreachable or refusing), 2 on bad input.',
  )
    .requiredOption(
      '-r, --relay <url>',
      'the relay (ws://, wss://, http:// or https://)',
      argument(circuitUrl),
    )
    .option(
      '--at <url>',
      "redeem at this relay instead, e.g. a backup listed in the relay's descriptor (backupRelays)",
      argument(circuitUrl),
    )
    .option(
      '--proxy <url>',
      'reach the relay through SOCKS5, e.g. Tor at socks5h://127.0.0.1:9050 (socks5h: DNS through the proxy)',
      argument(parseSocksProxy),
    )
    .option('-n, --count <n>', `grants to obtain, 1 to ${MAX_COUNT}`, wholeNumber(1, MAX_COUNT), 1)
    .option('--show-token', 'print the grant tokens (whoever holds one has the priority)')
    .option(
      '--for-socks',
      'keep the grant in the wallet for the SOCKS front of `powbridge mine --socks-listen`',
    )
    .action(async (flags: RedeemFlags) => {
      // Checked before the wallet is opened: refusing must spend nothing.
      if (!flags.showToken && !flags.forSocks) {
        return fail('tickets redeem', new UsageError(UNUSED_GRANT));
      }
      if (flags.proxy && resolvesLocally(flags.proxy)) {
        process.stderr.write(
          'powbridge tickets redeem: note: socks5:// resolves the relay name locally; ' +
            'with Tor use socks5h://\n',
        );
      }
      await withWallet('redeem', flags, async (wallet, path) => {
        wallet.expire(now());
        const granted = await redeemLoop(wallet, flags);
        process.stdout.write(
          `redeemed ${granted} of ${flags.count}; wallet ${path}: ${countsText(wallet.counts())}\n`,
        );
        const relay = flags.at ?? flags.relay;
        const kept = flags.forSocks ? wallet.grantFor(relay, now()) : undefined;
        if (kept && granted > 0) {
          process.stdout.write(
            `grant kept in the wallet until ${isoTime(kept.expiresAt)} for ` +
              `powbridge mine --relay ${relay} --socks-listen <host:port>` +
              `${flags.wallet ? ` --wallet ${path}` : ''}\n`,
          );
        }
        if (granted < flags.count) process.exitCode = 1;
      });
    });
}

/**
 * Redeem until `count` grants, no ticket left, or the relay fails us: unreachable, busy or not
 * taking that relay's tickets (36) at once, or MAX_SETBACKS tickets refused or settled without
 * a grant (a relay answering "spent" or "expired" to everything must not make us burn through
 * the whole wallet). With --for-socks the first ticket buys a fresh grant and the rest are
 * paid into it (a grant the front holds is one grant; separate ones would be wasted), and the
 * grant is kept in the wallet, under the relay that granted it, as soon as it exists.
 */
async function redeemLoop(wallet: Wallet, flags: RedeemFlags): Promise<number> {
  const skip: number[] = [];
  let granted = 0;
  let setbacks = 0;
  let topUp: string | undefined;
  while (granted < flags.count) {
    const outcome = await redeemFromWallet(wallet, {
      relayUrl: flags.relay,
      ...(flags.at ? { at: flags.at } : {}),
      now,
      skip,
      ...(flags.proxy ? { agentFactory: isolatedSocksAgents(flags.proxy) } : {}),
      ...(topUp === undefined ? {} : { grant: topUp }),
    });
    process.stdout.write(`${outcomeLine(outcome, flags.showToken === true, topUp)}\n`);
    if (outcome.kind === 'granted') {
      granted++;
      if (flags.forSocks) {
        const { token, expiresAt } = outcome.grant;
        wallet.keepGrant(flags.at ?? flags.relay, { token, expiresAt }, now());
        topUp = token;
      }
      continue;
    }
    if (outcome.kind === 'unreachable' && !flags.at) noteBackups();
    if (STOPS_THE_RUN.has(outcome.kind)) break;
    // Refused tickets stay unspent: skip them for the rest of this run.
    if (outcome.kind === 'refused') skip.push(outcome.ticketId);
    if (++setbacks >= MAX_SETBACKS) break;
  }
  return granted;
}

/**
 * The wallet keeps no descriptors, so this cannot say whether the relay has backups, only how
 * to use one. Never tried on our own: redeeming at a backup tells it which relay we mined at.
 */
function noteBackups(): void {
  process.stderr.write(
    'powbridge tickets redeem: note: if the relay lists backup relays in its descriptor ' +
      '(backupRelays), its tickets can be redeemed there with --at <url> (never done without ' +
      'asking: the backup would learn which relay you mined at)\n',
  );
}

function pruneCommand(): Command {
  return subcommand(
    'prune',
    'expire old tickets and delete long-settled ones',
    'Marks unspent tickets past their last redeemable day (issue day + 1, UTC) expired, then ' +
      'deletes spent and expired tickets settled more than --keep-days ago. Unspent tickets ' +
      'are never deleted.',
  )
    .option(
      '--keep-days <n>',
      'days to keep settled tickets',
      wholeNumber(0, 3650),
      DEFAULT_KEEP_DAYS,
    )
    .action((flags: WalletFlags & { keepDays: number }) =>
      withWallet('prune', flags, (wallet, path) => {
        const at = now();
        const expired = wallet.expire(at);
        const deleted = wallet.prune(at, flags.keepDays);
        process.stdout.write(
          `marked ${expired} expired, deleted ${deleted} settled more than ` +
            `${flags.keepDays} days ago; wallet ${path}: ${countsText(wallet.counts())}\n`,
        );
      }),
    );
}

function relayIdentity(value: string): string {
  if (!/^[0-9a-f]{64}$/i.test(value)) throw new InvalidArgumentError('expected 64 hex characters');
  return value.toLowerCase();
}

interface ImportFlags extends WalletFlags {
  relay?: string;
  relayIdentity?: string;
  proxy?: URL;
}

function readTicketFile(source: string): string {
  if (source === '-') return readFileSync(0, 'utf8');
  if (!existsSync(source)) throw new Error(`${source}: no such file`);
  return readFileSync(source, 'utf8');
}

const checkedLine = (c: CheckedTicket) =>
  `day ${dayDate(c.entry.day)}  key ${c.entry.keyId}${c.ok ? '' : `: ${c.reason}`}`;

function importText(report: ImportReport, path: string, counts: WalletCounts): string {
  const source =
    report.keysFrom === 'descriptor'
      ? `checked against the keys of the relay's signed descriptor (identity ${report.identity ?? '?'})`
      : `${report.descriptorProblem ?? 'the relay cannot be reached'}: checked against the ` +
        'keys stored in the file';
  const held = report.alreadyHeld > 0 ? ` (${report.alreadyHeld} already in the wallet)` : '';
  const lines = [
    `took ${report.taken.length}${held}, refused ${report.refused.length}, for ${report.relay}; ${source}`,
    ...report.taken.map((c) => `  took     ${checkedLine(c)}`),
    ...report.refused.map((c) => `  refused  ${checkedLine(c)}`),
    `wallet ${path}: ${countsText(counts)}`,
  ];
  return `${lines.join('\n')}\n`;
}

function importCommand(): Command {
  return subcommand(
    'import',
    'take tickets from a ticket file (the miner page exports one) into the wallet',
    'Reads the file (- for standard input). Every ticket is checked before the wallet takes ' +
      "it: its format, a key the relay's signed descriptor lists for its day (the descriptor " +
      'is fetched and verified under --relay-identity, else the identity the file names; when ' +
      'the relay cannot be reached, the keys stored in the file are used, and the report says ' +
      'so), a signature that verifies, and a day still redeemable. Nothing but the descriptor ' +
      'request goes to the relay. The wallet is created if missing. Exit status: 0 when every ' +
      'ticket was taken, 1 when some were refused, 2 on a bad file or input.',
  )
    .argument('<file>', 'the ticket file, or - for standard input')
    .option(
      '-r, --relay <url>',
      'the relay to redeem them at (default: the one the file names)',
      argument(circuitUrl),
    )
    .option(
      '--relay-identity <hex>',
      "the relay's identity key: its descriptor must match",
      relayIdentity,
    )
    .option(
      '--proxy <url>',
      'fetch the descriptor through SOCKS5, e.g. Tor at socks5h://127.0.0.1:9050',
      argument(parseSocksProxy),
    )
    .action(async (source: string, flags: ImportFlags) => {
      let text: string;
      try {
        text = readTicketFile(source);
      } catch (err) {
        return fail('tickets import', err);
      }
      await withWallet(
        'import',
        flags,
        async (wallet, path) => {
          const report = await importTickets(wallet, text, {
            now: now(),
            ...(flags.relay ? { relay: flags.relay } : {}),
            ...(flags.relayIdentity ? { identity: flags.relayIdentity } : {}),
            ...(flags.proxy ? { agent: isolatedSocksAgents(flags.proxy)() } : {}),
          });
          process.stdout.write(importText(report, path, wallet.counts()));
          if (report.refused.length > 0) process.exitCode = 1;
        },
        true,
      );
    });
}

interface ExportFlags extends WalletFlags {
  relay: string;
  relayIdentity?: string;
  out?: string;
}

function exportCommand(): Command {
  return subcommand(
    'export',
    "write a relay's unspent tickets as a ticket file (the miner page imports it)",
    'The tickets stay in the wallet: whichever wallet spends one first has it, the relay ' +
      'refuses it to the other. The file holds bearer tokens (anyone holding it can spend ' +
      'them): --out writes it 0600 and never over an existing file; without --out it goes to ' +
      'standard output.',
  )
    .requiredOption(
      '-r, --relay <url>',
      'the relay whose tickets to export (ws://, wss://, http:// or https://)',
      argument(circuitUrl),
    )
    .option(
      '--relay-identity <hex>',
      "the relay's identity key, written into the file",
      relayIdentity,
    )
    .option('-o, --out <file>', 'write the file here (default: standard output)')
    .action((flags: ExportFlags) =>
      withWallet('export', flags, (wallet, path) => {
        const { text, count } = exportTickets(wallet, {
          relay: flags.relay,
          now: now(),
          ...(flags.relayIdentity ? { identity: flags.relayIdentity } : {}),
        });
        if (!flags.out) {
          process.stdout.write(text);
          process.stderr.write(`powbridge tickets export: ${count} tickets from wallet ${path}\n`);
          return;
        }
        if (existsSync(flags.out)) {
          throw new UsageError(`${flags.out} exists; refusing to overwrite it`);
        }
        writeFileSync(flags.out, text, { mode: 0o600, flag: 'wx' });
        process.stdout.write(`exported ${count} tickets from wallet ${path} to ${flags.out}\n`);
      }),
    );
}

export function ticketsCommand(): Command {
  return new Command('tickets')
    .description(`the client's ticket wallet (default ${DEFAULT_WALLET_TEXT})`)
    .addCommand(listCommand())
    .addCommand(redeemCommand())
    .addCommand(pruneCommand())
    .addCommand(importCommand())
    .addCommand(exportCommand());
}
