import { pino, type Logger } from 'pino';

export type { Logger };

/** pino's levels, as `log.level` and every `--log-level` take them. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/**
 * The process logger. Structured JSON (pino). Callers must never log secrets (keys, RPC
 * passwords, ticket blinding factors) or client network addresses; pass such values through
 * `redact` paths if they can appear in objects.
 */
export function createLogger(
  options: { level?: string; name?: string; stderr?: boolean } = {},
): Logger {
  // Commands that print their own output on stdout (the miner's status line) log to stderr.
  const destination = pino.destination(options.stderr ? 2 : 1);
  return pino(
    {
      name: options.name ?? 'powbridge',
      level: options.level ?? process.env.POWBRIDGE_LOG_LEVEL ?? 'info',
      redact: {
        paths: [
          'password',
          '*.password',
          'rpcPassword',
          '*.rpcPassword',
          'secret',
          '*.secret',
          'secretKey',
          '*.secretKey',
        ],
        censor: '[redacted]',
      },
    },
    destination,
  );
}

/** A logger that drops everything; the default for library code used from tests. */
export const silentLogger: Logger = pino({ level: 'silent' });
