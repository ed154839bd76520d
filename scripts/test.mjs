#!/usr/bin/env node
// `npm test`: `vitest run` with the given arguments, plus one narrow re-run. vitest 4's forks
// pool sometimes loses a worker process on a loaded machine ("Worker exited unexpectedly":
// no test failed, one file never finished; seen in two CI runs, in files that pass alone). When that, and only that, happened, the unfinished files run once more
// and decide the result; the first run's report (test/reporters/run-report.ts) names them.
// Any failed test, or any other error, fails as vitest said.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const vitest = fileURLToPath(
  new globalThis.URL('../node_modules/vitest/vitest.mjs', import.meta.url),
);
const WORKER_DIED = /Worker exited unexpectedly/;

function run(args, reportFile) {
  const result = spawnSync(process.execPath, [vitest, 'run', ...args], {
    stdio: 'inherit',
    env: { ...process.env, POWBRIDGE_TEST_REPORT: reportFile },
  });
  if (result.error) throw result.error;
  return result.status ?? 1;
}

function readReport(file) {
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    return null;
  }
}

function main(dir) {
  const reportFile = join(dir, 'report.json');
  const status = run(process.argv.slice(2), reportFile);
  const report = readReport(reportFile);
  const onlyLostWorkers =
    status !== 0 &&
    report !== null &&
    report.failedTests === 0 &&
    report.unfinished.length > 0 &&
    report.errors.length > 0 &&
    report.errors.every((message) => WORKER_DIED.test(message));
  if (!onlyLostWorkers) return status;
  const files = report.unfinished.map((u) => u.file);
  console.log(
    `\nnpm test: a vitest worker process died (no test failed); ` +
      `running its ${files.length} unfinished file(s) once more: ${files.join(', ')}\n`,
  );
  return run(files, join(dir, 'rerun.json'));
}

const dir = mkdtempSync(join(tmpdir(), 'powbridge-test-'));
let status = 1;
try {
  status = main(dir);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
process.exit(status);
