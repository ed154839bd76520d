import { fileURLToPath } from 'node:url';
import { ESLint } from 'eslint';
import tseslint from 'typescript-eslint';
import { beforeAll, describe, expect, it } from 'vitest';

/**
 * The layering rule in eslint.config.js, checked through ESLint itself so it cannot quietly
 * disappear: library folders never import the applications (relay, client, cli, demo), and
 * src/lib imports no other src folder. The files are virtual; type-aware rules are switched off
 * for them because no TypeScript program holds them, and only the import rule is run.
 */

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const RULE = 'no-restricted-imports';

let eslint: ESLint;

beforeAll(() => {
  eslint = new ESLint({
    cwd: ROOT,
    overrideConfig: { files: ['**/*.ts'], ...tseslint.configs.disableTypeChecked },
    ruleFilter: ({ ruleId }) => ruleId === RULE,
  });
});

/** The import-rule messages ESLint reports for `code` as if it were the file at `filePath`. */
async function importProblems(filePath: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath });
  if (!result) throw new Error('ESLint returned no result');
  const fatal = result.messages.find((m) => m.fatal === true);
  if (fatal) throw new Error(`ESLint could not parse the probe: ${fatal.message}`);
  return result.messages.filter((m) => m.ruleId === RULE).map((m) => m.message);
}

describe('layering (eslint.config.js)', () => {
  it.each([
    ['src/qos/x.ts', "import '../relay/config.js';"],
    ['src/peers/x.ts', "import { loadConfig } from '../relay/config.js';\nvoid loadConfig;"],
    [
      'src/tickets/x.ts',
      "import type { Wallet } from '../client/wallet.js';\nexport type W = Wallet;",
    ],
    ['src/sources/x.ts', "export { main } from '../cli/main.js';"],
    ['src/work/kernels/x.ts', "import '../../relay/share-hasher.js';"],
    ['src/stratum/x.ts', "import '../demo/demo.js';"],
    ['src/protocol/x.ts', "import '../client';"],
    ['src/tor/x.ts', "import '../relay/relay.js';"],
    ['src/storage/x.ts', "import '../relay/config.js';"],
    ['src/lib/x.ts', "import '../relay/config.js';"],
  ])('%s may not import an application: %s', async (file, code) => {
    const problems = await importProblems(file, code);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/must not import from src\/relay|src\/lib imports nothing/);
  });

  it.each([
    ['src/lib/x.ts', "import '../log.js';"],
    ['src/lib/x.ts', "import { u32ToHex } from '../work/hex.js';\nvoid u32ToHex;"],
  ])('%s may not import another src folder: %s', async (file, code) => {
    expect(await importProblems(file, code)).toEqual([
      expect.stringContaining('src/lib imports nothing from other src folders'),
    ]);
  });

  it.each([
    [
      'src/qos/x.ts',
      "import '../tickets/grant-book.js';\nimport '../lib/upgrade-router.js';\nimport 'ws';",
    ],
    ['src/work/kernels/x.ts', "import '../target.js';\nimport './load-wasm.js';"],
    ['src/peers/x.ts', "import '../tickets/ticket.js';\nimport './peer-keys.js';"],
    ['src/tickets/x.ts', "import '../storage/spent-log.js';\nimport 'pg';"],
    ['src/lib/x.ts', "import './backoff.js';\nimport 'better-sqlite3';\nimport 'node:fs';"],
    // The applications may use everything below them.
    ['src/relay/x.ts', "import '../qos/tunnel.js';\nimport '../client/wallet.js';"],
    ['src/client/x.ts', "import '../relay/config.js';"],
  ])('%s may import %s', async (file, code) => {
    expect(await importProblems(file, code)).toEqual([]);
  });
});
