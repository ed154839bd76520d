import { Command, InvalidArgumentError, Option } from 'commander';
import { handOverWalletTickets } from '../client/settlement-tickets.js';
import { findPeer, type PeerReport, peerReport, withPeerLedger } from '../peers/peer-report.js';
import { recordSettlement, ticketsWord } from '../peers/settlement.js';
import { loadRelayConfig } from '../relay/config.js';
import { peerLedgerPlace } from '../relay/ticket-storage.js';
import { fail } from './output.js';
import { UsageError } from './usage-error.js';

/**
 * `powbridge peers status | settle`: the operator's side of Protocol 2 (docs/design.md §7),
 * arguments and printing only; src/peers reads the ledger (peer-report.ts) and records
 * settlements (settlement.ts), whether the relay runs or not.
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

/**
 * Settlements an operator records by hand. A 'work' settlement (docs/design.md §7: paying by
 * redirecting mining work) carries the peer's tickets, so it is not something to type in.
 */
const SETTLE_METHODS = ['operator'] as const;
const SHORT_HEX = 16;
const SHOWN_REQUESTS = 5;

const now = () => Date.now() / 1000;

function ticketCount(value: string): number {
  const n = /^-?\d{1,10}$/.test(value) ? Number(value) : NaN;
  if (!(n >= 1)) throw new InvalidArgumentError('expected a whole number of tickets, at least 1');
  return n;
}

function subcommand(name: string, summary: string, details: string): Command {
  return new Command(name)
    .summary(summary)
    .description(`${summary}\n\n${details}`)
    .requiredOption('-c, --config <file>', "the relay's config (TOML): its [[peers]] and dataDir");
}

const isoTime = (unix: number) =>
  new Date(unix * 1000).toISOString().replace(/:\d\d\.\d{3}Z$/, 'Z');

function counted(n: number, thing: string): string {
  return `${n} ${thing}${n === 1 ? '' : 's'}`;
}

function acceptText(r: PeerReport): string {
  if (!r.acceptTickets) return 'not accepted';
  return r.refusingTickets ? 'REFUSING' : 'accepted';
}

/** Rows as left-aligned columns two spaces apart. */
function table(rows: string[][]): string[] {
  const widths: number[] = [];
  for (const row of rows) {
    row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  }
  return rows.map((row) =>
    row
      .map((cell, i) => cell.padEnd(widths[i] ?? 0))
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
          String(b.billed),
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
        `${r.conflicts.serials.map((s) => `${s}…`).join(', ')}${more}; neither side pays for them`,
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
      "spends. Reads the ledger in <dataDir>/peers.sqlite, or in the family's database when " +
      'the config has storage.url; works while the relay runs. ' +
      "Whether a peer is reachable right now is on the relay's status page and /metrics.",
  )
    .option('--json', 'print one JSON object')
    .action(async (flags: StatusFlags) => {
      try {
        const config = loadRelayConfig(flags.config);
        const place = peerLedgerPlace(config);
        const reports = await withPeerLedger(place.open, async (ledger) => {
          const all: PeerReport[] = [];
          for (const peer of config.peers) all.push(await peerReport(peer, ledger));
          return all;
        });
        const { where, exists } = place;
        process.stdout.write(
          flags.json
            ? `${JSON.stringify({ config: flags.config, ledger: where, activity: exists, peers: reports })}\n`
            : statusText(flags.config, where, exists, reports),
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
    .action(async (name: string, flags: SettleFlags) => {
      try {
        if (flags.count === undefined && !flags.all) {
          throw new UsageError('say how many tickets the payment covers: --count <n> or --all');
        }
        const config = loadRelayConfig(flags.config);
        const peer = findPeer(config.peers, name, flags.config);
        const place = peerLedgerPlace(config);
        const walletFile = flags.withTickets;
        const done = await withPeerLedger(place.open, (ledger) =>
          recordSettlement(
            { ledger, path: place.where },
            peer,
            flags.count,
            walletFile
              ? {
                  method: 'work',
                  handOver: (count, record) =>
                    handOverWalletTickets(walletFile, peer, count, record, now()),
                }
              : { method: flags.method },
            now(),
          ),
        );
        const nextSync = `on its next sync (every ${config.peering.syncIntervalSeconds} s)`;
        const lines =
          done.method === 'work'
            ? [
                `recorded settlement ${done.id}: ${ticketsWord(done.count)} of ${peer.name}'s own ` +
                  'handed over (method work); they are marked spent in the wallet',
                `the running relay delivers them to ${peer.name} ${nextSync}; ` +
                  'only tickets that verify there count',
              ]
            : [
                `recorded settlement ${done.id}: paid ${peer.name} ${ticketsWord(done.count)} ` +
                  `(method ${done.method})`,
                `we now owe ${peer.name} ${done.weOwed - done.count} of ${done.billedToUs} billed`,
                `the running relay delivers it to ${peer.name} ${nextSync}; ` +
                  'a stopped relay when it starts',
              ];
        process.stdout.write(`${lines.join('\n')}\n`);
      } catch (err) {
        fail('peers settle', err);
      }
    });
}

export function peersCommand(): Command {
  return new Command('peers')
    .description(
      'backup relays (Protocol 2): balances with each peer, and settling what we owe them',
    )
    .addCommand(statusCommand())
    .addCommand(settleCommand());
}
