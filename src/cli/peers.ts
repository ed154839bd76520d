import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Command, type CommanderError, InvalidArgumentError, Option } from 'commander';
import { circuitUrl } from '../client/redeem.js';
import { Wallet } from '../client/wallet.js';
import { PEER_LEDGER_FILE, type PeerBalance, PeerLedger } from '../peers/peer-ledger.js';
import { newId } from '../peers/peering.js';
import { loadRelayConfig, type PeerConfig, type RelayConfig } from '../relay/config.js';
import { fail } from './output.js';

/**
 * `powbridge peers status | settle`: the operator's side of Protocol 2 (DESIGN §7). Both read
 * the relay's peer ledger directly, so they work whether the relay runs or not: the ledger is
 * SQLite in WAL mode, and the relay's sync loop picks up what `settle` writes.
 */

interface ConfigFlags {
  config: string;
}

interface StatusFlags extends ConfigFlags {
  json?: boolean;
}

type SettleMethod = (typeof SETTLE_METHODS)[number];

interface SettleFlags extends ConfigFlags {
  count?: number;
  all?: boolean;
  method: SettleMethod;
  withTickets?: string;
}

const LEDGER_FILE = PEER_LEDGER_FILE;
/**
 * Settlements an operator records by hand. A 'work' settlement (DESIGN §7: paying by
 * redirecting mining work) carries the peer's tickets, so it is not something to type in.
 */
const SETTLE_METHODS = ['operator'] as const;
const SHORT_HEX = 16;
const SHOWN_CONFLICTS = 5;
const SHOWN_REQUESTS = 5;

const now = () => Date.now() / 1000;

function exitTwoOnError(err: CommanderError): never {
  process.exit(err.exitCode === 0 ? 0 : 2);
}

function ticketCount(value: string): number {
  const n = /^-?\d{1,10}$/.test(value) ? Number(value) : NaN;
  if (!(n >= 1)) throw new InvalidArgumentError('expected a whole number of tickets, at least 1');
  return n;
}

function subcommand(name: string, summary: string, details: string): Command {
  return new Command(name)
    .summary(summary)
    .description(`${summary}\n\n${details}`)
    .requiredOption('-c, --config <file>', "the relay's config (TOML): its [[peers]] and dataDir")
    .showHelpAfterError()
    .exitOverride(exitTwoOnError);
}

function ledgerPath(config: RelayConfig): string {
  return join(config.relay.dataDir, LEDGER_FILE);
}

/**
 * Run `use` with the relay's ledger, or with null when it does not exist yet. Opening creates
 * the file (and `PeerLedger.open` would fail without the data dir), so a missing ledger is
 * never opened here: a typo in --config or an operator running this as another user must not
 * leave an empty ledger, or a file the relay cannot open, in the relay's data dir. It only
 * exists once the relay has started with peers, so missing means no peer activity yet.
 */
function withLedger<T>(path: string, use: (ledger: PeerLedger | null) => T): T {
  if (!existsSync(path)) return use(null);
  const ledger = PeerLedger.open(path);
  try {
    return use(ledger);
  } finally {
    ledger.close();
  }
}

function findPeer(config: RelayConfig, name: string, configFile: string): PeerConfig {
  const peer = config.peers.find((p) => p.name === name);
  if (peer) return peer;
  const names = config.peers.map((p) => p.name);
  throw new Error(
    names.length === 0
      ? `unknown peer "${name}": ${configFile} configures no peers ([[peers]])`
      : `unknown peer "${name}"; peers in ${configFile}: ${names.join(', ')}`,
  );
}

const NO_ACTIVITY: PeerBalance = {
  served: 0,
  unbilled: 0,
  billed: 0,
  settledToUs: 0,
  unpaidToUs: 0,
  billedToUs: 0,
  settledByUs: 0,
  weOwe: 0,
  owedSync: 0,
  pendingRequests: 0,
  pendingSettlements: 0,
  conflicts: 0,
  pulled: 0,
  acked: 0,
};

interface PeerReport {
  name: string;
  url: string;
  identity: string;
  acceptTickets: boolean;
  acceptWhenOffline: boolean;
  paymentEvery: number;
  maxUnpaid: number;
  /** Its billed tickets unpaid reached maxUnpaid: the relay answers its tickets with 36. */
  refusingTickets: boolean;
  balance: PeerBalance;
  /** PAYMENT_REQUESTs it sent us, oldest first. */
  requestsIn: {
    id: string;
    count: number;
    digest: string;
    period: { from: number; to: number };
    receivedAt: number;
  }[];
  /** Serials spent both here and there: how many, and the first few as hex prefixes. */
  conflicts: { count: number; serials: string[] };
}

function peerReport(peer: PeerConfig, ledger: PeerLedger | null): PeerReport {
  const balance = ledger?.balance(peer.name) ?? NO_ACTIVITY;
  const conflicts = ledger?.conflicts(peer.name) ?? [];
  return {
    name: peer.name,
    url: peer.url,
    identity: peer.identity,
    acceptTickets: peer.acceptTickets,
    acceptWhenOffline: peer.acceptWhenOffline,
    paymentEvery: peer.paymentEvery,
    maxUnpaid: peer.maxUnpaid,
    // The same test the relay applies before admitting one of its tickets (Peering.admit).
    refusingTickets: peer.acceptTickets && balance.unpaidToUs >= peer.maxUnpaid,
    balance,
    requestsIn: ledger?.listRequestsIn(peer.name) ?? [],
    conflicts: {
      count: conflicts.length,
      serials: conflicts
        .slice(0, SHOWN_CONFLICTS)
        .map((c) => Buffer.from(c.serial).toString('hex').slice(0, SHORT_HEX)),
    },
  };
}

const isoTime = (unix: number) =>
  new Date(unix * 1000).toISOString().replace(/:\d\d\.\d{3}Z$/, 'Z');

function counted(n: number, thing: string): string {
  return `${n} ${thing}${n === 1 ? '' : 's'}`;
}

const ticketsWord = (n: number) => counted(n, 'ticket');

function acceptText(r: PeerReport): string {
  if (!r.acceptTickets) return 'not accepted';
  return r.refusingTickets ? 'REFUSING' : 'accepted';
}

function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  return rows.map((row) =>
    row
      .map((cell, i) => cell.padEnd(widths[i]!))
      .join('  ')
      .trimEnd(),
  );
}

function statusText(
  configFile: string,
  ledger: string,
  exists: boolean,
  reports: PeerReport[],
): string {
  if (reports.length === 0) return `no peers configured in ${configFile} (add [[peers]] entries)\n`;
  const lines = [`peers of ${configFile}; ledger ${ledger}`];
  if (!exists) {
    lines.push(
      'no peer activity yet: the ledger does not exist (the relay creates it when it starts with peers)',
    );
  }
  lines.push(
    '',
    ...table([
      [
        'PEER',
        'URL',
        'IDENTITY',
        'ITS TICKETS',
        'SERVED',
        'BILLED',
        'UNBILLED',
        'UNPAID TO US',
        'WE OWE',
        'UNSYNCED',
        'PENDING',
        'CONFLICTS',
      ],
      ...reports.map((r) => {
        const b = r.balance;
        return [
          r.name,
          r.url,
          `${r.identity.slice(0, SHORT_HEX)}…`,
          acceptText(r),
          String(b.served),
          String(b.served - b.unbilled),
          String(b.unbilled),
          `${b.unpaidToUs} / ${r.maxUnpaid}`,
          String(b.weOwe),
          String(b.owedSync),
          String(b.pendingRequests + b.pendingSettlements),
          String(b.conflicts),
        ];
      }),
    ]),
  );
  const notes = reports.flatMap((r) => peerNotes(r, configFile));
  if (notes.length > 0) lines.push('', ...notes);
  return `${lines.join('\n')}\n`;
}

/** What the table cannot say: why tickets are refused, what to settle, what is in flight. */
function peerNotes(r: PeerReport, configFile: string): string[] {
  const b = r.balance;
  const notes: string[] = [];
  if (r.refusingTickets) {
    notes.push(
      `${r.name}: REFUSING its tickets: ${ticketsWord(b.unpaidToUs)} billed and unpaid ` +
        `(maxUnpaid ${r.maxUnpaid}); accepted again once it settles`,
    );
  }
  if (b.billedToUs > 0) {
    const settle =
      b.weOwe > 0
        ? `: we owe ${b.weOwe} (record a payment: powbridge peers settle ${r.name} --config ${configFile} --count <n> | --all)`
        : ': we owe nothing';
    notes.push(
      `${r.name}: billed us ${ticketsWord(b.billedToUs)}, we settled ${b.settledByUs}${settle}`,
    );
    const shown = r.requestsIn.slice(-SHOWN_REQUESTS);
    if (shown.length < r.requestsIn.length) {
      notes.push(`    … ${counted(r.requestsIn.length - shown.length, 'earlier payment request')}`);
    }
    for (const q of shown) {
      notes.push(
        `    request ${q.id}  ${ticketsWord(q.count)}  served ${isoTime(q.period.from)} .. ` +
          `${isoTime(q.period.to)}  received ${isoTime(q.receivedAt)}`,
      );
    }
  }
  if (b.owedSync > 0) {
    notes.push(
      `${r.name}: ${ticketsWord(b.owedSync)} accepted while it was unreachable, not yet synced to it`,
    );
  }
  if (b.pendingRequests + b.pendingSettlements > 0) {
    notes.push(
      `${r.name}: ${counted(b.pendingRequests, 'payment request')} and ` +
        `${counted(b.pendingSettlements, 'settlement')} not yet delivered; ` +
        'the running relay sends them on its next sync',
    );
  }
  if (r.conflicts.count > 0) {
    const more = r.conflicts.count > r.conflicts.serials.length ? ', …' : '';
    notes.push(
      `${r.name}: ${counted(r.conflicts.count, 'double spend')} (serials redeemed here and at ${r.name}): ` +
        `${r.conflicts.serials.map((s) => `${s}…`).join(', ')}${more}`,
    );
  }
  return notes;
}

function statusCommand(): Command {
  return subcommand(
    'status',
    "each peer's tickets, bills and settlements, from the relay's peer ledger",
    'For every [[peers]] entry: whether its tickets are accepted here (REFUSING once its unpaid ' +
      'billed tickets reach maxUnpaid), its tickets served here (billed and not yet billed), ' +
      'what it owes us, what we owe it with the payment requests it sent, tickets accepted ' +
      'while it was unreachable and not yet synced, messages not yet delivered, and double ' +
      'spends. Reads the ledger in <dataDir>/peers.sqlite; works while the relay runs. ' +
      "Whether a peer is reachable right now is on the relay's status page and /metrics.",
  )
    .option('--json', 'print one JSON object')
    .action((flags: StatusFlags) => {
      try {
        const config = loadRelayConfig(flags.config);
        const path = ledgerPath(config);
        const exists = existsSync(path);
        const reports = withLedger(path, (ledger) =>
          config.peers.map((peer) => peerReport(peer, ledger)),
        );
        process.stdout.write(
          flags.json
            ? `${JSON.stringify({ config: flags.config, ledger: path, activity: exists, peers: reports })}\n`
            : statusText(flags.config, path, exists, reports),
        );
      } catch (err) {
        fail('peers status', err);
      }
    });
}

function settleCommand(): Command {
  return subcommand(
    'settle',
    'record that we paid a peer for tickets of ours it served and billed us for',
    'We are the debtor: the peer served our tickets as our backup and sent PAYMENT_REQUESTs ' +
      '(see `peers status`, WE OWE). Once you have paid it as agreed with its operator, ' +
      'record how many tickets that covers; at most what we owe. The running relay delivers ' +
      'the settlement to the peer on its next sync (peering.syncIntervalSeconds), a stopped ' +
      'relay when it starts.',
  )
    .argument('<peer>', 'the peer, by its [[peers]] name')
    .addOption(
      new Option('-n, --count <n>', 'tickets the payment covers')
        .argParser(ticketCount)
        .conflicts('all'),
    )
    .addOption(new Option('--all', 'settle everything we owe the peer now'))
    .addOption(
      new Option(
        '--method <method>',
        'how we paid: operator = outside powbridge, as agreed between the operators',
      )
        .choices(SETTLE_METHODS)
        .default('operator'),
    )
    .addOption(
      new Option(
        '--with-tickets <wallet>',
        "pay by work: hand over the peer's own tickets from this wallet (earned by mining " +
          'for it: powbridge mine --relay <its circuit URL> --wallet <wallet>); it verifies and ' +
          'spends them, and only those that verify count',
      ).conflicts('method'),
    )
    .action((name: string, flags: SettleFlags) => {
      try {
        if (flags.count === undefined && !flags.all) {
          throw new Error('say how many tickets the payment covers: --count <n> or --all');
        }
        const config = loadRelayConfig(flags.config);
        const peer = findPeer(config, name, flags.config);
        const path = ledgerPath(config);
        const lines = withLedger(path, (ledger) => {
          const balance = ledger?.balance(peer.name) ?? NO_ACTIVITY;
          const owed =
            `${peer.name} billed us ${ticketsWord(balance.billedToUs)}, ` +
            `we settled ${balance.settledByUs}: we owe ${balance.weOwe}`;
          if (!ledger || balance.weOwe === 0) {
            throw new Error(
              `nothing to settle: ${ledger ? owed : `no peer activity yet (${path} does not exist)`}`,
            );
          }
          const count = flags.count ?? balance.weOwe;
          if (count > balance.weOwe) {
            throw new Error(`${owed}; refusing to record ${ticketsWord(count)}`);
          }
          // recordPaid checks what we owe again under the write lock: two settles at the
          // same moment cannot together record more than that.
          const id = newId();
          if (flags.withTickets) {
            const handed = handOverTickets(flags.withTickets, peer, count, (tickets) =>
              ledger.recordPaid(peer.name, id, tickets.length, 'work', Math.floor(now()), tickets),
            );
            return [
              `recorded settlement ${id}: ${ticketsWord(handed)} of ${peer.name}'s own handed over ` +
                '(method work); they are marked spent in the wallet',
              `the running relay delivers them to ${peer.name} on its next sync ` +
                `(every ${config.peering.syncIntervalSeconds} s); only tickets that verify there count`,
            ];
          }
          ledger.recordPaid(peer.name, id, count, flags.method, Math.floor(now()));
          return [
            `recorded settlement ${id}: paid ${peer.name} ${ticketsWord(count)} (method ${flags.method})`,
            `we now owe ${peer.name} ${balance.weOwe - count} of ${balance.billedToUs} billed`,
            `the running relay delivers it to ${peer.name} on its next sync ` +
              `(every ${config.peering.syncIntervalSeconds} s); a stopped relay when it starts`,
          ];
        });
        process.stdout.write(`${lines.join('\n')}\n`);
      } catch (err) {
        fail('peers settle', err);
      }
    });
}

/**
 * Take up to `count` unspent tickets the wallet holds for the peer's circuit, record them
 * (ledger first: if we crash before the wallet is updated, the tickets are offered twice at
 * worst, and the peer counts each serial once), then mark them spent in the wallet.
 */
function handOverTickets(
  walletFile: string,
  peer: PeerConfig,
  count: number,
  record: (tickets: string[]) => void,
): number {
  if (!existsSync(walletFile)) throw new Error(`${walletFile}: no such wallet`);
  const wallet = Wallet.open(walletFile);
  try {
    const relay = circuitUrl(peer.url);
    const available = wallet.list({ state: 'unspent', relay }).slice(0, count);
    if (available.length === 0) {
      throw new Error(
        `${walletFile} holds no unspent tickets of ${peer.name} (${relay}); earn some with: ` +
          `powbridge mine --relay ${relay} --wallet ${walletFile}`,
      );
    }
    record(available.map((t) => t.ticket));
    const at = Math.floor(now());
    for (const t of available) wallet.markSpent(t.id, at);
    return available.length;
  } finally {
    wallet.close();
  }
}

export function peersCommand(): Command {
  return new Command('peers')
    .description(
      'backup relays (Protocol 2): balances with each peer, and settling what we owe them',
    )
    .showHelpAfterError()
    .exitOverride(exitTwoOnError)
    .addCommand(statusCommand())
    .addCommand(settleCommand());
}
