import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';

/**
 * The demo's one outside requirement is Litecoin Core's daemon. Looking for it on PATH first
 * turns "spawn litecoind ENOENT" halfway through the start-up into one clear sentence that
 * says how to install it, before anything has been created.
 */

export const LITECOIND = 'litecoind';

export class MissingLitecoindError extends Error {
  override name = 'MissingLitecoindError';
  constructor() {
    super(
      [
        `${LITECOIND} (Litecoin Core) is not installed or not on PATH; the demo runs two regtest nodes of it.`,
        'Install it on Debian/Ubuntu with:  sudo apt-get install litecoind',
        "or run the project's set-up script: ./scripts/setup.sh",
      ].join('\n'),
    );
  }
}

/** The absolute path of the first executable `name` on `path`, or null. */
export function findExecutable(name: string, path: string | undefined): string | null {
  for (const dir of (path ?? '').split(delimiter)) {
    if (dir === '') continue;
    const candidate = join(dir, name);
    try {
      if (!statSync(candidate).isFile()) continue;
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // Not there, or not executable: keep looking.
    }
  }
  return null;
}

/** litecoind's path from PATH; throws MissingLitecoindError when there is none. */
export function requireLitecoind(env: NodeJS.ProcessEnv = process.env): string {
  const found = findExecutable(LITECOIND, env.PATH);
  if (found === null) throw new MissingLitecoindError();
  return found;
}
