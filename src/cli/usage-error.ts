import { type Command, type CommanderError, InvalidArgumentError } from 'commander';
import { EXIT } from './exit-codes.js';

/**
 * Usage errors, ours and commander's, as one line: "powbridge <cmd>: <what is wrong> (see
 * powbridge <cmd> --help)", exit code 2. The whole help after an error buries the one line
 * that matters, so it is never printed; the hint says where it is.
 */

/** A bad argument found by our own checks (after commander parsed): reported like commander's. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/**
 * A flag's value checked by `parse` as commander parses it: what `parse` throws becomes a
 * usage error naming the flag and the value.
 */
export function flagValue<T>(parse: (value: string) => T): (value: string) => T {
  return (value) => {
    try {
      return parse(value);
    } catch (err) {
      throw new InvalidArgumentError(err instanceof Error ? err.message : String(err));
    }
  };
}

/** The hint that ends every usage error. */
export function helpHint(command: string): string {
  return `(see powbridge${command ? ` ${command}` : ''} --help)`;
}

/** "powbridge keys show: <message> (see powbridge keys show --help)". */
export function usageLine(command: string, message: string): string {
  const name = command ? `powbridge ${command}` : 'powbridge';
  return `${name}: ${message} ${helpHint(command)}\n`;
}

/**
 * Commander's text without its "error: " prefix, its suggestion folded into the line:
 * "error: unknown option '--lisen'\n(Did you mean --listen?)" → "unknown option '--lisen'
 * (did you mean --listen?)".
 */
function commanderMessage(text: string): string {
  return text
    .trim()
    .replace(/^error: /, '')
    .replace(/\s*\n\(Did you mean (.*)\?\)$/s, ' (did you mean $1?)')
    .replace(/\s*\n\s*/g, ' ');
}

/**
 * Give `command` and every subcommand under it (built apart and added with addCommand, so
 * they inherit nothing) the one-line usage errors, and make commander throw its
 * CommanderError instead of exiting: `exitCodeOf` turns it into the process's exit code.
 */
export function plainUsageErrors(command: Command, path: readonly string[] = []): void {
  const name = path.join(' ');
  command
    .showHelpAfterError(false)
    .configureOutput({
      outputError: (text, write) => write(usageLine(name, commanderMessage(text))),
    })
    .exitOverride();
  for (const sub of command.commands) plainUsageErrors(sub, [...path, sub.name()]);
}

/**
 * The exit code for what commander threw: 0 after --help and --version, 2 for every usage
 * error (commander's own default is 1) and for a command group run without a subcommand,
 * whose help has then been printed on stderr.
 */
export function exitCodeOf(err: CommanderError): number {
  return err.exitCode === 0 ? EXIT.ok : EXIT.refused;
}
