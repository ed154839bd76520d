import { Command, InvalidArgumentError, Option } from 'commander';
import { startDemo } from '../demo/demo.js';
import { requireLitecoind } from '../demo/find-litecoind.js';
import { Narrator } from '../demo/narrator.js';
import { createLogger } from '../log.js';
import { fail } from './output.js';

interface DemoFlags {
  duration: number;
  exitWhenDone?: boolean;
  logLevel: string;
}

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

function seconds(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 86_400) {
    throw new InvalidArgumentError('expected whole seconds, 0..86400 (0: until Ctrl-C)');
  }
  return n;
}

export function demoCommand(): Command {
  return new Command('demo')
    .description(
      'run a whole powbridge network on this machine and tell what happens: two litecoind ' +
        'regtest nodes, a relay mining solo, a backup relay, a one-thread miner earning and ' +
        'redeeming tickets',
    )
    .option(
      '--duration <s>',
      'stop by itself after this many seconds (0: until Ctrl-C)',
      seconds,
      0,
    )
    .option('--exit-when-done', 'stop as soon as the story is complete')
    .addOption(
      new Option('--log-level <level>', "the relays' and the miner's own logs (JSON, on stderr)")
        .choices(['fatal', 'error', 'warn', 'info', 'debug', 'silent'])
        .default('error'),
    )
    .addHelpText(
      'after',
      [
        '',
        'Needs litecoind (Debian: apt-get install litecoind, or ./scripts/setup.sh).',
        'Everything runs on 127.0.0.1 in a temporary directory, without Tor; Ctrl-C,',
        'SIGTERM, SIGHUP or a closed output (`npm start | head`) stops it all and',
        'removes the directory. Through Tor: npm run test:tor (a private Tor network).',
      ].join('\n'),
    )
    .action(async (flags: DemoFlags) => {
      let litecoind: string;
      try {
        litecoind = requireLitecoind();
      } catch (err) {
        return fail('demo', err);
      }
      // The story goes to stdout until nobody reads it any more: `npm start | head`, or a
      // `| tee log` that Ctrl-C ended first. Then it stops being written (EPIPE must not crash
      // the demo and leave its nodes and directory behind) and the demo stops, cleaning up.
      let outputGone = false;
      const run = startDemo({
        narrator: new Narrator((text) => {
          if (!outputGone) process.stdout.write(text);
        }),
        litecoind,
        durationSeconds: flags.duration,
        exitWhenDone: flags.exitWhenDone ?? false,
        logger: createLogger({ level: flags.logLevel, stderr: true }),
      });
      // First signal: stop cleanly. A second one while that hangs: kill what is left, now.
      let signalled = false;
      const onSignal = (signal: NodeJS.Signals): void => {
        if (!signalled) {
          signalled = true;
          run.stop(signal === 'SIGINT' ? 'Ctrl-C' : signal);
          return;
        }
        run.abandon();
        process.exit(1);
      };
      for (const signal of SIGNALS) process.on(signal, onSignal);
      process.stdout.on('error', (err: NodeJS.ErrnoException) => {
        if (outputGone) return;
        outputGone = true;
        process.stderr.write(
          `powbridge demo: output closed (${err.code ?? err.message}): stopping and cleaning up\n`,
        );
        if (!signalled) {
          signalled = true;
          run.stop('Output closed');
        }
      });
      // stderr may be the same broken pipe (2>&1): its errors must not crash the clean-up.
      process.stderr.on('error', () => undefined);
      const result = await run.finished;
      for (const signal of SIGNALS) process.off(signal, onSignal);
      // Worker threads and sockets are closed, but exit explicitly rather than trust that.
      process.exit(result.ok ? 0 : 1);
    });
}
