import { chmod, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';

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

/** The secret hex of every key file, to grep outputs for. */
async function secrets(): Promise<string[]> {
  const dir = join(dataDir, 'keys');
  const names = (await readdir(dir)).filter((n) => n.endsWith('.json'));
  return Promise.all(
    names.map(
      async (n) =>
        (JSON.parse(await readFile(join(dir, n), 'utf8')) as { secretKey: string }).secretKey,
    ),
  );
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
    publicKey: string;
    notBeforeDay: number;
    notAfterDay: number;
    status: string;
  }[];
}

describe('powbridge keys', () => {
  it('generate creates private keys and prints public parts only; refuses to run twice', async () => {
    const result = await runCli(['keys', 'generate', '--data-dir', dataDir]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^created keys in .*keys\nidentity +[0-9a-f]{64} \(ed25519\)/);
    expect(result.stdout).toMatch(/ticket key +[0-9a-f]{16} +issues \d{4}-\d\d-\d\d \.\. /);
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
    await runCli(['keys', 'generate', '-d', dataDir, '--lifetime-days', '10']);
    const json = await runCli(['keys', 'show', '-d', dataDir, '--json']);
    expect(json.code).toBe(0);
    const shown = JSON.parse(json.stdout) as ShownKeys;
    expect(shown.identity.algorithm).toBe('ed25519');
    expect(shown.ticketKeys).toHaveLength(1);
    const [key] = shown.ticketKeys;
    expect(key!.notAfterDay - key!.notBeforeDay).toBe(9);
    expect(key!.status).toBe('issuing');

    const text = await runCli(['keys', 'show', '-d', dataDir]);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain(`identity  ${shown.identity.publicKey} (ed25519)`);
    expect(text.stdout).toContain(`${key!.keyId}  ${key!.publicKey}`);
    expect(text.stdout).toContain('issuing today');
    await expectNoSecret(json.stdout, text.stdout, json.stderr, text.stderr);
  });

  it('rotate adds a key from tomorrow and keeps the old one; a second rotation waits', async () => {
    await runCli(['keys', 'generate', '-d', dataDir]);
    const rotated = await runCli(['keys', 'rotate', '-d', dataDir, '--lifetime-days', '7']);
    expect(rotated.stderr).toBe('');
    expect(rotated.code).toBe(0);
    expect(rotated.stdout).toMatch(/new ticket key +[0-9a-f]{16} +issues/);
    expect(rotated.stdout).toMatch(/old ticket key +[0-9a-f]{16} +issues until/);

    const shown = JSON.parse(
      (await runCli(['keys', 'show', '-d', dataDir, '--json'])).stdout,
    ) as ShownKeys;
    const [old, next] = shown.ticketKeys;
    expect(old!.notAfterDay).toBe(old!.notBeforeDay);
    expect(next).toMatchObject({ notBeforeDay: old!.notAfterDay + 1, status: 'next' });
    expect(next!.notAfterDay - next!.notBeforeDay).toBe(6);

    const again = await runCli(['keys', 'rotate', '-d', dataDir]);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/already takes over on/);
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
      ].join('\n'),
    );
    const generated = await runCli(['keys', 'generate', '--config', config]);
    expect(generated.code).toBe(0);
    expect(generated.stdout).toContain(join(dataDir, 'keys'));
    const shown = await runCli(['keys', 'show', '-c', config]);
    expect(shown.code).toBe(0);

    await writeFile(config, '[relay]\ndataDir = 3\n');
    const bad = await runCli(['keys', 'show', '-c', config]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/relay\.dataDir/);
  });

  it('refuses key files others can read, naming the file and the fix, without the secret', async () => {
    await runCli(['keys', 'generate', '-d', dataDir]);
    const file = join(dataDir, 'keys', 'identity.json');
    await chmod(file, 0o644);
    const result = await runCli(['keys', 'show', '-d', dataDir]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`chmod 600 ${file}`);
    expect(result.stdout).toBe('');
    await expectNoSecret(result.stderr);
  });

  it('refuses a malformed key file without printing its content', async () => {
    await runCli(['keys', 'generate', '-d', dataDir]);
    const [secret] = await secrets();
    const name = (await readdir(join(dataDir, 'keys'))).find((n) => n.startsWith('ticket-'))!;
    const file = join(dataDir, 'keys', name);
    await writeFile(file, `{"secretKey":"${secret}"`);
    const result = await runCli(['keys', 'rotate', '-d', dataDir]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`${file}: malformed key file: not JSON`);
    expect(result.stderr).not.toContain(secret!.slice(0, 16));
  });

  const bad: [string, string[], RegExp][] = [
    ['no store given', ['keys', 'show'], /--data-dir <dir> or --config/],
    ['both stores given', ['keys', 'show', '-d', 'a', '-c', 'b'], /cannot be used with/],
    ['zero lifetime', ['keys', 'generate', '-d', 'x', '--lifetime-days', '0'], /from 1 to 366/],
    ['text lifetime', ['keys', 'rotate', '-d', 'x', '--lifetime-days', 'ten'], /from 1 to 366/],
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
