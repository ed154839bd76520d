import { setTimeout as sleep } from 'node:timers/promises';
import { type RedeemOutcome, redeemFromWallet } from '../client/redeem.js';
import type { Wallet } from '../client/wallet.js';
import { RpcErrorCode } from '../protocol/errors.js';

/**
 * The demo's backup relay (Protocol 2, docs/design.md §7): the config sections that make the
 * two relays peers, and the redemption of a main-relay ticket at the backup.
 */

export interface PeerPlan {
  name: string;
  url: string;
  identity: string;
}

/** The `peering` and `peers` sections that list `peer`. */
export function peeringSections(peer: PeerPlan): Record<string, unknown> {
  return {
    // Quick sync: the backup learns the main relay's ticket keys seconds after both start.
    peering: { syncIntervalSeconds: 2 },
    peers: [
      {
        name: peer.name,
        url: peer.url,
        identity: peer.identity,
        acceptTickets: true,
        acceptWhenOffline: true,
        paymentEvery: 10,
        maxUnpaid: 100,
      },
    ],
  };
}

export interface BackupRedeemOptions {
  /** The circuit URL the wallet filed the tickets under (the relay that issued them). */
  issuedBy: string;
  /** The backup relay's circuit URL. */
  backup: string;
  now: () => number;
  /** Keep trying this long while the backup does not know the issuer's keys yet. */
  patienceMs: number;
  /** Stops the retries (the call then rejects). */
  signal?: AbortSignal;
}

/**
 * Spend one of the main relay's tickets at the backup. A backup learns its peer's ticket keys
 * by syncing, so right after start it may answer "unknown key" (35); that is retried until
 * `patienceMs` runs out. The wallet records the backup's verdict as for any redemption.
 */
export async function redeemAtBackup(
  wallet: Wallet,
  options: BackupRedeemOptions,
): Promise<RedeemOutcome> {
  const deadline = Date.now() + options.patienceMs;
  for (;;) {
    const outcome = await redeemFromWallet(wallet, {
      relayUrl: options.issuedBy,
      at: options.backup,
      now: options.now,
    });
    const keyUnknownYet =
      outcome.kind === 'refused' && outcome.code === RpcErrorCode.unknownTicketKey;
    if (!keyUnknownYet || Date.now() >= deadline) return outcome;
    await sleep(1_000, undefined, { signal: options.signal });
  }
}
