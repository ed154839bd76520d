import { resolve } from 'node:path';
import { Command, Option } from 'commander';
import { createLogger, LOG_LEVELS } from '../log.js';
import {
  checkHostPort,
  ConfigError,
  loadRelayConfig,
  parseRelayConfig,
  splitHostPort,
} from '../relay/config.js';
import { startRelay } from '../relay/relay.js';
import { CIRCUIT_PATH } from '../relay/circuit-connector.js';
import { torrcSnippet } from '../tor/torrc-snippet.js';
import { fail } from './output.js';
import { flagValue } from './usage-error.js';

interface RelayFlags {
  config: string;
  listen?: string;
  stratumListen?: string;
  logLevel?: string;
  torControl?: string;
  torPasswordFile?: string;
  printTorrc?: boolean;
}

export function relayCommand(): Command {
  return new Command('relay')
    .description('run the relay bridge: work source, client circuits, HTTP API')
    .requiredOption('-c, --config <file>', 'relay config (TOML); see config/relay.example.toml')
    .option('--listen <host:port>', 'override relay.listen', flagValue(checkHostPort))
    .option(
      '--stratum-listen <host:port>',
      'override relay.stratumListen',
      flagValue(checkHostPort),
    )
    .addOption(new Option('--log-level <level>', 'override log.level').choices(LOG_LEVELS))
    .option(
      '--tor-control <host:port>',
      "create the onion service through Tor's control port (override tor.control)",
      flagValue(checkHostPort),
    )
    .option(
      '--tor-password-file <file>',
      'Tor control password file, 0600 (else $POWBRIDGE_TOR_PASSWORD); cookie auth needs none',
    )
    .option('--print-torrc', 'print a torrc snippet for the onion service instead of running')
    .action(async (flags: RelayFlags) => {
      let config;
      try {
        const file = loadRelayConfig(flags.config);
        // Flags win over the file; the merged result is validated again as a whole.
        config = parseRelayConfig(
          {
            ...file,
            relay: {
              ...file.relay,
              ...(flags.listen ? { listen: flags.listen } : {}),
              ...(flags.stratumListen ? { stratumListen: flags.stratumListen } : {}),
            },
            log: { level: flags.logLevel ?? process.env.POWBRIDGE_LOG_LEVEL ?? file.log.level },
            tor: {
              ...file.tor,
              ...(flags.torControl ? { control: flags.torControl } : {}),
              ...(flags.torPasswordFile ? { passwordFile: resolve(flags.torPasswordFile) } : {}),
            },
          },
          `${flags.config} (with flags)`,
        );
      } catch (err) {
        return fail('relay', err instanceof ConfigError ? err.message : err);
      }
      if (flags.printTorrc) {
        try {
          process.stdout.write(
            torrcSnippet({
              hiddenServiceDir: config.tor.hiddenServiceDir,
              virtualPort: config.tor.virtualPort,
              target: splitHostPort(config.relay.listen),
            }),
          );
        } catch (err) {
          fail('relay', err);
        }
        return;
      }
      const logger = createLogger({ level: config.log.level });
      let relay;
      try {
        const torPassword = process.env.POWBRIDGE_TOR_PASSWORD;
        relay = await startRelay(config, { logger, ...(torPassword ? { torPassword } : {}) });
      } catch (err) {
        return fail('relay', err);
      }
      process.stderr.write(`powbridge relay: listening on ${relay.url}\n`);
      if (relay.onion) {
        process.stderr.write(
          `powbridge relay: onion service ${relay.onion.url('ws', CIRCUIT_PATH)}\n`,
        );
      }
      if (relay.stratumAddress) {
        process.stderr.write(
          `powbridge relay: Stratum for standard miners on ${relay.stratumAddress}\n`,
        );
      }
      let stopping = false;
      const stop = (signal: string) => {
        if (stopping) return;
        stopping = true;
        logger.info({ signal }, 'stopping');
        relay
          .close()
          .catch((err: unknown) => logger.error({ err: String(err) }, 'error while stopping'))
          .finally(() => process.exit(0));
      };
      process.once('SIGINT', () => stop('SIGINT'));
      process.once('SIGTERM', () => stop('SIGTERM'));
    });
}
