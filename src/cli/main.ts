import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { demoCommand } from './demo.js';
import { hashCommand } from './hash.js';
import { keysCommand } from './keys.js';
import { mineCommand } from './mine.js';
import { peersCommand } from './peers.js';
import { relayCommand } from './relay.js';
import { ticketsCommand } from './tickets.js';

const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

const program = new Command('powbridge')
  .description('Proof-of-work as anonymous micropayment for a Tor relay')
  .version(pkg.version)
  .showHelpAfterError()
  .addCommand(relayCommand())
  .addCommand(mineCommand())
  .addCommand(hashCommand())
  .addCommand(keysCommand())
  .addCommand(ticketsCommand())
  .addCommand(peersCommand())
  .addCommand(demoCommand());

await program.parseAsync(process.argv);
