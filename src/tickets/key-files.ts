import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdir, open, readFile, rename, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Secret files on disk, for the key store: a private directory (0700), private files (0600)
 * written atomically, and a lock so two processes (a running relay and `powbridge keys`)
 * never change keys at once. Error messages name files and modes, never contents: a key
 * file's text must not end up in a log or on a terminal.
 */

export class KeyFileError extends Error {
  override name = 'KeyFileError';
}

/** Largest key file we read; ours are a few hundred bytes. */
const MAX_KEY_FILE_BYTES = 16 * 1024;
const PRIVATE_BITS = 0o077;

function octal(mode: number): string {
  return `0${(mode & 0o777).toString(8)}`;
}

function errnoCode(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? 'unknown error';
}

/** Create the directory (0700) if missing; refuse an existing one that others can enter. */
export async function ensurePrivateDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await checkPrivateDir(dir);
}

/** The directory must exist, be a directory and have no group/other permissions. */
export async function checkPrivateDir(dir: string): Promise<void> {
  let info;
  try {
    info = await stat(dir);
  } catch (err) {
    throw new KeyFileError(`${dir}: cannot open key directory (${errnoCode(err)})`);
  }
  if (!info.isDirectory()) throw new KeyFileError(`${dir}: not a directory`);
  if ((info.mode & PRIVATE_BITS) !== 0) {
    throw new KeyFileError(
      `${dir}: key directory has mode ${octal(info.mode)}, open to group or others; ` +
        `fix with: chmod 700 ${dir}`,
    );
  }
}

/**
 * Read a private file. Permissions are checked on the opened descriptor (no window between
 * check and read), and before any byte is read.
 */
export async function readPrivateFile(file: string): Promise<string> {
  let handle;
  try {
    handle = await open(file, constants.O_RDONLY);
  } catch (err) {
    throw new KeyFileError(`${file}: cannot open (${errnoCode(err)})`);
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw new KeyFileError(`${file}: not a regular file`);
    if ((info.mode & PRIVATE_BITS) !== 0) {
      throw new KeyFileError(
        `${file}: key file has mode ${octal(info.mode)}, readable or writable by group or ` +
          `others; fix with: chmod 600 ${file}`,
      );
    }
    if (info.size > MAX_KEY_FILE_BYTES) throw new KeyFileError(`${file}: too large for a key file`);
    return await handle.readFile('utf8');
  } finally {
    await handle.close();
  }
}

/** fsync a directory so a rename or unlink in it survives a crash. */
async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, constants.O_RDONLY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Write `text` to `dir/name` atomically: a temporary file (0600 from creation) is written and
 * fsynced, then renamed over the target, then the directory is fsynced. A crash leaves either
 * the old file or the new one, never a torn key.
 */
export async function writePrivateFile(dir: string, name: string, text: string): Promise<void> {
  const temp = join(dir, `.${name}.${randomBytes(6).toString('hex')}.tmp`);
  const handle = await open(temp, 'wx', 0o600);
  try {
    try {
      // The umask can only remove bits, but be explicit: a key file is 0600, whatever umask.
      await handle.chmod(0o600);
      await handle.writeFile(text, 'utf8');
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, join(dir, name));
  } catch (err) {
    await unlink(temp).catch(() => undefined);
    throw err;
  }
  await syncDir(dir);
}

export async function removeFile(dir: string, name: string): Promise<void> {
  await unlink(join(dir, name));
  await syncDir(dir);
}

const LOCK_NAME = '.lock';

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists but belongs to someone else.
    return errnoCode(err) === 'EPERM';
  }
}

async function takeLock(lock: string): Promise<boolean> {
  try {
    const handle = await open(lock, 'wx', 0o600);
    await handle.writeFile(String(process.pid));
    await handle.close();
    return true;
  } catch (err) {
    if (errnoCode(err) === 'EEXIST') return false;
    throw new KeyFileError(`${lock}: cannot create lock (${errnoCode(err)})`);
  }
}

/**
 * Run `fn` holding `dir/.lock`. A lock left by a process that no longer exists is taken
 * over; one held by a live process is an error (keys are changed rarely, waiting is not
 * worth the complexity).
 */
export async function withLock<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  const lock = join(dir, LOCK_NAME);
  if (!(await takeLock(lock))) {
    const holder = Number((await readFile(lock, 'utf8').catch(() => '')).trim());
    // No pid yet: its holder may be between creating and writing it. Only a lock whose
    // process is known to be gone is taken over.
    if (!Number.isInteger(holder) || holder <= 0 || processAlive(holder)) {
      throw new KeyFileError(
        `${dir}: keys are being changed by ${holder > 0 ? `process ${holder}` : 'another process'}` +
          `; try again (if no powbridge process is changing them, remove ${lock})`,
      );
    }
    await unlink(lock).catch(() => undefined);
    if (!(await takeLock(lock))) {
      throw new KeyFileError(`${dir}: keys are being changed by another process; try again`);
    }
  }
  try {
    return await fn();
  } finally {
    await unlink(lock).catch(() => undefined);
  }
}
