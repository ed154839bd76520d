import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseFamilyKeyText } from '../../src/storage/key-sealing.js';
import { runCli } from '../helpers/cli.js';

/** `powbridge keys family-key --out <file>`: a new family key for storage.familyKeyFile. */

const dir = mkdtempSync(join(tmpdir(), 'powbridge-family-key-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('powbridge keys family-key', () => {
  it('writes a new key (0600), says what to do next, and never overwrites one', async () => {
    const file = join(dir, 'family.key');
    const made = await runCli(['keys', 'family-key', '--out', file]);
    expect(made).toMatchObject({ code: 0, stderr: '' });
    expect(made.stdout).toContain(`wrote a new family key to ${file} (mode 0600)`);
    expect(made.stdout).toContain(`familyKeyFile = ${JSON.stringify(file)}`);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const text = readFileSync(file, 'utf8');
    expect(parseFamilyKeyText(file, text)).toHaveLength(32);
    expect(made.stdout).not.toContain(text.trim());

    const again = await runCli(['keys', 'family-key', '--out', file]);
    expect(again).toEqual({
      code: 2,
      stdout: '',
      stderr: `powbridge keys family-key: ${file} exists; refusing to overwrite it (keys sealed under it would no longer open)\n`,
    });
    expect(readFileSync(file, 'utf8')).toBe(text);

    // Two keys are never the same.
    const other = join(dir, 'other.key');
    expect((await runCli(['keys', 'family-key', '--out', other])).code).toBe(0);
    expect(readFileSync(other, 'utf8')).not.toBe(text);
  });

  it('refuses a missing --out and a folder that does not exist', async () => {
    expect(await runCli(['keys', 'family-key'])).toMatchObject({
      code: 2,
      stderr: expect.stringContaining("required option '-o, --out <file>' not specified") as string,
    });
    const missing = join(dir, 'no', 'such', 'family.key');
    expect(await runCli(['keys', 'family-key', '--out', missing])).toEqual({
      code: 2,
      stdout: '',
      stderr: `powbridge keys family-key: ${missing}: cannot create (ENOENT)\n`,
    });
  });
});
