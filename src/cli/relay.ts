import { Command } from 'commander';
import { createLogger } from '../log.js';
import { ConfigError, loadRelayConfig, parseRelayConfig } from '../relay/config.js';
import { startRelay } from '../relay/relay.js';
import { fail } from './output.js';

interface RelayFlags {
  config: string;
  listen?: string;
  stratumListen?: string;
  logLevel?: string;
}

export function relayCommand(): Command {
  return new Command('relay')
    .description('run the relay bridge: work source, client circuits, HTTP API')
    .requiredOption('-c, --config <file>', 'relay config (TOML); see config/relay.example.toml')
    .option('--listen <host:port>', 'override relay.listen')
    .option('--stratum-listen <host:port>', 'override relay.stratumListen')
    .option('--log-level <level>', 'override log.level')
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
          },
          `${flags.config} (with flags)`,
        );
      } catch (err) {
        return fail('relay', err instanceof ConfigError ? err.message : err);
      }
      const logger = createLogger({ level: config.log.level });
      let relay;
      try {
        relay = await startRelay(config, { logger });
      } catch (err) {
        return fail('relay', err);
      }
      process.stderr.write(`powbridge relay: listening on ${relay.url}\n`);
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
