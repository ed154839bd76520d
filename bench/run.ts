import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Runs the benchmarks: `npm run bench` runs them all, `npm run bench -- <name>...` the named
 * ones; every other argument (e.g. --json) is passed on to each benchmark.
 *
 * bench/<name>.ts is a benchmark. bench/<name>-<part>.ts is a helper of benchmark <name> (a
 * worker or child process it starts) and is not run on its own. Each benchmark runs in its
 * own Node process (with tsx's loader), one after the other, so they do not share a CPU.
 */

const here = dirname(fileURLToPath(import.meta.url));

function benchmarks(): string[] {
  const names = readdirSync(here)
    .filter((f) => f.endsWith('.ts') && f !== 'run.ts' && !f.endsWith('.d.ts'))
    .map((f) => f.slice(0, -'.ts'.length));
  return names.filter((n) => !names.some((other) => n.startsWith(`${other}-`))).sort();
}

const all = benchmarks();
const selected: string[] = [];
const passOn: string[] = [];
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
  const arg = args[i] as string;
  const previous = args[i - 1];
  if (arg.startsWith('-')) {
    passOn.push(arg);
  } else if (all.includes(arg)) {
    selected.push(arg);
  } else if (previous?.startsWith('--') === true && !previous.includes('=')) {
    passOn.push(arg); // the value of the flag before it
  } else {
    console.error(`bench: unknown benchmark "${arg}" (have: ${all.join(', ')})`);
    process.exit(2);
  }
}

let failed = 0;
for (const name of selected.length > 0 ? selected : all) {
  console.error(`bench: ${name}`);
  const result = spawnSync(
    process.execPath,
    ['--import', 'tsx', join(here, `${name}.ts`), ...passOn],
    { stdio: 'inherit' },
  );
  if (result.status !== 0) {
    console.error(`bench: ${name} failed (${result.signal ?? `exit ${result.status}`})`);
    failed++;
  }
}
process.exit(failed > 0 ? 1 : 0);
