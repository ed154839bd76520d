import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import {
  onionTarget,
  type OnionService,
  type OnionServiceOptions,
  startOnionService,
} from '../../src/tor/onion-service.js';
import { onionKeyPath } from '../../src/tor/onion-key.js';
import { parseServiceId, serviceIdOf, serviceIdOfKeyBlob } from '../../src/tor/onion-address.js';
import { FakeTorControl, type FakeTorOptions, TOR_ONION_VECTORS } from './fake-tor-control.js';

const root = mkdtempSync(join(tmpdir(), 'powbridge-onion-'));
const cookie = randomBytes(32);
const cookieFile = join(root, 'control_auth_cookie');
writeFileSync(cookieFile, cookie);
let dirs = 0;

const fakes: FakeTorControl[] = [];
const services: OnionService[] = [];
afterEach(async () => {
  for (const s of services.splice(0)) await s.close();
  for (const f of fakes.splice(0)) await f.close();
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

async function fakeTor(options: FakeTorOptions = {}): Promise<FakeTorControl> {
  const fake = await FakeTorControl.start({ cookie, cookieFile, ...options });
  fakes.push(fake);
  return fake;
}

/** Log lines of one run, to check that no secret reaches them. */
function capturedLogger() {
  const lines: string[] = [];
  const logger = pino({ level: 'trace' }, { write: (line: string) => void lines.push(line) });
  return { logger, lines };
}

function newDataDir(): string {
  return join(root, `data-${dirs++}`);
}

async function start(
  fake: FakeTorControl,
  dataDir: string,
  extra: Partial<OnionServiceOptions> = {},
): Promise<OnionService> {
  const service = await startOnionService({
    control: fake.address,
    dataDir,
    target: { host: '127.0.0.1', port: 8640 },
    virtualPort: 80,
    ...extra,
  });
  services.push(service);
  return service;
}

describe('onion service through the control port', () => {
  it('first start: a new key, saved 0600 in <dataDir>/tor, and the address Tor gave', async () => {
    const fake = await fakeTor();
    const dataDir = newDataDir();
    const { logger, lines } = capturedLogger();
    const service = await start(fake, dataDir, { logger });
    const vector = TOR_ONION_VECTORS[0];
    expect(service.serviceId).toBe(vector.serviceId);
    expect(service.hostname).toBe(`${vector.serviceId}.onion`);
    expect(service.url('ws', '/v1/circuit')).toBe(`ws://${vector.serviceId}.onion/v1/circuit`);
    expect(fake.received).toContain('ADD_ONION NEW:ED25519-V3 Port=80,127.0.0.1:8640');
    expect(fake.onions.get(vector.serviceId)).toEqual(['80,127.0.0.1:8640']);

    const keyFile = onionKeyPath(dataDir);
    expect(keyFile).toBe(join(dataDir, 'tor', 'onion_key'));
    expect(readFileSync(keyFile, 'utf8')).toBe(`${vector.privateKey}\n`);
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    expect(statSync(join(dataDir, 'tor')).mode & 0o777).toBe(0o700);

    const log = lines.join('');
    expect(log).toContain(`${vector.serviceId}.onion`);
    expect(log).not.toContain(vector.privateKey.slice(11, 40));
    expect(log).not.toContain(cookie.toString('hex'));
  });

  it('restart: the stored key gives the same address; Tor is told to discard it', async () => {
    const fake = await fakeTor();
    const dataDir = newDataDir();
    const first = await start(fake, dataDir);
    await first.close();
    const again = await start(fake, dataDir);
    expect(again.serviceId).toBe(first.serviceId);
    const vector = TOR_ONION_VECTORS[0];
    expect(fake.received).toContain(
      `ADD_ONION ${vector.privateKey} Flags=DiscardPK Port=80,127.0.0.1:8640`,
    );
    expect(readFileSync(onionKeyPath(dataDir), 'utf8')).toBe(`${vector.privateKey}\n`);
  });

  it('close() removes the service with DEL_ONION and is idempotent', async () => {
    const fake = await fakeTor();
    const service = await start(fake, newDataDir());
    expect(fake.onions.size).toBe(1);
    await service.close();
    await service.close();
    expect(fake.received.filter((l) => l.startsWith('DEL_ONION'))).toEqual([
      `DEL_ONION ${service.serviceId}`,
    ]);
    expect(fake.received.at(-1)).toBe('QUIT');
    expect(fake.onions.size).toBe(0);
  });

  it('a lost control connection is logged, and the service is published again at the same address', async () => {
    const fake = await fakeTor();
    const { logger, lines } = capturedLogger();
    const service = await start(fake, newDataDir(), {
      logger,
      retry: { minMs: 10, maxMs: 20 },
    });
    fake.dropConnections(); // Tor restarted: the service went with the connection
    const adds = () => fake.received.filter((l) => l.startsWith('ADD_ONION'));
    const deadline = Date.now() + 5_000;
    while (!(adds().length === 2 && fake.onions.has(service.serviceId)) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect([...fake.onions.keys()]).toEqual([service.serviceId]);
    expect(adds()).toHaveLength(2);
    expect(adds()[1]).toMatch(
      /^ADD_ONION ED25519-V3:\S+ Flags=DiscardPK Port=80,127\.0\.0\.1:8640$/,
    );
    const errors = lines.map((l) => JSON.parse(l) as { level: number; msg: string });
    expect(errors.filter((l) => l.level === 50).map((l) => l.msg)).toEqual([
      'lost the Tor control connection: Tor has removed the onion service; re-adding it',
    ]);
    await service.close();
    expect(fake.onions.size).toBe(0);
  });

  it('other virtual ports and IPv6 or wildcard listeners map correctly', async () => {
    const fake = await fakeTor();
    const service = await start(fake, newDataDir(), {
      target: { host: '::', port: 9000 },
      virtualPort: 8080,
    });
    expect(fake.received).toContain('ADD_ONION NEW:ED25519-V3 Port=8080,[::1]:9000');
    expect(service.url('ws', '/v1/circuit')).toBe(`ws://${service.hostname}:8080/v1/circuit`);
    expect(onionTarget({ host: '0.0.0.0', port: 1 })).toBe('127.0.0.1:1');
    expect(() => onionTarget({ host: 'a b', port: 1 })).toThrow(/not an address/);
    expect(() => onionTarget({ host: '127.0.0.1', port: 0 })).toThrow(/not a port/);
  });

  it('password authentication from a 0600 file; a looser file is refused', async () => {
    const password = 'tor-control-secret';
    const fake = await fakeTor({ methods: ['HASHEDPASSWORD'], password });
    const passwordFile = join(root, 'tor-password');
    writeFileSync(passwordFile, `${password}\n`, { mode: 0o600 });
    const { logger, lines } = capturedLogger();
    const service = await start(fake, newDataDir(), { passwordFile, logger });
    expect(service.serviceId).toMatch(/^[a-z2-7]{56}$/);
    expect(lines.join('')).not.toContain(password);

    chmodSync(passwordFile, 0o644);
    await expect(start(fake, newDataDir(), { passwordFile })).rejects.toThrow(
      /key file has mode 0644, .* chmod 600/,
    );
  });

  it('the password may be given directly (from $POWBRIDGE_TOR_PASSWORD)', async () => {
    const fake = await fakeTor({ methods: ['HASHEDPASSWORD'], password: 'from-env' });
    await expect(start(fake, newDataDir(), { password: 'from-env' })).resolves.toBeTruthy();
  });

  it('every failure names the control port and leaves no service behind', async () => {
    const fake = await fakeTor({ methods: ['HASHEDPASSWORD'], password: 'x' });
    const err = (await start(fake, newDataDir(), { password: 'wrong' }).catch(
      (e: unknown) => e,
    )) as Error;
    expect(err.message).toBe(
      `Tor control port 127.0.0.1:${fake.port}: Tor refused authentication: Tor answered ` +
        '515 Authentication failed: Password did not match HashedControlPassword *or* ' +
        'authentication cookie.',
    );
    expect(err.message).not.toContain('wrong');
  });

  it('ADD_ONION refused by Tor is an error', async () => {
    const fake = await fakeTor({
      script: (line) => (line.startsWith('ADD_ONION') ? '512 Bad arguments\r\n' : undefined),
    });
    await expect(start(fake, newDataDir())).rejects.toThrow(
      /: ADD_ONION: Tor answered 512 Bad arguments$/,
    );
  });

  it.each([
    [
      'a ServiceID with a bad checksum',
      `250-ServiceID=${TOR_ONION_VECTORS[0].serviceId.replace(/^./, 'a')}\r\n250 OK\r\n`,
      /checksum/,
    ],
    ['no ServiceID', '250 OK\r\n', /no ServiceID/],
    [
      'a key that is not the ServiceID',
      `250-ServiceID=${TOR_ONION_VECTORS[1].serviceId}\r\n` +
        `250-PrivateKey=${TOR_ONION_VECTORS[0].privateKey}\r\n250 OK\r\n`,
      /PrivateKey that is not the ServiceID/,
    ],
    [
      'a malformed key',
      `250-ServiceID=${TOR_ONION_VECTORS[0].serviceId}\r\n250-PrivateKey=RSA1024:abc\r\n250 OK\r\n`,
      /not an ED25519-V3 onion key/,
    ],
  ])('a bad ADD_ONION reply is refused: %s; nothing is saved', async (_name, text, message) => {
    const fake = await fakeTor({
      script: (line) => (line.startsWith('ADD_ONION') ? text : undefined),
    });
    const dataDir = newDataDir();
    await expect(start(fake, dataDir)).rejects.toThrow(message);
    expect(() => statSync(onionKeyPath(dataDir))).toThrow(/ENOENT/);
  });

  it('a stored key Tor publishes under another address is refused and removed', async () => {
    const fake = await fakeTor({
      script: (line) =>
        line.startsWith('ADD_ONION ED25519-V3')
          ? `250-ServiceID=${TOR_ONION_VECTORS[1].serviceId}\r\n250 OK\r\n`
          : undefined,
    });
    const dataDir = newDataDir();
    await start(fake, dataDir).then((s) => s.close());
    await expect(start(fake, dataDir)).rejects.toThrow(/but the stored key is for/);
    expect(fake.received).toContain(`DEL_ONION ${TOR_ONION_VECTORS[1].serviceId}`);
  });

  it('a damaged or world-readable key file is refused, its contents not shown', async () => {
    const fake = await fakeTor();
    const dataDir = newDataDir();
    await start(fake, dataDir).then((s) => s.close());
    const keyFile = onionKeyPath(dataDir);
    chmodSync(keyFile, 0o644);
    await expect(start(fake, dataDir)).rejects.toThrow(/mode 0644/);
    chmodSync(keyFile, 0o600);
    writeFileSync(keyFile, 'ED25519-V3:secretgarbage\n');
    const err = (await start(fake, dataDir).catch((e: unknown) => e)) as Error;
    expect(err.message).toMatch(/onion_key: not an onion key \(damaged\?\)/);
    expect(err.message).not.toContain('secretgarbage');
  });

  it('an unreachable control port is a clear error', async () => {
    const fake = await fakeTor();
    await fake.close();
    fakes.splice(0);
    await expect(start(fake, newDataDir())).rejects.toThrow(
      `cannot connect to Tor's control port 127.0.0.1:${fake.port} (ECONNREFUSED)`,
    );
  });
});

describe('v3 onion addresses', () => {
  it("derive the address of Tor's own keys", () => {
    for (const v of TOR_ONION_VECTORS) {
      expect(serviceIdOfKeyBlob(v.privateKey)).toBe(v.serviceId);
      expect(serviceIdOf(parseServiceId(v.serviceId))).toBe(v.serviceId);
    }
  });

  it('refuse bad ids: wrong length, alphabet, checksum or version', () => {
    const id = TOR_ONION_VECTORS[0].serviceId;
    expect(() => parseServiceId(id.slice(1))).toThrow(/56 characters/);
    expect(() => parseServiceId(id.toUpperCase())).toThrow(/56 characters/);
    const flipped = `${id.slice(0, 10)}${id[10] === 'a' ? 'b' : 'a'}${id.slice(11)}`;
    expect(() => parseServiceId(flipped)).toThrow(/checksum/);
    // Last character carries the version (3 → "d" with the checksum's low bits).
    expect(() => parseServiceId(`${id.slice(0, 55)}a`)).toThrow(/version 3/);
  });
});
