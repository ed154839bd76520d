#!/usr/bin/env node
// Thin launcher: the CLI is compiled TypeScript in dist/. A package made by `npm pack` carries
// dist/ (its prepack script builds it), so only a clone that was never built lacks it.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
// The TypeScript sources are never packed: their presence tells a clone from an install.
const inClone = existsSync(join(root, 'src', 'cli', 'main.ts'));
const main = join(root, 'dist', 'src', 'cli', 'main.js');

if (!existsSync(main)) {
  console.error(
    inClone
      ? 'powbridge: this clone is not built yet (dist/ is missing): run `npm run build`, then try again.'
      : `powbridge: this installation in ${root} has no dist/; reinstall from a tarball made by \`npm pack\` in a clone.`,
  );
  process.exit(1);
}

warnIfSqliteNotBuilt();

try {
  await import(pathToFileURL(main).href);
} catch (err) {
  // A dependency that is not installed: say what to run instead of a resolver stack trace.
  if (err && err.code === 'ERR_MODULE_NOT_FOUND') {
    const what = String(err.message).split('\n')[0];
    console.error(
      inClone
        ? `powbridge: ${what}\npowbridge: the dependencies are not installed: run \`npm ci\`.`
        : `powbridge: ${what}\npowbridge: this installation is incomplete: reinstall it (README, "Install").`,
    );
    process.exit(1);
  }
  throw err;
}

/**
 * better-sqlite3 compiles its native module in an install script, which npm 11 skips in a
 * global install unless the package is allowed by name. Without it every command that opens
 * a SQLite file (relay, mine, tickets, peers, demo) fails deep inside `bindings`; say why up
 * front, and let the commands that need no SQLite (--help, hash, terms) run anyway.
 */
function warnIfSqliteNotBuilt() {
  let folder;
  try {
    folder = dirname(createRequire(main).resolve('better-sqlite3/package.json'));
  } catch {
    return; // not installed at all: the import below says so
  }
  const built = ['Release', 'Debug'].some((kind) =>
    existsSync(join(folder, 'build', kind, 'better_sqlite3.node')),
  );
  if (built) return;
  console.error(
    inClone
      ? 'powbridge: better-sqlite3 is not built (its install script did not run): run `npm rebuild better-sqlite3`.'
      : 'powbridge: better-sqlite3 is not built (npm skipped its install script); reinstall with\n' +
          '  npm install -g --allow-scripts=better-sqlite3 <powbridge tarball>',
  );
}
