import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { type TorControlConnection, TorControlError } from './control-connection.js';
import { type ControlReply, parseArguments, readQuoted } from './control-reply.js';

/**
 * Authenticating to Tor's control port (control-spec §3.5, §3.21, §3.24). PROTOCOLINFO says
 * which methods Tor accepts; we use the strongest we can: SAFECOOKIE (a challenge-response
 * that never sends the cookie, and proves Tor knows it too), then COOKIE (the cookie itself),
 * then HASHEDPASSWORD, then NULL (no authentication configured). A failed AUTHENTICATE makes
 * Tor close the connection, so there is one attempt per connection.
 *
 * The cookie and the password are read only when the method needs them and never appear in
 * an error message or a log line.
 */

export type AuthMethod = 'SAFECOOKIE' | 'COOKIE' | 'HASHEDPASSWORD' | 'NULL';
const PREFERENCE: readonly AuthMethod[] = ['SAFECOOKIE', 'COOKIE', 'HASHEDPASSWORD', 'NULL'];

export interface ProtocolInfo {
  /** Methods Tor offers, including ones this client does not know. */
  methods: ReadonlySet<string>;
  cookieFile: string | null;
  torVersion: string | null;
}

export interface TorAuthOptions {
  /** The control password (HASHEDPASSWORD), read only if that method is used. */
  password?: () => Promise<string | undefined>;
  /** Read the cookie here instead of where Tor says (Tor in a container, say). */
  cookieFile?: string;
}

const COOKIE_BYTES = 32;
const SERVER_KEY = 'Tor safe cookie authentication server-to-controller hash';
const CLIENT_KEY = 'Tor safe cookie authentication controller-to-server hash';
const MAX_PASSWORD_CHARS = 1024;

function fail(message: string): never {
  throw new TorControlError(message);
}

/** Check and read a PROTOCOLINFO reply. */
export function parseProtocolInfo(reply: ControlReply): ProtocolInfo {
  const lines = reply.lines.map((l) => l.text);
  const head = parseArguments(lines[0] ?? '');
  if (head.words[0] !== 'PROTOCOLINFO' || head.words[1] !== '1') {
    fail(`PROTOCOLINFO: unexpected reply (${JSON.stringify(lines[0] ?? '')})`);
  }
  if (lines[lines.length - 1] !== 'OK') fail('PROTOCOLINFO: reply does not end with OK');
  let methods: Set<string> | null = null;
  let cookieFile: string | null = null;
  let torVersion: string | null = null;
  for (const text of lines.slice(1, -1)) {
    // Lines start with a keyword; unknown ones are for later protocol versions (ignored).
    if (text.startsWith('AUTH ')) {
      let args;
      try {
        args = parseArguments(text.slice(5));
      } catch (err) {
        fail(`PROTOCOLINFO: bad AUTH line (${(err as Error).message})`);
      }
      const list = args.keywords.get('METHODS');
      if (list === undefined || !/^[A-Z0-9_]+(,[A-Z0-9_]+)*$/.test(list)) {
        fail('PROTOCOLINFO: AUTH line without a valid METHODS list');
      }
      methods = new Set(list.split(','));
      cookieFile = args.keywords.get('COOKIEFILE') ?? null;
    } else if (text.startsWith('VERSION ')) {
      const at = text.indexOf('Tor="');
      if (at >= 0) {
        try {
          torVersion = readQuoted(text, at + 4).value;
        } catch {
          fail('PROTOCOLINFO: bad VERSION line');
        }
      }
    }
  }
  if (methods === null) fail('PROTOCOLINFO: reply has no AUTH line');
  return { methods, cookieFile, torVersion };
}

export async function protocolInfo(control: TorControlConnection): Promise<ProtocolInfo> {
  return parseProtocolInfo(await control.command('PROTOCOLINFO 1'));
}

async function readCookie(file: string): Promise<Buffer> {
  let cookie: Buffer;
  try {
    cookie = await readFile(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'unknown error';
    const hint =
      code === 'EACCES'
        ? ": run powbridge as a user in Tor's group (Debian: debian-tor), or use password authentication"
        : code === 'ENOENT'
          ? ' (is CookieAuthentication 1 set, and is this the Tor that owns the control port?)'
          : '';
    fail(`cannot read Tor's auth cookie ${file} (${code})${hint}`);
  }
  if (cookie.length !== COOKIE_BYTES) {
    fail(`Tor's auth cookie ${file} has ${cookie.length} bytes, expected ${COOKIE_BYTES}`);
  }
  return cookie;
}

function hmac(key: string, ...parts: Buffer[]): Buffer {
  const mac = createHmac('sha256', key);
  for (const part of parts) mac.update(part);
  return mac.digest();
}

/** AUTHCHALLENGE, check Tor's proof of the cookie, then answer with ours. */
async function safeCookie(control: TorControlConnection, cookie: Buffer): Promise<void> {
  const clientNonce = randomBytes(32);
  const reply = await control.command(
    `AUTHCHALLENGE SAFECOOKIE ${clientNonce.toString('hex').toUpperCase()}`,
  );
  const args = parseArguments(reply.lines[0]?.text ?? '');
  const serverHash = args.keywords.get('SERVERHASH') ?? '';
  const serverNonce = args.keywords.get('SERVERNONCE') ?? '';
  if (
    args.words[0] !== 'AUTHCHALLENGE' ||
    !/^[0-9A-Fa-f]{64}$/.test(serverHash) ||
    !/^[0-9A-Fa-f]{64}$/.test(serverNonce)
  ) {
    fail('AUTHCHALLENGE: malformed reply from Tor');
  }
  const nonce = Buffer.from(serverNonce, 'hex');
  const expected = hmac(SERVER_KEY, cookie, clientNonce, nonce);
  if (!timingSafeEqual(expected, Buffer.from(serverHash, 'hex'))) {
    // Whoever answers does not know the cookie: another Tor's cookie file, or not Tor at all.
    fail(
      "AUTHCHALLENGE: Tor's proof does not match the cookie; the cookie file belongs to " +
        'another Tor (check --tor-control and the cookie path)',
    );
  }
  await authenticateWith(control, hmac(CLIENT_KEY, cookie, clientNonce, nonce).toString('hex'));
}

async function authenticateWith(control: TorControlConnection, token: string): Promise<void> {
  try {
    await control.command(token === '' ? 'AUTHENTICATE' : `AUTHENTICATE ${token}`);
  } catch (err) {
    if (err instanceof TorControlError && err.status !== undefined) {
      // "AUTHENTICATE: Tor answered 515 Authentication failed: …": Tor's words, no secret.
      fail(`Tor refused authentication: ${err.message.replace(/^AUTHENTICATE: /, '')}`);
    }
    throw err;
  }
}

/**
 * Authenticate on a fresh connection. Returns the method used; throws a TorControlError that
 * says what to fix when no offered method can be used or Tor refuses.
 */
export async function authenticate(
  control: TorControlConnection,
  options: TorAuthOptions = {},
): Promise<AuthMethod> {
  const info = await protocolInfo(control);
  const problems: string[] = [];
  let cookieProblem: string | null = null;
  for (const method of PREFERENCE) {
    if (!info.methods.has(method)) continue;
    if (method === 'SAFECOOKIE' || method === 'COOKIE') {
      // Both read the same file: its problem is reported once.
      if (cookieProblem !== null) continue;
      const file = options.cookieFile ?? info.cookieFile;
      let cookie: Buffer;
      try {
        cookie = file ? await readCookie(file) : fail('Tor did not say where its cookie file is');
      } catch (err) {
        cookieProblem = (err as Error).message;
        problems.push(`${method}: ${cookieProblem}`);
        continue;
      }
      if (method === 'SAFECOOKIE') await safeCookie(control, cookie);
      else await authenticateWith(control, cookie.toString('hex'));
      return method;
    }
    if (method === 'HASHEDPASSWORD') {
      const password = await options.password?.();
      if (password === undefined || password === '') {
        problems.push(
          'HASHEDPASSWORD: no password (set $POWBRIDGE_TOR_PASSWORD or --tor-password-file)',
        );
        continue;
      }
      if (password.length > MAX_PASSWORD_CHARS) fail('the Tor control password is too long');
      // Hex needs no quoting, whatever the password contains.
      await authenticateWith(control, Buffer.from(password, 'utf8').toString('hex'));
      return method;
    }
    await authenticateWith(control, '');
    return method;
  }
  const offered = [...info.methods].join(', ') || 'none';
  fail(
    `cannot authenticate to Tor's control port ${control.address} (Tor offers ${offered})` +
      (problems.length > 0 ? `:\n  ${problems.join('\n  ')}` : ''),
  );
}
