import { writeFileSync } from 'node:fs';
import type { Reporter, SerializedError, TestModule } from 'vitest/node';

/**
 * Says at the end of a run which test files never finished, and writes the run's outcome to
 * $POWBRIDGE_TEST_REPORT for scripts/test.mjs. A vitest 4 forks worker that dies (a native
 * crash, a kill from outside) is reported only as "Worker exited unexpectedly", without the
 * file it was running; the file is then neither passed nor failed, its tests still pending.
 * Naming it here turns an anonymous red run into one that says where to look.
 */

export interface RunReport {
  /** Files whose worker died before they finished, with the tests that never ran to the end. */
  unfinished: { file: string; pending: string[] }[];
  failedTests: number;
  /** Unhandled errors: message, then its cause's message when there is one. */
  errors: string[];
}

function describeError(err: SerializedError): string {
  const cause = err.cause;
  return cause?.message ? `${err.message} (${cause.message})` : err.message;
}

export default class RunReportReporter implements Reporter {
  onTestRunEnd(
    testModules: ReadonlyArray<TestModule>,
    unhandledErrors: ReadonlyArray<SerializedError>,
  ): void {
    const report: RunReport = { unfinished: [], failedTests: 0, errors: [] };
    for (const module of testModules) {
      report.failedTests += [...module.children.allTests('failed')].length;
      const state = module.state();
      if (state === 'pending' || state === 'queued') {
        const pending = [...module.children.allTests()]
          .filter((test) => test.result().state === 'pending')
          .map((test) => test.fullName);
        report.unfinished.push({ file: module.relativeModuleId, pending });
      }
    }
    report.errors = unhandledErrors.map(describeError);
    for (const { file, pending } of report.unfinished) {
      console.log(`\n unfinished: ${file} (${pending.length} tests never finished)`);
      for (const name of pending.slice(0, 5)) console.log(`   - ${name}`);
    }
    const target = process.env.POWBRIDGE_TEST_REPORT;
    if (target) writeFileSync(target, JSON.stringify(report));
  }
}
