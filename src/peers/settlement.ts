import type { PeerConfig } from './peer-config.js';
import type { PeerLedger } from '../storage/peer-ledger.js';
import { NO_ACTIVITY } from './peer-report.js';
import { newId } from './ticket-gate.js';

/**
 * The debtor's side of a settlement (docs/design.md §7): the peer served our tickets and
 * billed us; we record that we paid it, at most what we owe. The running relay delivers the
 * record on its next sync. Paying by work hands over the peer's own tickets, which it
 * verifies and spends; only those count.
 */

export type SettlementPayment =
  /** Paid outside powbridge, as agreed between the operators. */
  | { method: 'operator' }
  /**
   * Paid with the peer's own tickets: `handOver` takes up to `count` of them, passes them to
   * `record` (the ledger write), then marks them spent where they were kept; returns how many.
   */
  | {
      method: 'work';
      handOver: (count: number, record: (tickets: string[]) => Promise<void>) => Promise<number>;
    };

export interface SettlementRecorded {
  id: string;
  method: 'operator' | 'work';
  /** Tickets the settlement covers. */
  count: number;
  /** What we owed and had been billed before this settlement. */
  weOwed: number;
  billedToUs: number;
}

/**
 * Record a settlement of `count` tickets (undefined: everything we owe). Throws, recording
 * nothing, when we owe nothing or less than `count`.
 */
export async function recordSettlement(
  /** The peer ledger, null when it does not exist yet at `path` (its file, or the database). */
  { ledger, path }: { ledger: PeerLedger | null; path: string },
  peer: Pick<PeerConfig, 'name'>,
  count: number | undefined,
  payment: SettlementPayment,
  nowSeconds: number,
): Promise<SettlementRecorded> {
  const balance = (await ledger?.balance(peer.name)) ?? NO_ACTIVITY;
  const owed =
    `${peer.name} billed us ${ticketsWord(balance.billedToUs)}, ` +
    `we settled ${balance.settledByUs}: we owe ${balance.weOwe}`;
  if (!ledger) throw new Error(`nothing to settle: no peer activity yet (${path} does not exist)`);
  if (balance.weOwe === 0) throw new Error(`nothing to settle: ${owed}`);
  const covered = count ?? balance.weOwe;
  if (covered > balance.weOwe) {
    throw new Error(`${owed}; refusing to record ${ticketsWord(covered)}`);
  }
  // recordPaid checks what we owe again under the write lock: two settles at the same moment
  // cannot together record more than that.
  const id = newId();
  const at = Math.floor(nowSeconds);
  let recorded = covered;
  if (payment.method === 'work') {
    recorded = await payment.handOver(covered, (tickets) =>
      ledger.recordPaid(peer.name, id, tickets.length, 'work', at, tickets),
    );
  } else {
    await ledger.recordPaid(peer.name, id, covered, 'operator', at);
  }
  return {
    id,
    method: payment.method,
    count: recorded,
    weOwed: balance.weOwe,
    billedToUs: balance.billedToUs,
  };
}

export function ticketsWord(n: number): string {
  return `${n} ticket${n === 1 ? '' : 's'}`;
}
