import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';

/**
 * bin/powbridge.js in the layouts it can meet: a clone (TypeScript sources present) or an
 * installed package (no sources), built or not, with better-sqlite3's native module or
 * without it (npm 11 skips its install script unless allowed). Each layout is a few files in
 * a temporary folder around a copy of the real launcher; dist/src/cli/main.js is a stub.
 */

const LAUNCHER = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'powbridge.js');
const STUB_MAIN = "process.stdout.write('cli ran\\n');\n";

interface Layout {
  clone?: boolean;
  built?: boolean;
  /** undefined: no better-sqlite3 at all; false: installed without its native module. */
  sqliteBuilt?: boolean;
  main?: string;
}

const folders: string[] = [];

afterEach(() => {
  for (const f of folders.splice(0)) rmSync(f, { recursive: true, force: true });
});

function write(file: string, text: string): void {
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, text);
}

function makeLayout(layout: Layout): string {
  const dir = mkdtempSync(join(tmpdir(), 'powbridge-launcher-'));
  folders.push(dir);
  write(join(dir, 'package.json'), '{ "name": "powbridge", "type": "module" }\n');
  mkdirSync(join(dir, 'bin'));
  copyFileSync(LAUNCHER, join(dir, 'bin', 'powbridge.js'));
  if (layout.clone) write(join(dir, 'src', 'cli', 'main.ts'), '// the sources\n');
  if (layout.built) write(join(dir, 'dist', 'src', 'cli', 'main.js'), layout.main ?? STUB_MAIN);
  if (layout.sqliteBuilt !== undefined) {
    const sqlite = join(dir, 'node_modules', 'better-sqlite3');
    write(join(sqlite, 'package.json'), '{ "name": "better-sqlite3", "main": "lib/index.js" }\n');
    if (layout.sqliteBuilt) write(join(sqlite, 'build', 'Release', 'better_sqlite3.node'), '');
  }
  return dir;
}

function launch(dir: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [join(dir, 'bin', 'powbridge.js'), '--help'],
      { cwd: dir, timeout: 15_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

describe('bin/powbridge.js', () => {
  it('runs the built CLI with nothing on stderr', async () => {
    const result = await launch(makeLayout({ clone: true, built: true, sqliteBuilt: true }));
    expect(result).toEqual({ code: 0, stdout: 'cli ran\n', stderr: '' });
  });

  it('says a clone that was never built needs `npm run build`', async () => {
    const result = await launch(makeLayout({ clone: true }));
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toBe(
      'powbridge: this clone is not built yet (dist/ is missing): run `npm run build`, then try again.\n',
    );
  });

  it('says an installation without dist/ must be reinstalled from a packed tarball', async () => {
    const dir = makeLayout({});
    const result = await launch(dir);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`this installation in ${dir} has no dist/`);
    expect(result.stderr).toContain('`npm pack`');
    expect(result.stderr).not.toContain('clone is not built');
  });

  it('warns an installation whose better-sqlite3 was not compiled, with the command, and still runs', async () => {
    const result = await launch(makeLayout({ built: true, sqliteBuilt: false }));
    expect(result.code).toBe(0);
    expect(result.stdout).toBe('cli ran\n');
    expect(result.stderr).toContain('better-sqlite3 is not built (npm skipped its install script)');
    expect(result.stderr).toContain(
      'npm install -g --allow-scripts=better-sqlite3 <powbridge tarball>',
    );
  });

  it('tells a clone whose better-sqlite3 was not compiled to rebuild it', async () => {
    const result = await launch(makeLayout({ clone: true, built: true, sqliteBuilt: false }));
    expect(result.code).toBe(0);
    expect(result.stderr).toContain('run `npm rebuild better-sqlite3`');
  });

  it('says which dependency is missing and to run `npm ci` in a clone', async () => {
    const main = "import 'commander';\nprocess.stdout.write('cli ran\\n');\n";
    const result = await launch(makeLayout({ clone: true, built: true, main }));
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(/^powbridge: Cannot find package 'commander'/);
    expect(result.stderr).toContain('the dependencies are not installed: run `npm ci`.');
    expect(result.stderr).not.toMatch(/\n\s+at /); // no stack trace
  });
});
