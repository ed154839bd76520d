import { homedir } from 'node:os';
import { join } from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { MineApp } from '../client/mine-app.js';
import { parseCircuitUrl } from '../client/relay-url.js';
import { parseSocksProxy } from '../client/socks-agent.js';
import { formatSummary } from '../client/run-summary.js';
import { formatStatus } from '../client/status-line.js';
import { Wallet } from '../client/wallet.js';
import { createLogger, LOG_LEVELS } from '../log.js';
import { checkHostPort, splitHostPort } from '../relay/config.js';
import { fail } from './output.js';
import { flagValue, UsageError } from './usage-error.js';

interface MineFlags {
  relay: string;
  threads: number;
  cpu: number;
  jitter: number;
  donate?: boolean;
  proxy?: string;
  wallet: string;
  relayIdentity?: string;
  stratumListen?: string;
  socksListen?: string;
  autoRedeem: boolean;
  priorityTickets: number;
  logLevel: string;
  statusInterval: number;
}

function intIn(min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`expected an integer ${min}..${max}`);
    }
    return n;
  };
}

export function mineCommand(): Command {
  return new Command('mine')
    .summary('mine for a relay: earn priority tickets (or donate) with proof of work')
    .description(
      'mine for a relay: earn priority tickets (or donate) with proof of work\n\n' +
        'Ctrl-C (or SIGTERM) stops it and prints a summary of the run: time, hashes, shares ' +
        'and why any were rejected, credit, tickets and the wallet; exit status 0. Exit ' +
        'status 2: bad arguments, or a relay it cannot mine for.',
    )
    .requiredOption('--relay <url>', 'the relay circuit endpoint, e.g. ws://…onion/v1/circuit')
    .option('--threads <n>', 'mining threads (0: only the Stratum front)', intIn(0, 256), 1)
    .option('--cpu <pct>', 'duty cycle per thread, percent', intIn(1, 100), 100)
    .option('--jitter <pct>', 'random drift of the hash rate, percent (0 = off)', intIn(0, 90), 20)
    .option('--donate', 'donation mode: shares only, no tickets')
    .option(
      '--proxy <url>',
      "reach the relay through SOCKS5, e.g. Tor's socks5h://127.0.0.1:9050",
      flagValue((value) => {
        parseSocksProxy(value); // checked as a flag; MineApp takes the text
        return value;
      }),
    )
    .option('--wallet <file>', 'ticket wallet', join(homedir(), '.powbridge', 'wallet.sqlite'))
    .option('--relay-identity <hex>', "the relay's identity key: its descriptor must match")
    .option(
      '--stratum-listen <host:port>',
      'let standard Stratum miners mine through this client',
      flagValue(checkHostPort),
    )
    .option(
      '--socks-listen <host:port>',
      "a local SOCKS5 port whose streams use the relay's priority tunnel",
      flagValue(checkHostPort),
    )
    .option(
      '--no-auto-redeem',
      'do not redeem wallet tickets for SOCKS streams automatically (a grant from `tickets redeem --for-socks` is still used)',
    )
    .option(
      '--priority-tickets <n>',
      "tickets to keep paid into the SOCKS streams' grant per window: more buy a higher group",
      intIn(1, 100),
      1,
    )
    .addOption(
      new Option('--log-level <level>', 'log level (logs go to stderr)')
        .choices(LOG_LEVELS)
        .default('warn'),
    )
    .option(
      '--status-interval <s>',
      'seconds between status lines when not on a TTY',
      intIn(1, 3600),
      15,
    )
    .action((flags: MineFlags) => {
      let stratumListen: { host: string; port: number } | undefined;
      let socksListen: { host: string; port: number } | undefined;
      let wallet: Wallet | undefined;
      let relayUrl: string;
      try {
        try {
          relayUrl = parseCircuitUrl(flags.relay);
        } catch (err) {
          throw new UsageError(`--relay: ${(err as Error).message}`);
        }
        if (flags.relayIdentity !== undefined && !/^[0-9a-f]{64}$/i.test(flags.relayIdentity)) {
          throw new UsageError('--relay-identity: expected 64 hex characters');
        }
        // Both checked as flags (checkHostPort).
        if (flags.stratumListen) stratumListen = splitHostPort(flags.stratumListen);
        if (flags.socksListen) socksListen = splitHostPort(flags.socksListen);
        if (!flags.donate) wallet = Wallet.open(flags.wallet);
      } catch (err) {
        return fail('mine', err);
      }
      const logger = createLogger({ level: flags.logLevel, stderr: true });
      let app: MineApp;
      try {
        app = new MineApp({
          relayUrl,
          mode: flags.donate ? 'donate' : 'tickets',
          threads: flags.threads,
          cpuPercent: flags.cpu,
          jitterPercent: flags.jitter,
          ...(flags.proxy ? { proxy: flags.proxy } : {}),
          ...(wallet ? { wallet } : {}),
          ...(flags.relayIdentity ? { relayIdentity: flags.relayIdentity.toLowerCase() } : {}),
          ...(stratumListen ? { stratumListen } : {}),
          ...(socksListen ? { socksListen } : {}),
          autoRedeem: flags.autoRedeem,
          priorityTickets: flags.priorityTickets,
          logger,
        });
      } catch (err) {
        wallet?.close();
        return fail('mine', err);
      }
      const tty = process.stdout.isTTY;
      const show = () => {
        const line = formatStatus(app.status());
        process.stdout.write(tty ? `\r\x1b[K${line}` : `${line}\n`);
      };
      /** A plain line on stderr (over the status line on a terminal, which redraws). */
      const say = (message: string) => {
        if (tty) process.stdout.write('\r\x1b[K');
        process.stderr.write(`powbridge mine: ${message}\n`);
      };
      app.on('ticket', () => {
        if (!tty) process.stdout.write('ticket stored in the wallet\n');
      });
      // Why there is no circuit, once per cause (not once per retry) until mining resumes.
      let told: string | null = null;
      app.on('link', (link) => {
        if (link.state === 'live') told = null;
        if (link.state !== 'retrying' || link.reason === told) return;
        told = link.reason;
        const seconds = Math.max(1, Math.round((link.retryAt - Date.now()) / 1000));
        say(`${link.reason} (${link.refused ? 'paused, next try' : 'retrying'} in ${seconds} s)`);
      });
      let stopping = false;
      const timer = setInterval(show, tty ? 1000 : flags.statusInterval * 1000);
      /** `cause`: a signal's name for the run's summary; null (a fatal error) for none. */
      const stop = (exitCode: number, cause: string | null) => {
        if (stopping) return;
        stopping = true;
        clearInterval(timer);
        // A last status line: where things stood, even after a run shorter than an interval.
        if (cause !== null) {
          show();
          if (tty) process.stdout.write('\n');
        }
        app
          .stop()
          .catch((err: unknown) => logger.error({ err: String(err) }, 'error while stopping'))
          .finally(() => {
            try {
              // After the stop, so shares still in flight are counted.
              if (cause !== null) {
                process.stdout.write(
                  formatSummary({
                    cause,
                    ...app.runReport(),
                    wallet: wallet ? { path: flags.wallet, counts: wallet.counts() } : null,
                  }),
                );
              }
              wallet?.close();
            } finally {
              process.exit(exitCode);
            }
          });
      };
      // A relay that cannot be mined for (wrong path, not the pinned relay): one line, exit 2.
      app.on('fatal', (err) => {
        say(err.message);
        stop(2, null);
      });
      app.start();
      // Stopping is how a miner's run ends, so it exits 0 (as cpuminer does), with a summary.
      process.once('SIGINT', () => stop(0, 'Ctrl-C'));
      process.once('SIGTERM', () => stop(0, 'SIGTERM'));
    });
}
