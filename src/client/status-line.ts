import type { MineStatus } from './mine-app.js';

/** One line for humans: hash rate, shares, credit, tickets. */
export function formatStatus(status: MineStatus): string {
  const m = status.miner;
  const rate = m ? humanRate(m.hashrate) : 'front only';
  const shares = m ? `shares ${m.accepted} ok / ${m.rejected} rejected` : '';
  const parts = [
    status.state === 'live' ? 'mining' : status.state,
    rate,
    shares,
    `credit ${status.credit.toFixed(2)}`,
    `tickets ${status.tickets}`,
  ].filter((p) => p !== '');
  if (status.ticketError) parts.push(`(ticket: ${status.ticketError.slice(0, 60)})`);
  return parts.join(' | ');
}

function humanRate(hps: number): string {
  if (hps >= 1e6) return `${(hps / 1e6).toFixed(2)} MH/s`;
  if (hps >= 1e3) return `${(hps / 1e3).toFixed(2)} kH/s`;
  return `${hps.toFixed(0)} H/s`;
}
