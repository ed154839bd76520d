import type { CircuitLink } from './circuit-source.js';
import type { MineStatus } from './mine-app.js';

/**
 * One line for humans: what the miner is doing (the circuit's true state), hash rate, shares,
 * credit, tickets. `nowMs` (Date.now clock) turns a retry time into "in 5 s".
 */
export function formatStatus(status: MineStatus, nowMs: number = Date.now()): string {
  const m = status.miner;
  const rate = m ? humanRate(m.hashrate) : 'front only';
  const shares = m ? `shares ${m.accepted} ok / ${m.rejected} rejected` : '';
  const parts = [
    describeLink(status.link, nowMs),
    rate,
    shares,
    `credit ${status.credit.toFixed(2)}`,
    `tickets ${status.tickets}`,
  ].filter((p) => p !== '');
  if (status.ticketError) parts.push(`(ticket: ${status.ticketError.slice(0, 60)})`);
  return parts.join(' | ');
}

/** The circuit's state in words: "mining", "paused: relay has no upstream", ... */
export function describeLink(link: CircuitLink, nowMs: number): string {
  switch (link.state) {
    case 'connecting':
      return 'connecting';
    case 'checking':
      return "connected, checking the relay's descriptor";
    case 'waiting':
      return 'connected, waiting for work';
    case 'live':
      return 'mining';
    case 'no-upstream':
      return 'paused: relay has no upstream';
    case 'retrying': {
      const seconds = Math.max(0, Math.ceil((link.retryAt - nowMs) / 1000));
      return link.refused
        ? `paused: ${link.reason}; next try in ${seconds} s`
        : `reconnecting in ${seconds} s (${link.reason})`;
    }
    case 'stopped':
      return link.reason ? `stopped: ${link.reason}` : 'stopped';
  }
}

/** "350 H/s", "1.25 kH/s", "2.00 MH/s". */
export function humanRate(hps: number): string {
  if (hps >= 1e6) return `${(hps / 1e6).toFixed(2)} MH/s`;
  if (hps >= 1e3) return `${(hps / 1e3).toFixed(2)} kH/s`;
  return `${hps.toFixed(0)} H/s`;
}
