import { Wallet } from '../../src/client/wallet.js';
import { fakeIssued } from './fake-ticket.js';

/**
 * A stand-in for the miner, run as a child process by the wallet durability test: it stores
 * tickets as fast as it can and acknowledges each ("stored <id>") only after `add` returned,
 * as the miner must. The test SIGKILLs it at random moments and then looks for every id.
 */
const [file, relay = 'ws://relay.test/v1/circuit'] = process.argv.slice(2);
if (!file) throw new Error('usage: wallet-writer.ts <wallet file> [relay]');

const wallet = Wallet.open(file);
const day = Math.floor(Date.now() / 86_400_000);
for (;;) {
  const stored = wallet.add(relay, fakeIssued(day), Date.now() / 1000);
  // Writes to a pipe are synchronous on Linux: the line is out when write returns.
  process.stdout.write(`stored ${stored.id}\n`);
}
