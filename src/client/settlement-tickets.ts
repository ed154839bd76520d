import { existsSync } from 'node:fs';
import { circuitUrl } from './redeem.js';
import { Wallet } from './wallet.js';

/**
 * Tickets a wallet holds for a peer relay, handed over to pay it by work (docs/design.md §7):
 * up to `count` unspent tickets for the peer's circuit are passed to `record` (the ledger
 * first: if we crash before the wallet is updated, the tickets are offered twice at worst, and
 * the peer counts each serial once), then marked spent in the wallet. Returns how many.
 */
export async function handOverWalletTickets(
  walletFile: string,
  peer: { name: string; url: string },
  count: number,
  record: (tickets: string[]) => Promise<void>,
  nowSeconds: number,
): Promise<number> {
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
    await record(available.map((t) => t.ticket));
    const at = Math.floor(nowSeconds);
    for (const t of available) wallet.markSpent(t.id, at);
    return available.length;
  } finally {
    wallet.close();
  }
}
