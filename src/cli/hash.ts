import { Command, Option } from 'commander';
import { ALGORITHMS, type Algorithm } from '../work/algorithm.js';
import { HexError } from '../work/hex.js';
import { inspectHeader } from '../work/inspect.js';
import { fail } from './output.js';
import { UsageError } from './usage-error.js';

export function hashCommand(): Command {
  return new Command('hash')
    .description('print the proof-of-work hash of an 80-byte block header (debugging aid)')
    .addOption(
      new Option('-a, --algorithm <name>', 'proof-of-work algorithm')
        .choices(ALGORITHMS)
        .makeOptionMandatory(),
    )
    .requiredOption('--header <hex>', 'the serialized header: 160 hex characters')
    .option('--json', 'print one JSON object instead of lines')
    .action(async (options: { algorithm: Algorithm; header: string; json?: boolean }) => {
      let report: Awaited<ReturnType<typeof inspectHeader>>;
      try {
        report = await inspectHeader(options.algorithm, options.header);
      } catch (err) {
        // A --header that is not 80 bytes of hex is a bad argument like any other.
        return fail('hash', err instanceof HexError ? new UsageError(err.message) : err);
      }
      if (options.json) {
        process.stdout.write(`${JSON.stringify(report)}\n`);
        return;
      }
      const lines = [`pow hash    ${report.powHash}`];
      if (report.algorithm !== 'sha256d') lines.push(`block hash  ${report.blockHash}`);
      lines.push(
        `nbits       ${report.nbits} (network difficulty ${report.networkDifficulty.toPrecision(6)})`,
        `share diff  ${report.shareDifficulty.toPrecision(6)}`,
        `meets target from nbits: ${report.meetsTarget ? 'yes' : 'no'}`,
      );
      process.stdout.write(`${lines.join('\n')}\n`);
    });
}
