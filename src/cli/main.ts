import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { internalError } from './output.js';
import { exitCodeOf, plainUsageErrors } from './usage-error.js';

const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

/**
 * The commands, in the order `--help` lists them. Each is loaded only when needed: the
 * relay's modules take a second of CPU to load, which `powbridge hash` or a typo need not pay.
 */
const COMMANDS: readonly (readonly [string, () => Promise<Command>])[] = [
  ['relay', async () => (await import('./relay.js')).relayCommand()],
  ['mine', async () => (await import('./mine.js')).mineCommand()],
  ['hash', async () => (await import('./hash.js')).hashCommand()],
  ['keys', async () => (await import('./keys.js')).keysCommand()],
  ['tickets', async () => (await import('./tickets.js')).ticketsCommand()],
  ['peers', async () => (await import('./peers.js')).peersCommand()],
  ['terms', async () => (await import('./terms.js')).termsCommand()],
  ['demo', async () => (await import('./demo.js')).demoCommand()],
];

/** `powbridge <command> …` needs that command; --version none; anything else all of them. */
function commandsFor(argv: readonly string[]): typeof COMMANDS {
  const first = argv[2];
  if (first === '--version' || first === '-V') return [];
  const named = COMMANDS.filter(([name]) => name === first);
  return named.length > 0 ? named : COMMANDS;
}

const program = new Command('powbridge')
  .description('Proof-of-work as anonymous micropayment for a Tor relay')
  .version(pkg.version);

// Outside the try below: a module that cannot be loaded is an installation's problem, which
// bin/powbridge.js explains.
const loaded = await Promise.all(commandsFor(process.argv).map(([, load]) => load()));
for (const command of loaded) program.addCommand(command);
plainUsageErrors(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  // Commander's usage errors are already printed as one line; anything else that reached this
  // far escaped a command's own reporting (output.ts): a bug.
  if (err instanceof CommanderError) process.exitCode = exitCodeOf(err);
  else internalError(program.args[0] ?? '', err);
}
