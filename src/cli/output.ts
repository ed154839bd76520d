/** Report a user-facing error for a command and set a failing exit code (no stack trace). */
export function fail(command: string, err: unknown): void {
  // Multi-line messages (config errors list every bad key) stay readable.
  const message = err instanceof Error ? err.message : String(err);
  process.stderr.write(`powbridge ${command}: ${message}\n`);
  process.exitCode = 2;
}
