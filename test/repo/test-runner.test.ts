import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

/**
 * scripts/test.mjs (`npm test`) against the fixture cases of test/fixtures/worker-crash: a
 * vitest worker killed mid-file is named, and re-run once only when nothing else went wrong.
 */

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const FIXTURE = join(ROOT, 'test', 'fixtures', 'worker-crash');
const RUNNER = join(ROOT, 'scripts', 'test.mjs');
const dir = mkdtempSync(join(tmpdir(), 'powbridge-runner-'));

afterAll(() => rmSync(dir, { recursive: true, force: true }));

// ANSI colours would split the lines the assertions read.
const plain = (text: string) => text.replace(/\x1b\[[0-9;]*m/g, ''); // eslint-disable-line no-control-regex

function runCase(
  name: string,
  env: Record<string, string> = {},
): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [RUNNER],
      { cwd: FIXTURE, env: { ...process.env, CASE: name, NO_COLOR: '1', ...env } },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1;
        resolve({ code, out: plain(stdout + stderr) });
      },
    );
  });
}

describe('npm test (scripts/test.mjs)', () => {
  it('names the file whose worker died and passes when its one re-run passes', async () => {
    const { code, out } = await runCase('dies', { MARKER: join(dir, 'died-once') });
    // Results reach vitest in batches: the test before the kill may be pending too.
    expect(out).toMatch(/unfinished: dies\.case\.ts \([23] tests never finished\)/);
    expect(out).toContain('- is running when the worker dies');
    expect(out).toContain('running its 1 unfinished file(s) once more: dies.case.ts');
    expect(out).toMatch(/Tests {2}3 passed \(3\)/);
    expect(code).toBe(0);
  });

  it('fails when the worker dies again in the re-run', async () => {
    const { code, out } = await runCase('dies');
    expect(out.match(/unfinished: dies\.case\.ts/g)).toHaveLength(2);
    expect(code).toBe(1);
  });

  it('fails a failing test at once, without a re-run', async () => {
    const { code, out } = await runCase('fails');
    expect(out).not.toContain('once more');
    expect(code).toBe(1);
  });
});
