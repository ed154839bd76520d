import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';

/**
 * Global setup of `npm run fuzz` (vitest.fuzz.config.ts): every property appends the cases it
 * ran to one file (test/helpers/fuzz.ts), and the teardown prints the total, so a run shows
 * how many cases it really covered.
 */
export default function setup(project: TestProject): () => void {
  const dir = mkdtempSync(join(tmpdir(), 'powbridge-fuzz-'));
  const file = join(dir, 'tally.jsonl');
  writeFileSync(file, '');
  project.provide('fuzzTally', file);
  const started = Date.now();
  return () => {
    const lines = readFileSync(file, 'utf8')
      .split('\n')
      .filter((line) => line !== '');
    const cases = lines.reduce(
      (sum, line) => sum + (JSON.parse(line) as { cases: number }).cases,
      0,
    );
    const seconds = Math.round((Date.now() - started) / 1000);
    process.stdout.write(
      `\nfuzz: ${cases.toLocaleString('en')} cases in ${lines.length} properties, ${seconds} s\n`,
    );
    rmSync(dir, { recursive: true, force: true });
  };
}
