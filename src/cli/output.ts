import { EXIT } from './exit-codes.js';
import { UsageError, usageLine } from './usage-error.js';

/**
 * Report why a command failed, without a stack trace: one line "powbridge <cmd>: <message>"
 * (a config error goes on with one line per problem), exit code 2. A bad argument found by our
 * own checks (UsageError) gets the `--help` hint like commander's; a bug gets its stack.
 */
export function fail(command: string, err: unknown): void {
  if (isInternal(err)) return internalError(command, err);
  const message = err instanceof Error ? err.message : String(err);
  process.stderr.write(
    err instanceof UsageError ? usageLine(command, message) : `powbridge ${command}: ${message}\n`,
  );
  process.exitCode = EXIT.refused;
}

/**
 * A bug, not a mistake of the user's: the stack is what a report needs, so it is printed, with
 * the versions and what to do with it. Exit code 70.
 */
export function internalError(command: string, err: unknown): void {
  const detail = err instanceof Error ? (err.stack ?? `${err.name}: ${err.message}`) : String(err);
  const name = command ? `powbridge ${command}` : 'powbridge';
  process.stderr.write(
    `${name}: internal error (a bug in powbridge, not something you did wrong):\n${detail}\n` +
      `please report it with these lines, the command you ran and \`powbridge --version\` (Node ${process.version})\n`,
  );
  process.exitCode = EXIT.internal;
}

/**
 * Errors only a bug makes: a name that does not exist, a property of undefined, a call of
 * something that is not a function (V8's TypeErrors carry no code, Node's own argument checks
 * do), a failed assertion. Everything else thrown on a command's path is a message for the user.
 */
function isInternal(err: unknown): boolean {
  if (err instanceof ReferenceError) return true;
  const code = err instanceof Error ? (err as NodeJS.ErrnoException).code : undefined;
  if (code === 'ERR_ASSERTION') return true;
  return err instanceof TypeError && code === undefined && err.cause === undefined;
}
