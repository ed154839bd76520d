import type { ShareResult } from './miner-stats.js';
import { humanRate } from './status-line.js';
import type { WalletCounts } from './wallet.js';

/**
 * What `powbridge mine` says when it is stopped (Ctrl-C, SIGTERM): the whole run in five
 * lines, so a miner learns what its time bought without reading logs.
 */

/** Rejections by reason, in the relay's words cut to their gist ("low difficulty share"). */
export class ShareTally {
  private readonly reasons = new Map<string, number>();

  add(result: ShareResult): void {
    if (result.accepted || result.stale) return;
    const reason = gist(result.reason);
    this.reasons.set(reason, (this.reasons.get(reason) ?? 0) + 1);
  }

  /** Most frequent first. */
  rejections(): [string, number][] {
    return [...this.reasons].sort((a, b) => b[1] - a[1]);
  }
}

/** The relay's reason up to its first ':' or '(' ("stale share: job from…" → "stale share"). */
function gist(reason: string | undefined): string {
  const text = (reason ?? '').split(/[:(]/, 1)[0]?.trim() ?? '';
  if (text === '') return 'no reason given';
  return text.length > 40 ? `${text.slice(0, 39)}…` : text;
}

/** Where the credit the relay reported went (tickets mode only). */
export interface CreditAccount {
  /** Paid for the tickets of this run. */
  paid: number;
  /** Left on the circuit when it stopped (the relay keeps credit per circuit). */
  unspent: number;
  /** Left on earlier circuits when they closed. */
  lost: number;
}

export interface RunSummary {
  /** What stopped the run, e.g. "Ctrl-C", "SIGTERM". */
  cause: string;
  seconds: number;
  /** Null without mining threads (a Stratum front only). */
  hashes: number | null;
  shares: { accepted: number; rejected: number; stale: number };
  rejections: readonly [string, number][];
  /** Null when donating: shares earn no credit. */
  credit: CreditAccount | null;
  tickets: number;
  /** Null when donating (no wallet). */
  wallet: { path: string; counts: WalletCounts } | null;
}

/** The summary's lines, each ending in a newline. */
export function formatSummary(s: RunSummary): string {
  const lines = [`powbridge mine: stopped (${s.cause}) after ${duration(s.seconds)}`];
  lines.push(
    s.hashes === null
      ? '  hashes:  none (no mining threads: the Stratum front only)'
      : `  hashes:  ${grouped(s.hashes)} in all, ${humanRate(s.seconds > 0 ? s.hashes / s.seconds : 0)} on average`,
  );
  lines.push(`  shares:  ${sharesText(s)}`);
  if (s.credit === null) {
    lines.push('  credit:  none (donating: shares only)');
    lines.push('  tickets: none (donating)');
  } else {
    lines.push(`  credit:  ${creditText(s.credit, s.tickets)}`);
    const where = s.wallet
      ? `, in ${s.wallet.path} (${s.wallet.counts.unspent} unspent, ${s.wallet.counts.spent} spent, ${s.wallet.counts.expired} expired)`
      : '';
    lines.push(`  tickets: ${s.tickets} earned${where}`);
  }
  return `${lines.join('\n')}\n`;
}

function sharesText(s: RunSummary): string {
  const { accepted, rejected, stale } = s.shares;
  const why = s.rejections.slice(0, 3).map(([reason, n]) => `${n} ${reason}`);
  if (s.rejections.length > 3) why.push('…');
  let text = `${accepted} accepted, ${rejected} rejected${why.length > 0 ? ` (${why.join(', ')})` : ''}`;
  if (stale > 0) text += `, ${stale} not sent (their job was replaced first)`;
  return text;
}

function creditText(c: CreditAccount, tickets: number): string {
  const earned = c.paid + c.unspent + c.lost;
  const parts = [`${fixed(c.paid)} paid for ${tickets} ticket${tickets === 1 ? '' : 's'}`];
  // Credit lives with the circuit at the relay: what was not spent is gone once it closes.
  parts.push(`${fixed(c.unspent)} unspent (gone with the circuit)`);
  if (c.lost > 0) parts.push(`${fixed(c.lost)} left on earlier circuits`);
  return `${fixed(earned)} earned: ${parts.join(', ')}`;
}

const fixed = (n: number) => n.toFixed(2);
const grouped = (n: number) => Math.round(n).toLocaleString('en-US');

/** "42.0 s", "3 min 5 s", "2 h 0 min 7 s". */
export function duration(seconds: number): string {
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const whole = Math.floor(seconds);
  const h = Math.floor(whole / 3600);
  const min = Math.floor((whole % 3600) / 60);
  const sec = whole % 60;
  return h > 0 ? `${h} h ${min} min ${sec} s` : `${min} min ${sec} s`;
}
