/**
 * `[storage] url`: where a relay family keeps its tickets (docs/operating.md, "Running a
 * family"). A postgres:// URL names the server, the user and the database, never the
 * password: that comes from `storage.passwordFile` or $PGPASSWORD, so the URL can be logged,
 * shown and copied between machines without handing out the database.
 */

/** The longest URL accepted. */
export const MAX_STORAGE_URL_LENGTH = 1024;

/** Why `url` is not a usable storage URL, in words that never repeat it; null when it is. */
export function storageUrlProblem(url: string): string | null {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return 'expected a URL like postgres://powbridge@db.example:5432/powbridge';
  }
  if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') {
    return 'expected a postgres:// URL (leave [storage] out for SQLite in relay.dataDir)';
  }
  if (parsed.password !== '' || parsed.searchParams.has('password')) {
    return 'must not hold a password: put it in storage.passwordFile or $PGPASSWORD';
  }
  if (parsed.hostname === '') return 'names no host: postgres://user@host:port/database';
  if (parsed.username === '') return 'names no user: postgres://user@host:port/database';
  if (parsed.pathname.length <= 1) return 'names no database: postgres://user@host:port/database';
  return null;
}

/**
 * The URL as logs and status may show it: scheme, user, host, port and database only. Anything
 * that fails to parse shows as a placeholder rather than as itself.
 */
export function describeStorageUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return 'postgres://(unparsable URL)';
  }
  const user = parsed.username === '' ? '' : `${parsed.username}@`;
  const port = parsed.port === '' ? '' : `:${parsed.port}`;
  return `${parsed.protocol}//${user}${parsed.hostname}${port}${parsed.pathname}`;
}
