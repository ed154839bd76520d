import { chmod, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AO_SCHEME, RSA_SCHEME } from '../../src/protocol/messages.js';
import { KeyStore } from '../../src/tickets/key-store.js';
import { runCli } from '../helpers/cli.js';
import { fixtureRsaKeys } from '../helpers/rsa-keys.js';

let root: string;
let dataDir: string;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'powbridge-cli-keys-'));
  dataDir = join(root, 'data');
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

const mode = async (path: string) => (await stat(path)).mode & 0o777;

/** The secret hex of every key file (AO scalars, RSA primes), to grep outputs for. */
async function secrets(): Promise<string[]> {
  const dir = join(dataDir, 'keys');
  const names = (await readdir(dir)).filter((n) => n.endsWith('.json'));
  const files = await Promise.all(
    names.map(
      async (n) => JSON.parse(await readFile(join(dir, n), 'utf8')) as Record<string, string>,
    ),
  );
  return files.flatMap((f) => [f.secretKey, f.p, f.q].filter((v) => v !== undefined));
}

async function expectNoSecret(...outputs: string[]): Promise<void> {
  const all = await secrets();
  expect(all.length).toBeGreaterThan(0);
  for (const secret of all) for (const out of outputs) expect(out).not.toContain(secret);
}

interface ShownKeys {
  identity: { algorithm: string; publicKey: string };
  ticketKeys: {
    keyId: string;
    scheme: string;
    publicKey: string;
    notBeforeDay: number;
    notAfterDay: number;
    status: string;
  }[];
}

describe('powbridge keys', () => {
  it('generate creates private keys and prints public parts only; refuses to run twice', async () => {
    const result = await runCli(['keys', 'generate', '--data-dir', dataDir, '--scheme', 'ao']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^created keys in .*keys\nidentity +[0-9a-f]{64} \(ed25519\)/);
    expect(result.stdout).toMatch(
      /ticket key +[0-9a-f]{16} +issues \d{4}-\d\d-\d\d \.\. .* \(UTC\), scheme ao\n/,
    );
    expect(await mode(join(dataDir, 'keys'))).toBe(0o700);
    for (const name of await readdir(join(dataDir, 'keys'))) {
      expect(await mode(join(dataDir, 'keys', name))).toBe(0o600);
    }
    await expectNoSecret(result.stdout);

    const again = await runCli(['keys', 'generate', '--data-dir', dataDir]);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/keys already exist; refusing to overwrite them/);
    expect(again.stdout).toBe('');
  });

  it('show prints identity, key ids, public keys and validity, as text or JSON', async () => {
    await runCli(['keys', 'generate', '-d', dataDir, '--lifetime-days', '10', '--scheme', 'ao']);
    const json = await runCli(['keys', 'show', '-d', dataDir, '--json']);
    expect(json.code).toBe(0);
    const shown = JSON.parse(json.stdout) as ShownKeys;
    expect(shown.identity.algorithm).toBe('ed25519');
    expect(shown.ticketKeys).toHaveLength(1);
    const [key] = shown.ticketKeys;
    expect(key!.notAfterDay - key!.notBeforeDay).toBe(9);
    expect(key!.status).toBe('issuing');
    expect(key!.scheme).toBe(AO_SCHEME);

    const text = await runCli(['keys', 'show', '-d', dataDir]);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain(`identity  ${shown.identity.publicKey} (ed25519)`);
    expect(text.stdout).toContain(`  ${key!.keyId}  ao   `);
    expect(text.stdout).toContain(`\n    public key ${key!.publicKey}\n`);
    expect(text.stdout).toContain('issuing today');
    await expectNoSecret(json.stdout, text.stdout, json.stderr, text.stderr);
  });

  it('rotate adds a key from tomorrow and keeps the old one; a second rotation waits', async () => {
    await runCli(['keys', 'generate', '-d', dataDir, '--scheme', 'ao']);
    const rotated = await runCli([
      ...['keys', 'rotate', '-d', dataDir, '--lifetime-days', '7', '--scheme', 'ao'],
    ]);
    expect(rotated.stderr).toBe('');
    expect(rotated.code).toBe(0);
    expect(rotated.stdout).toMatch(/new ticket key +[0-9a-f]{16} +issues .*, scheme ao\n/);
    expect(rotated.stdout).toMatch(/old ticket key +[0-9a-f]{16} +issues until/);

    const shown = JSON.parse(
      (await runCli(['keys', 'show', '-d', dataDir, '--json'])).stdout,
    ) as ShownKeys;
    const [old, next] = shown.ticketKeys;
    expect(old!.notAfterDay).toBe(old!.notBeforeDay);
    expect(next).toMatchObject({ notBeforeDay: old!.notAfterDay + 1, status: 'next' });
    expect(next!.notAfterDay - next!.notBeforeDay).toBe(6);

    const again = await runCli(['keys', 'rotate', '-d', dataDir, '--scheme', 'ao']);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/ao ticket key [0-9a-f]{16} already takes over on/);
    await expectNoSecret(rotated.stdout, again.stderr);
  });

  it('--config uses relay.dataDir from the relay config, relative to the file', async () => {
    const config = join(root, 'relay.toml');
    await writeFile(
      config,
      [
        '[relay]',
        'dataDir = "data"',
        '[source]',
        'type = "pool"',
        '[[source.pools]]',
        'url = "stratum+tcp://127.0.0.1:3333"',
        'user = "worker"',
        '[tickets]',
        'scheme = "ao"',
      ].join('\n'),
    );
    // The config's tickets.scheme is the default scheme of new keys.
    const generated = await runCli(['keys', 'generate', '--config', config]);
    expect(generated.code).toBe(0);
    expect(generated.stdout).toContain(join(dataDir, 'keys'));
    expect(generated.stdout).toMatch(/, scheme ao\n/);
    const shown = await runCli(['keys', 'show', '-c', config]);
    expect(shown.code).toBe(0);

    await writeFile(config, '[relay]\ndataDir = 3\n');
    const bad = await runCli(['keys', 'show', '-c', config]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/relay\.dataDir/);
  });

  it('refuses key files others can read, naming the file and the fix, without the secret', async () => {
    await runCli(['keys', 'generate', '-d', dataDir, '--scheme', 'ao']);
    const file = join(dataDir, 'keys', 'identity.json');
    await chmod(file, 0o644);
    const result = await runCli(['keys', 'show', '-d', dataDir]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`chmod 600 ${file}`);
    expect(result.stdout).toBe('');
    await expectNoSecret(result.stderr);
  });

  it('refuses a malformed key file without printing its content', async () => {
    await runCli(['keys', 'generate', '-d', dataDir, '--scheme', 'ao']);
    const [secret] = await secrets();
    const name = (await readdir(join(dataDir, 'keys'))).find((n) => n.startsWith('ticket-'))!;
    const file = join(dataDir, 'keys', name);
    await writeFile(file, `{"secretKey":"${secret}"`);
    const result = await runCli(['keys', 'rotate', '-d', dataDir, '--scheme', 'ao']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`${file}: malformed key file: not JSON`);
    expect(result.stderr).not.toContain(secret!.slice(0, 16));
  });

  it('generate --scheme rsa finds safe primes, showing progress, and writes a 0600 key file', async () => {
    // One real generation (0.1–10 s of CPU); the bound only keeps a hung run from lasting.
    const result = await runCli(['keys', 'generate', '-d', dataDir, '--scheme', 'rsa'], 120_000);
    expect(result.code).toBe(0);
    expect(result.stderr).toMatch(
      /^finding safe primes for an RSA ticket key… 0\/2 \(\d+\.\d s\)\n(.*\n)*.*1\/2 \(\d+\.\d s\)\n(.*\n)*.*2\/2 \(\d+\.\d s\)\n$/,
    );
    expect(result.stdout).toMatch(/ticket key +[0-9a-f]{16} +issues .* \(UTC\), scheme rsa\n/);
    const names = await readdir(join(dataDir, 'keys'));
    const ticketName = names.find((n) => n.startsWith('ticket-'))!;
    expect(await mode(join(dataDir, 'keys', ticketName))).toBe(0o600);
    const file = JSON.parse(await readFile(join(dataDir, 'keys', ticketName), 'utf8')) as {
      scheme: string;
    };
    expect(file.scheme).toBe(RSA_SCHEME);

    const shown = await runCli(['keys', 'show', '-d', dataDir, '--json']);
    const [key] = (JSON.parse(shown.stdout) as ShownKeys).ticketKeys;
    expect(key).toMatchObject({ scheme: RSA_SCHEME, status: 'issuing' });
    expect(key!.publicKey).toHaveLength(294 * 2); // SPKI DER of a 2048-bit key
    expect(result.stdout).toContain(key!.keyId);
    await expectNoSecret(result.stdout, result.stderr, shown.stdout);
  }, 150_000);

  it('show and rotate handle both schemes; rsa is the default scheme', async () => {
    // RSA keys made in-process from pre-generated primes, so no safe primes are searched.
    const store = await KeyStore.create(dataDir, {
      now: () => Date.now() / 1000,
      generateRsaKey: fixtureRsaKeys(),
    });
    const [rsaKey] = store.ticketKeys();
    const aoRotated = await runCli(['keys', 'rotate', '-d', dataDir, '--scheme', 'ao']);
    expect(aoRotated.code).toBe(0);
    // No AO key issued today, so the new one starts today; the RSA key is untouched.
    expect(aoRotated.stdout).toMatch(/^new ticket key +[0-9a-f]{16} +issues .*, scheme ao\n/);
    expect(aoRotated.stdout).not.toMatch(/old ticket key/);

    const text = await runCli(['keys', 'show', '-d', dataDir]);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain(`  ${rsaKey!.keyId}  rsa  `);
    expect(text.stdout).toContain(`\n    public key ${rsaKey!.publicKey}\n`);
    expect(text.stdout).toMatch(/ [0-9a-f]{16} {2}ao {3}\d{4}-.* issuing today\n/);
    const shown = JSON.parse(
      (await runCli(['keys', 'show', '-d', dataDir, '--json'])).stdout,
    ) as ShownKeys;
    expect(shown.ticketKeys.map((k) => [k.scheme, k.status]).sort()).toEqual([
      [AO_SCHEME, 'issuing'],
      [RSA_SCHEME, 'issuing'],
    ]);

    // Without --scheme, rotate works on RSA: with an RSA key already pending it refuses
    // before searching for primes.
    await store.rotate();
    const again = await runCli(['keys', 'rotate', '-d', dataDir]);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/rsa ticket key [0-9a-f]{16} already takes over on/);
    expect(again.stderr).not.toMatch(/finding safe primes/);
    await expectNoSecret(aoRotated.stdout, text.stdout, again.stderr);
  });

  const bad: [string, string[], RegExp][] = [
    ['no store given', ['keys', 'show'], /--data-dir <dir> or --config/],
    ['both stores given', ['keys', 'show', '-d', 'a', '-c', 'b'], /cannot be used with/],
    ['zero lifetime', ['keys', 'generate', '-d', 'x', '--lifetime-days', '0'], /from 1 to 366/],
    ['text lifetime', ['keys', 'rotate', '-d', 'x', '--lifetime-days', 'ten'], /from 1 to 366/],
    [
      'unknown scheme',
      ['keys', 'generate', '-d', 'x', '--scheme', 'dsa'],
      /argument 'dsa' is invalid\. Allowed choices are ao, rsa/,
    ],
    ['unknown subcommand', ['keys', 'burn'], /unknown command 'burn'/],
    ['unknown option', ['keys', 'show', '-d', 'x', '--all'], /unknown option '--all'/],
    [
      'no keys yet',
      ['keys', 'show', '-d', join(tmpdir(), 'powbridge-no-such-dir')],
      /no keys; create them/,
    ],
  ];
  for (const [name, args, message] of bad) {
    it(`exits 2 on ${name}`, async () => {
      const result = await runCli(args);
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(message);
      expect(result.stdout).toBe('');
    });
  }

  for (const args of [['keys'], ['keys', 'generate'], ['keys', 'rotate'], ['keys', 'show']]) {
    it(`${args.join(' ')} --help`, async () => {
      const result = await runCli([...args, '--help']);
      expect(result.code).toBe(0);
      expect(result.stdout).toMatch(/^Usage: powbridge keys/);
    });
  }
});
