import { resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Command, InvalidArgumentError, Option } from 'commander';
import { loadRelayConfig } from '../relay/config.js';
import { writeFamilyKeyFile } from '../relay/family-keys.js';
import { schemeOfName } from '../tickets/descriptor.js';
import {
  dayDate,
  DEFAULT_TICKET_SCHEME,
  KEYS_DIR,
  KeyStore,
  MAX_LIFETIME_DAYS,
  REDEEM_GRACE_DAYS,
  type TicketKeyInfo,
} from '../tickets/key-store.js';
import { TICKET_SCHEME_KINDS, type TicketScheme } from '../tickets/keyring.js';
import { generateRsaKeyAsync, type RsaKeygenProgress } from '../tickets/rsa-keygen.js';
import type { RsaPrivateKey } from '../tickets/rsa-scheme.js';
import { fail } from './output.js';
import { UsageError } from './usage-error.js';

/**
 * `powbridge keys generate | rotate | show | family-key`: the relay's identity and ticket keys
 * on disk, and the family key that seals them in a family's database.
 * Output holds public parts only; secrets stay in the 0600 files. Progress of an RSA key's
 * generation (safe primes take seconds) goes to stderr.
 */

interface StoreFlags {
  dataDir?: string;
  config?: string;
}

interface MakeFlags extends StoreFlags {
  lifetimeDays?: number;
  scheme?: TicketScheme;
}

const now = () => Date.now() / 1000;

function parseDays(value: string): number {
  const days = /^\d{1,4}$/.test(value) ? Number(value) : NaN;
  if (!(days >= 1 && days <= MAX_LIFETIME_DAYS)) {
    throw new InvalidArgumentError(
      `expected a whole number of days from 1 to ${MAX_LIFETIME_DAYS}`,
    );
  }
  return days;
}

/**
 * Where the keys are and which scheme new keys get: one of --data-dir or --config, never both
 * (commander enforces the conflict); --scheme, else the config's tickets.scheme, else rsa.
 */
function storeOf(flags: MakeFlags): { dataDir: string; scheme: TicketScheme } {
  const scheme = flags.scheme;
  if (flags.dataDir) return { dataDir: flags.dataDir, scheme: scheme ?? DEFAULT_TICKET_SCHEME };
  if (flags.config) {
    const config = loadRelayConfig(flags.config);
    return { dataDir: config.relay.dataDir, scheme: scheme ?? config.tickets.scheme };
  }
  throw new UsageError('say where the keys are: --data-dir <dir> or --config <relay.toml>');
}

function schemeOption(): Option {
  return new Option(
    '--scheme <scheme>',
    'ticket scheme of the new key: rsa (partially blind RSA) or ao (Abe–Okamoto); ' +
      'default: tickets.scheme of --config, else rsa',
  ).choices(TICKET_SCHEME_KINDS);
}

function progressLine({ found, elapsedMs }: RsaKeygenProgress): string {
  return `finding safe primes for an RSA ticket key… ${found}/2 (${(elapsedMs / 1000).toFixed(1)} s)`;
}

/**
 * An RSA key generator that reports on stderr while it finds the two safe primes: a line per
 * prime found, or on a terminal one line kept up to date.
 */
function rsaKeyWithProgress(): () => Promise<RsaPrivateKey> {
  return async () => {
    const tty = process.stderr.isTTY;
    const started = performance.now();
    let found = 0;
    const ticker = tty
      ? setInterval(() => {
          process.stderr.write(
            `\r${progressLine({ found, elapsedMs: performance.now() - started })}`,
          );
        }, 250)
      : undefined;
    try {
      return await generateRsaKeyAsync({
        onProgress: (progress) => {
          found = progress.found;
          process.stderr.write(tty ? `\r${progressLine(progress)}` : `${progressLine(progress)}\n`);
        },
      });
    } finally {
      clearInterval(ticker);
      if (tty) process.stderr.write('\n');
    }
  };
}

/** The scheme's short name, as --scheme and tickets.scheme spell it. */
function schemeText(k: TicketKeyInfo): TicketScheme {
  return schemeOfName(k.scheme);
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
    .addOption(new Option('-c, --config <file>', 'relay config (TOML): use its relay.dataDir'));
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
    .addOption(schemeOption())
    .action(async (flags: MakeFlags) => {
      try {
        const { dataDir, scheme } = storeOf(flags);
        const store = await KeyStore.create(dataDir, {
          now,
          scheme,
          generateRsaKey: rsaKeyWithProgress(),
          ...(flags.lifetimeDays ? { lifetimeDays: flags.lifetimeDays } : {}),
        });
        const [key] = store.ticketKeys();
        const lines = [
          `created keys in ${store.dir}`,
          `identity    ${store.identity.publicKeyHex} (ed25519)`,
        ];
        if (key) {
          lines.push(
            `ticket key  ${key.keyId}  issues ${range(key)} (UTC), scheme ${schemeText(key)}`,
          );
        }
        process.stdout.write(`${lines.join('\n')}\n`);
      } catch (err) {
        fail('keys generate', err);
      }
    });
}

function rotateCommand(): Command {
  return subcommand(
    'rotate',
    'add a new ticket key of a scheme: it issues from tomorrow, the current key of that ' +
      'scheme issues until the end of today',
  )
    .option('--lifetime-days <n>', 'days the new ticket key issues tickets (default 30)', parseDays)
    .addOption(schemeOption())
    .action(async (flags: MakeFlags) => {
      try {
        const { dataDir, scheme } = storeOf(flags);
        const store = await KeyStore.load(dataDir, {
          now,
          scheme,
          generateRsaKey: rsaKeyWithProgress(),
        });
        const { created, retired } = await store.rotate({
          scheme,
          ...(flags.lifetimeDays ? { lifetimeDays: flags.lifetimeDays } : {}),
        });
        const pruned = await store.prune();
        const lines = [
          `new ticket key  ${created.keyId}  issues ${range(created)} (UTC), scheme ${scheme}`,
        ];
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
  return subcommand(
    'show',
    'print the public keys: relay identity, ticket key ids, schemes and validity',
  )
    .option('--json', 'print one JSON object')
    .action(async (flags: StoreFlags & { json?: boolean }) => {
      try {
        const store = await KeyStore.load(storeOf(flags).dataDir, { now });
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
          ...keys.flatMap((k) => [
            `  ${k.keyId}  ${schemeText(k).padEnd(3)}  ${range(k)}  ${STATUS_TEXT[k.status]}`,
            `    public key ${k.publicKey}`,
          ]),
        ];
        if (keys.length === 0) lines.push('  none: add one with powbridge keys rotate');
        process.stdout.write(`${lines.join('\n')}\n`);
      } catch (err) {
        fail('keys show', err);
      }
    });
}

function familyKeyCommand(): Command {
  return new Command('family-key')
    .description(
      'write a new family key (mode 0600) for storage.familyKeyFile: a relay family on one ' +
        'PostgreSQL database keeps its keys there sealed under it (never overwrites)',
    )
    .requiredOption('-o, --out <file>', 'where to write the family key')
    .action(async (flags: { out: string }) => {
      try {
        await writeFamilyKeyFile(flags.out);
        const file = resolve(flags.out);
        const lines = [
          `wrote a new family key to ${file} (mode 0600)`,
          'next:',
          '  1. copy it (mode 0600) to every instance of the family, and keep a copy offline:',
          '     without it the keys in the database cannot be opened',
          "  2. in each instance's relay.toml, beside storage.url:",
          '       [storage]',
          `       familyKeyFile = ${JSON.stringify(file)}`,
          '  3. start first the instance whose keys the family keeps (it uploads them), then',
          "     the others (they take the family's keys)",
        ];
        process.stdout.write(`${lines.join('\n')}\n`);
      } catch (err) {
        fail('keys family-key', err);
      }
    });
}

export function keysCommand(): Command {
  return new Command('keys')
    .description('manage the relay identity and ticket keys (stored in <data-dir>/keys)')
    .addCommand(generateCommand())
    .addCommand(rotateCommand())
    .addCommand(showCommand())
    .addCommand(familyKeyCommand());
}
