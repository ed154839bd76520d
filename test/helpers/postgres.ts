import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chownSync,
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { parseIntoClientConfig } from 'pg-connection-string';
import { afterAll, beforeAll } from 'vitest';
import { freePort } from './litecoind.js';

/**
 * A real PostgreSQL server for tests, from Debian's `postgresql` package: `initdb` and
 * `postgres` in a temporary directory, listening on a loopback port, run as an unprivileged
 * user (initdb refuses root: as root the directory is handed to `nobody` and both run under
 * `setpriv`). One server per test file; `createDatabase` gives each test or suite a database
 * of its own. The server keeps `fsync` on: the durability tests depend on it.
 *
 * TCP connections need the password (scram-sha-256), so the password file and $PGPASSWORD are
 * tested for real. `stop` removes everything; so does a run that ends early: an 'exit' hook
 * stops the server, and a janitor shell holding a pipe from this process stops it and removes
 * the directory when the pipe closes, which it does however this process ends (SIGKILL too).
 */

const exec = promisify(execFile);
const USER = 'powbridge';
/** A hang limit for start-up on a loaded machine, not a speed check. */
const START_LIMIT_MS = 60_000;

export interface TestPostgres {
  /** The superuser every URL names. */
  readonly user: string;
  readonly password: string;
  /** The password in a 0600 file (storage.passwordFile). */
  readonly passwordFile: string;
  readonly port: number;
  /** postgres://powbridge@127.0.0.1:<port>/<database>, without the password. */
  url(database: string): string;
  /** A new, empty database; resolves its URL. */
  createDatabase(name?: string): Promise<string>;
  /**
   * Stop the server and start it again on the same data and port: 'immediate' is a crash
   * (no checkpoint: what was committed comes back from the WAL), 'fast' a clean stop.
   */
  restart(how: 'immediate' | 'fast'): Promise<void>;
  /** Stop the server, keeping its data (see restart); `up` starts it again. */
  down(how: 'immediate' | 'fast'): Promise<void>;
  up(): Promise<void>;
  /** Stop the server and remove its directory. */
  stop(): Promise<void>;
}

/** Where Debian keeps the server's programs (/usr/lib/postgresql/<version>/bin), else PATH. */
export function postgresBinDir(): string | null {
  const base = '/usr/lib/postgresql';
  const versions = existsSync(base)
    ? readdirSync(base)
        .filter((v) => existsSync(join(base, v, 'bin', 'initdb')))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  if (versions[0] !== undefined) return join(base, versions[0], 'bin');
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir && existsSync(join(dir, 'initdb')) && existsSync(join(dir, 'postgres'))) return dir;
  }
  return null;
}

/** uid and gid of `nobody`, who runs the server when we are root. */
function nobody(): { uid: number; gid: number } {
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('nobody:'));
  const [, , uid, gid] = line?.split(':') ?? [];
  if (uid === undefined || gid === undefined) throw new Error('no user nobody in /etc/passwd');
  return { uid: Number(uid), gid: Number(gid) };
}

const runningServers = new Set<() => void>();
let exitHookInstalled = false;

/** The 'exit' hook: an immediate shutdown of every server still up (the janitors clean up). */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const kill of runningServers) kill();
  });
}

/** Stops the server if this process goes away, then removes `root` (see the file comment). */
const JANITOR = `
read -r _
pid=$(head -n 1 "$1/data/postmaster.pid" 2>/dev/null)
if [ -n "$pid" ]; then
  kill -QUIT "$pid" 2>/dev/null
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
fi
rm -rf "$1"
`;

export async function startPostgres(): Promise<TestPostgres> {
  const bin = postgresBinDir();
  if (bin === null) {
    throw new Error('PostgreSQL not found: install Debian\'s "postgresql" (scripts/setup.sh)');
  }
  const asRoot = process.getuid?.() === 0;
  const owner = asRoot ? nobody() : null;
  // setpriv runs the server's programs as nobody; the directory must be theirs.
  const as = (program: string): string[] =>
    owner
      ? ['setpriv', `--reuid=${owner.uid}`, `--regid=${owner.gid}`, '--clear-groups', '--', program]
      : [program];
  const root = mkdtempSync(join(tmpdir(), 'powbridge-pg-'));
  const janitor = spawn('sh', ['-c', JANITOR, 'janitor', root], {
    stdio: ['pipe', 'ignore', 'ignore'],
  });
  // Neither the janitor nor its pipe keeps this process alive.
  janitor.unref();
  janitor.stdin?.on('error', () => {});
  if (janitor.stdin instanceof Socket) janitor.stdin.unref();
  const data = join(root, 'data');
  const password = randomBytes(18).toString('base64url');
  const passwordFile = join(root, 'password');
  writeFileSync(passwordFile, `${password}\n`, { mode: 0o600 });
  if (owner) {
    chownSync(root, owner.uid, owner.gid);
    chownSync(passwordFile, owner.uid, owner.gid);
  }
  const cleanUp = () => {
    janitor.stdin?.end();
    rmSync(root, { recursive: true, force: true });
  };
  try {
    const [initdb, ...initArgs] = as(join(bin, 'initdb'));
    await exec(
      initdb as string,
      [
        ...initArgs,
        '-D',
        data,
        '-U',
        USER,
        `--pwfile=${passwordFile}`,
        '--auth-local=trust',
        '--auth-host=scram-sha-256',
        '--encoding=UTF8',
        '--locale=C',
        // Skips only initdb's own final sync of the fresh cluster; the server runs fsync = on.
        '--no-sync',
        '--no-instructions',
      ],
      { cwd: root },
    );
  } catch (err) {
    cleanUp();
    throw err;
  }
  const port = await freePort();
  const url = (database: string) => `postgres://${USER}@127.0.0.1:${port}/${database}`;
  const logFile = join(root, 'postgres.log');

  let server: ChildProcess | null = null;
  const killNow = () => {
    if (server?.pid !== undefined && server.exitCode === null) server.kill('SIGQUIT');
  };
  const launch = async (): Promise<void> => {
    const log = openSync(logFile, 'a');
    const [program, ...args] = as(join(bin, 'postgres'));
    const child = spawn(
      program as string,
      [...args, '-D', data, '-p', String(port), '-c', 'listen_addresses=127.0.0.1', '-k', root],
      { cwd: root, stdio: ['ignore', log, log] },
    );
    closeSync(log);
    server = child;
    runningServers.add(killNow);
    const exited = new Promise<never>((_, reject) =>
      child.once('exit', (code, signal) =>
        reject(
          new Error(
            `postgres exited during start-up (${signal ?? code}): ${readFileSync(logFile, 'utf8')}`,
          ),
        ),
      ),
    );
    exited.catch(() => {});
    await Promise.race([exited, ready(url('postgres'), password)]);
  };
  const halt = async (signal: 'SIGQUIT' | 'SIGINT'): Promise<void> => {
    const child = server;
    server = null;
    runningServers.delete(killNow);
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise((resolve) => child.once('exit', resolve));
    child.kill(signal);
    await gone;
  };

  installExitHook();
  try {
    await launch();
  } catch (err) {
    await halt('SIGQUIT');
    cleanUp();
    throw err;
  }
  let databases = 0;
  return {
    user: USER,
    password,
    passwordFile,
    port,
    url,
    async createDatabase(name = `test_${++databases}`) {
      const client = new pg.Client({ ...parseIntoClientConfig(url('postgres')), password });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
      } finally {
        await client.end();
      }
      return url(name);
    },
    async restart(how) {
      await halt(how === 'immediate' ? 'SIGQUIT' : 'SIGINT');
      await launch();
    },
    down: (how) => halt(how === 'immediate' ? 'SIGQUIT' : 'SIGINT'),
    up: () => launch(),
    async stop() {
      // Immediate: a clean shutdown's checkpoint is wasted on data about to be removed.
      await halt('SIGQUIT');
      cleanUp();
    },
  };
}

/** Resolves once the server accepts a login over TCP (it refuses, then "starting up", first). */
async function ready(url: string, password: string): Promise<void> {
  const deadline = Date.now() + START_LIMIT_MS;
  for (;;) {
    const client = new pg.Client({ ...parseIntoClientConfig(url), password });
    client.on('error', () => {});
    try {
      await client.connect();
      await client.end();
      return;
    } catch (err) {
      await client.end().catch(() => undefined);
      if (Date.now() > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

/**
 * One test server for the calling test file: started before its tests, stopped after them.
 * The returned getter gives the server inside a test (it throws if the start failed).
 */
export function usePostgres(): () => TestPostgres {
  let server: TestPostgres | undefined;
  beforeAll(async () => {
    server = await startPostgres();
  });
  afterAll(async () => {
    await server?.stop();
  });
  return () => {
    if (!server) throw new Error('PostgreSQL did not start');
    return server;
  };
}
