import { Command, type CommanderError, InvalidArgumentError, Option } from 'commander';
import { loadRelayConfig } from '../relay/config.js';
import {
  dayDate,
  KEYS_DIR,
  KeyStore,
  MAX_LIFETIME_DAYS,
  REDEEM_GRACE_DAYS,
  type TicketKeyInfo,
} from '../tickets/key-store.js';
import { fail } from './output.js';

/**
 * `powbridge keys generate | rotate | show`: the relay's identity and ticket keys on disk.
 * Output holds public parts only; secrets stay in the 0600 files.
 */

interface StoreFlags {
  dataDir?: string;
  config?: string;
}

const now = () => Date.now() / 1000;

/** Bad usage exits with 2, like every other input error; help and version still exit 0. */
function exitTwoOnError(err: CommanderError): never {
  process.exit(err.exitCode === 0 ? 0 : 2);
}

function parseDays(value: string): number {
  const days = /^\d{1,4}$/.test(value) ? Number(value) : NaN;
  if (!(days >= 1 && days <= MAX_LIFETIME_DAYS)) {
    throw new InvalidArgumentError(
      `expected a whole number of days from 1 to ${MAX_LIFETIME_DAYS}`,
    );
  }
  return days;
}

/** One of --data-dir or --config, never both (commander enforces the conflict). */
function dataDirOf(flags: StoreFlags): string {
  if (flags.dataDir) return flags.dataDir;
  if (flags.config) return loadRelayConfig(flags.config).relay.dataDir;
  throw new Error('say where the keys are: --data-dir <dir> or --config <relay.toml>');
}

function subcommand(name: string, description: string): Command {
  return new Command(name)
    .description(description)
    .addOption(
      new Option(
        '-d, --data-dir <dir>',
        `relay data directory (keys live in <dir>/${KEYS_DIR})`,
      ).conflicts('config'),
    )
    .addOption(new Option('-c, --config <file>', 'relay config (TOML): use its relay.dataDir'))
    .showHelpAfterError()
    .exitOverride(exitTwoOnError);
}

function range(k: TicketKeyInfo): string {
  return `${dayDate(k.notBeforeDay)} .. ${dayDate(k.notAfterDay)}`;
}

type KeyStatus = 'issuing' | 'next' | 'accepting' | 'expired';

function statusOf(k: TicketKeyInfo, today: number): KeyStatus {
  if (today < k.notBeforeDay) return 'next';
  if (today <= k.notAfterDay) return 'issuing';
  return today <= k.notAfterDay + REDEEM_GRACE_DAYS ? 'accepting' : 'expired';
}

const STATUS_TEXT: Record<KeyStatus, string> = {
  issuing: 'issuing today',
  next: 'not yet issuing',
  accepting: 'no longer issuing; its tickets are redeemable until the end of today',
  expired: 'expired; removed at the next rotation or relay maintenance',
};

function generateCommand(): Command {
  return subcommand(
    'generate',
    'create the relay identity and a first ticket key (never overwrites)',
  )
    .option(
      '--lifetime-days <n>',
      'days the first ticket key issues tickets (default 30)',
      parseDays,
    )
    .action(async (flags: StoreFlags & { lifetimeDays?: number }) => {
      try {
        const store = await KeyStore.create(dataDirOf(flags), {
          now,
          ...(flags.lifetimeDays ? { lifetimeDays: flags.lifetimeDays } : {}),
        });
        const [key] = store.ticketKeys();
        const lines = [
          `created keys in ${store.dir}`,
          `identity    ${store.identity.publicKeyHex} (ed25519)`,
        ];
        if (key) lines.push(`ticket key  ${key.keyId}  issues ${range(key)} (UTC)`);
        process.stdout.write(`${lines.join('\n')}\n`);
      } catch (err) {
        fail('keys generate', err);
      }
    });
}

function rotateCommand(): Command {
  return subcommand(
    'rotate',
    'add a new ticket key: it issues from tomorrow, the current key issues until the end of today',
  )
    .option('--lifetime-days <n>', 'days the new ticket key issues tickets (default 30)', parseDays)
    .action(async (flags: StoreFlags & { lifetimeDays?: number }) => {
      try {
        const store = await KeyStore.load(dataDirOf(flags), { now });
        const { created, retired } = await store.rotate(
          flags.lifetimeDays ? { lifetimeDays: flags.lifetimeDays } : {},
        );
        const pruned = await store.prune();
        const lines = [`new ticket key  ${created.keyId}  issues ${range(created)} (UTC)`];
        if (retired) {
          lines.push(
            `old ticket key  ${retired.keyId}  issues until ${dayDate(retired.notAfterDay)}, ` +
              `its tickets are redeemable until ${dayDate(retired.notAfterDay + REDEEM_GRACE_DAYS)}`,
          );
        }
        if (pruned.length > 0) lines.push(`removed expired ticket keys: ${pruned.join(', ')}`);
        lines.push('a running relay picks this up at its next key maintenance (or on restart)');
        process.stdout.write(`${lines.join('\n')}\n`);
      } catch (err) {
        fail('keys rotate', err);
      }
    });
}

function showCommand(): Command {
  return subcommand('show', 'print the public keys: relay identity, ticket key ids and validity')
    .option('--json', 'print one JSON object')
    .action(async (flags: StoreFlags & { json?: boolean }) => {
      try {
        const store = await KeyStore.load(dataDirOf(flags), { now });
        const today = store.today();
        const keys = store.ticketKeys().map((k) => ({
          ...k,
          notBefore: dayDate(k.notBeforeDay),
          notAfter: dayDate(k.notAfterDay),
          status: statusOf(k, today),
        }));
        if (flags.json) {
          const identity = { algorithm: 'ed25519', publicKey: store.identity.publicKeyHex };
          process.stdout.write(`${JSON.stringify({ identity, ticketKeys: keys })}\n`);
          return;
        }
        const lines = [
          `identity  ${store.identity.publicKeyHex} (ed25519)`,
          `ticket keys (UTC days; a ticket is redeemable on its issue day and the next):`,
          ...keys.map((k) => `  ${k.keyId}  ${k.publicKey}  ${range(k)}  ${STATUS_TEXT[k.status]}`),
        ];
        if (keys.length === 0) lines.push('  none: add one with powbridge keys rotate');
        process.stdout.write(`${lines.join('\n')}\n`);
      } catch (err) {
        fail('keys show', err);
      }
    });
}

export function keysCommand(): Command {
  return new Command('keys')
    .description('manage the relay identity and ticket keys (stored in <data-dir>/keys)')
    .showHelpAfterError()
    .exitOverride(exitTwoOnError)
    .addCommand(generateCommand())
    .addCommand(rotateCommand())
    .addCommand(showCommand());
}
