import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { authenticate, parseProtocolInfo } from '../../src/tor/auth.js';
import { TorControlConnection } from '../../src/tor/control-connection.js';
import { FakeTorControl, type FakeTorOptions } from './fake-tor-control.js';

const dir = mkdtempSync(join(tmpdir(), 'powbridge-tor-auth-'));
const cookie = randomBytes(32);
const cookieFile = join(dir, 'control_auth_cookie');
writeFileSync(cookieFile, cookie);
const password = 'correct horse "battery" staple';

const fakes: FakeTorControl[] = [];
const controls: TorControlConnection[] = [];
afterEach(async () => {
  for (const c of controls.splice(0)) await c.close();
  for (const f of fakes.splice(0)) await f.close();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function fakeTor(options: FakeTorOptions) {
  const fake = await FakeTorControl.start({ cookie, cookieFile, ...options });
  fakes.push(fake);
  const control = await TorControlConnection.connect(fake.address);
  controls.push(control);
  return { fake, control };
}

/** The command verbs that went over the wire. */
function verbs(fake: FakeTorControl): string[] {
  return fake.received.map((line) => line.split(' ')[0] as string);
}

describe('Tor control authentication', () => {
  it('prefers SAFECOOKIE: checks Tor knows the cookie, never sends it', async () => {
    const { fake, control } = await fakeTor({ methods: ['COOKIE', 'SAFECOOKIE'] });
    expect(await authenticate(control)).toBe('SAFECOOKIE');
    expect(verbs(fake)).toEqual(['PROTOCOLINFO', 'AUTHCHALLENGE', 'AUTHENTICATE']);
    expect(fake.received.join('\n')).not.toContain(cookie.toString('hex'));
    // Authenticated: commands that need it work.
    expect((await control.command('GETINFO onions/current')).status).toBe(250);
  });

  it('uses COOKIE when SAFECOOKIE is not offered', async () => {
    const { fake, control } = await fakeTor({ methods: ['COOKIE'] });
    expect(await authenticate(control)).toBe('COOKIE');
    expect(fake.received[1]).toBe(`AUTHENTICATE ${cookie.toString('hex')}`);
  });

  it('uses HASHEDPASSWORD with the password, hex-encoded, read only then', async () => {
    let reads = 0;
    const { fake, control } = await fakeTor({ methods: ['HASHEDPASSWORD'], password });
    const method = await authenticate(control, {
      password: () => {
        reads++;
        return Promise.resolve(password);
      },
    });
    expect(method).toBe('HASHEDPASSWORD');
    expect(reads).toBe(1);
    expect(fake.received[1]).toBe(`AUTHENTICATE ${Buffer.from(password).toString('hex')}`);
  });

  it('does not read the password when a cookie method works', async () => {
    let reads = 0;
    const { control } = await fakeTor({ methods: ['SAFECOOKIE', 'HASHEDPASSWORD'] });
    await authenticate(control, {
      password: () => {
        reads++;
        return Promise.resolve(password);
      },
    });
    expect(reads).toBe(0);
  });

  it('falls back to the password when the cookie cannot be read', async () => {
    const { control } = await fakeTor({
      methods: ['COOKIE', 'SAFECOOKIE', 'HASHEDPASSWORD'],
      cookieFile: join(dir, 'missing-cookie'),
      password,
    });
    expect(await authenticate(control, { password: () => Promise.resolve(password) })).toBe(
      'HASHEDPASSWORD',
    );
  });

  it('uses NULL when Tor asks for no authentication', async () => {
    const { control } = await fakeTor({ methods: ['NULL'] });
    expect(await authenticate(control)).toBe('NULL');
  });

  it('reads the cookie from an override path when given', async () => {
    const { control } = await fakeTor({ cookieFile: '/nonexistent/cookie' });
    expect(await authenticate(control, { cookieFile })).toBe('SAFECOOKIE');
  });

  it('a missing cookie is named, with a hint, and nothing else offered is an error', async () => {
    const missing = join(dir, 'nope');
    const { control } = await fakeTor({ cookieFile: missing });
    const err = (await authenticate(control).catch((e: unknown) => e)) as Error;
    expect(err.message).toContain(`cannot read Tor's auth cookie ${missing} (ENOENT)`);
    expect(err.message).toMatch(/Tor offers COOKIE, SAFECOOKIE/);
    // Reported once, not once per cookie method.
    expect(err.message.split('cannot read').length).toBe(2);
  });

  it('a cookie of the wrong size is refused', async () => {
    const short = join(dir, 'short-cookie');
    writeFileSync(short, randomBytes(16));
    const { control } = await fakeTor({ cookieFile: short });
    await expect(authenticate(control)).rejects.toThrow(/has 16 bytes, expected 32/);
  });

  it("refuses a Tor whose SAFECOOKIE proof is wrong (another Tor's cookie)", async () => {
    const { fake, control } = await fakeTor({ cookie: randomBytes(32) });
    await expect(authenticate(control)).rejects.toThrow(/proof does not match the cookie/);
    // Our proof was never sent.
    expect(verbs(fake)).toEqual(['PROTOCOLINFO', 'AUTHCHALLENGE']);
  });

  it('a refused password is a clear error without the password', async () => {
    const { control } = await fakeTor({ methods: ['HASHEDPASSWORD'], password: 'other' });
    const err = (await authenticate(control, {
      password: () => Promise.resolve(password),
    }).catch((e: unknown) => e)) as Error;
    expect(err.message).toMatch(/^Tor refused authentication: Tor answered 515 Authentication/);
    expect(err.message).not.toContain(password);
    expect(err.message).not.toContain(Buffer.from(password).toString('hex'));
  });

  it('no password for HASHEDPASSWORD says how to give one', async () => {
    const { control } = await fakeTor({ methods: ['HASHEDPASSWORD'] });
    await expect(authenticate(control)).rejects.toThrow(
      /HASHEDPASSWORD: no password \(set \$POWBRIDGE_TOR_PASSWORD or --tor-password-file\)/,
    );
  });

  it('methods this client does not know are an error naming them', async () => {
    const { control } = await fakeTor({ methods: ['FANCY'] });
    await expect(authenticate(control)).rejects.toThrow(/\(Tor offers FANCY\)$/);
  });

  it('a malformed AUTHCHALLENGE reply is refused', async () => {
    const { control } = await fakeTor({
      script: (line) =>
        line.startsWith('AUTHCHALLENGE') ? '250 AUTHCHALLENGE SERVERHASH=zz\r\n' : undefined,
    });
    await expect(authenticate(control)).rejects.toThrow(/AUTHCHALLENGE: malformed reply/);
  });
});

describe('PROTOCOLINFO', () => {
  const reply = (...texts: string[]) => ({
    status: 250,
    async: false,
    lines: texts.map((text) => ({ status: 250, text })),
  });

  it("reads methods, the cookie path and Tor's version", () => {
    const info = parseProtocolInfo(
      reply(
        'PROTOCOLINFO 1',
        String.raw`AUTH METHODS=COOKIE,SAFECOOKIE,HASHEDPASSWORD COOKIEFILE="/run/tor/control.authcookie"`,
        'VERSION Tor="0.4.9.11"',
        'FUTURE something=new',
        'OK',
      ),
    );
    expect([...info.methods]).toEqual(['COOKIE', 'SAFECOOKIE', 'HASHEDPASSWORD']);
    expect(info.cookieFile).toBe('/run/tor/control.authcookie');
    expect(info.torVersion).toBe('0.4.9.11');
  });

  it.each([
    ['a wrong first line', ['PROTOCOLINFO 2', 'AUTH METHODS=NULL', 'OK'], /unexpected reply/],
    ['no AUTH line', ['PROTOCOLINFO 1', 'OK'], /no AUTH line/],
    ['a bad METHODS list', ['PROTOCOLINFO 1', 'AUTH METHODS=a b', 'OK'], /valid METHODS/],
    ['no final OK', ['PROTOCOLINFO 1', 'AUTH METHODS=NULL'], /does not end with OK/],
    [
      'a broken cookie path',
      ['PROTOCOLINFO 1', 'AUTH METHODS=COOKIE COOKIEFILE="/x', 'OK'],
      /bad AUTH line/,
    ],
  ])('refuses %s', (_name, texts, message) => {
    expect(() => parseProtocolInfo(reply(...texts))).toThrow(message);
  });
});
