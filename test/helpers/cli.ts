import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BIN = join(root, 'bin', 'powbridge.js');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run the built `powbridge` binary as a user would (`npm test` builds dist/ first). */
export function runCli(args: string[], timeoutMs = 15_000): Promise<CliResult> {
  if (!existsSync(join(root, 'dist', 'src', 'cli', 'main.js'))) {
    throw new Error('dist/ is missing: run `npm run build` (npm test does it for you)');
  }
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { timeout: timeoutMs }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}
