import { isIP } from 'node:net';
import { type Logger, silentLogger } from '../log.js';
import { Backoff } from '../lib/backoff.js';
import { readPrivateFile } from '../tickets/key-files.js';
import { authenticate } from './auth.js';
import {
  type TorControlAddress,
  TorControlConnection,
  TorControlError,
} from './control-connection.js';
import type { ControlReply } from './control-reply.js';
import { parseKeyBlob, parseServiceId, serviceIdOfKeyBlob } from './onion-address.js';
import { loadOnionKey, saveOnionKey } from './onion-key.js';

/**
 * The relay's onion service, created through Tor's control port (docs/design.md §1, §10): connect,
 * authenticate, ADD_ONION with the key from the data directory (a new key the first time,
 * saved at once), and keep the control connection open: the service is not detached, so Tor
 * removes it when the connection ends, whether we close it (DEL_ONION first) or the relay
 * dies. If Tor drops the connection (a Tor restart), the service is gone: that is logged as
 * an error and the service is published again, same key and address, once Tor is back.
 */

export interface OnionServiceOptions {
  control: TorControlAddress;
  /** The relay's data directory; the key lives in <dataDir>/tor/onion_key. */
  dataDir: string;
  /** Where Tor sends the service's connections: the relay's HTTP/WebSocket listener. */
  target: { host: string; port: number };
  /** The port clients connect to on the onion address (80: ws://<address>/…). */
  virtualPort: number;
  /** HASHEDPASSWORD: a file holding the control password (mode 0600) ... */
  passwordFile?: string;
  /** ... or the password itself (the CLI passes $POWBRIDGE_TOR_PASSWORD). */
  password?: string;
  /** Read the auth cookie here instead of where Tor says. */
  cookieFile?: string;
  timeoutMs?: number;
  /** Backoff between attempts to publish the service again after Tor dropped it. */
  retry?: { minMs: number; maxMs: number };
  logger?: Logger;
}

export interface OnionService {
  /** The 56-character v3 service id. */
  readonly serviceId: string;
  /** <serviceId>.onion */
  readonly hostname: string;
  readonly virtualPort: number;
  /** A URL on the onion address, e.g. url('ws', '/v1/circuit'). */
  url(scheme: 'ws' | 'http', path: string): string;
  /** DEL_ONION and close the control connection (idempotent). */
  close(): Promise<void>;
}

/** "127.0.0.1:8640" / "[::1]:8640" for ADD_ONION's Port= target; wildcards become loopback. */
export function onionTarget({ host, port }: { host: string; port: number }): string {
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new TorControlError(`onion service target port ${port} is not a port`);
  }
  const local = host === '0.0.0.0' || host === '' ? '127.0.0.1' : host === '::' ? '::1' : host;
  if (isIP(local) === 6) return `[${local}]:${port}`;
  if (isIP(local) === 4 || /^[A-Za-z0-9.-]{1,253}$/.test(local)) return `${local}:${port}`;
  throw new TorControlError(`onion service target host ${JSON.stringify(host)} is not an address`);
}

/** ServiceID and, for a new key, PrivateKey from an ADD_ONION reply (checked). */
export function parseAddOnionReply(reply: ControlReply): {
  serviceId: string;
  privateKey: string | null;
} {
  let serviceId: string | null = null;
  let privateKey: string | null = null;
  const texts = reply.lines.map((l) => l.text);
  if (texts[texts.length - 1] !== 'OK') throw new Error('ADD_ONION reply does not end with OK');
  for (const text of texts.slice(0, -1)) {
    // Tor may add lines (ClientAuth…) that we do not use.
    if (text.startsWith('ServiceID=')) serviceId = text.slice('ServiceID='.length);
    else if (text.startsWith('PrivateKey=')) privateKey = text.slice('PrivateKey='.length);
  }
  if (serviceId === null) throw new Error('ADD_ONION reply has no ServiceID');
  parseServiceId(serviceId);
  if (privateKey !== null) parseKeyBlob(privateKey);
  return { serviceId, privateKey };
}

async function readPassword(options: OnionServiceOptions): Promise<string | undefined> {
  if (options.passwordFile) {
    // Trailing newline from an editor or `echo` is not part of the password.
    return (await readPrivateFile(options.passwordFile)).replace(/\r?\n$/, '');
  }
  return options.password;
}

/** A published service on one control connection. */
interface Published {
  control: TorControlConnection;
  serviceId: string;
}

/**
 * Connect, authenticate and ADD_ONION (a new key the first time, saved at once; afterwards
 * the stored key, so the address never changes). A failure leaves nothing behind in Tor.
 */
async function publish(
  options: OnionServiceOptions,
  target: string,
  log: Logger,
): Promise<Published> {
  const { virtualPort } = options;
  const control = await TorControlConnection.connect(options.control, {
    ...(options.timeoutMs ? { timeoutMs: options.timeoutMs } : {}),
  });
  const where = `Tor control port ${control.address}`;
  // Set once Tor has the service: from then on a failure must remove it again.
  let serviceId = '';
  try {
    const method = await authenticate(control, {
      password: () => readPassword(options),
      ...(options.cookieFile ? { cookieFile: options.cookieFile } : {}),
    });
    const stored = await loadOnionKey(options.dataDir);
    const expected = stored === null ? null : serviceIdOfKeyBlob(stored);
    // The key goes to Tor only inside this command line; errors name the verb, not the line.
    const key = stored === null ? 'NEW:ED25519-V3' : `${stored} Flags=DiscardPK`;
    const reply = await control.command(`ADD_ONION ${key} Port=${virtualPort},${target}`);
    const added = parseAddOnionReply(reply);
    serviceId = added.serviceId;
    if (expected !== null && serviceId !== expected) {
      throw new Error(`Tor published ${serviceId}.onion, but the stored key is for ${expected}`);
    }
    if (stored === null) {
      if (added.privateKey === null) throw new Error('ADD_ONION NEW returned no PrivateKey');
      if (serviceIdOfKeyBlob(added.privateKey) !== serviceId) {
        throw new Error('ADD_ONION returned a PrivateKey that is not the ServiceID');
      }
      await saveOnionKey(options.dataDir, added.privateKey);
    }
    log.info(
      { onion: `${serviceId}.onion`, auth: method, newKey: stored === null, target },
      'onion service published',
    );
    return { control, serviceId };
  } catch (err) {
    if (serviceId) await control.request(`DEL_ONION ${serviceId}`).catch(() => undefined);
    await control.close();
    const message = err instanceof Error ? err.message : String(err);
    throw new TorControlError(`${where}: ${message}`);
  }
}

export async function startOnionService(options: OnionServiceOptions): Promise<OnionService> {
  const log = options.logger ?? silentLogger;
  const target = onionTarget(options.target);
  const { virtualPort } = options;
  if (!Number.isInteger(virtualPort) || virtualPort < 1 || virtualPort > 65535) {
    throw new TorControlError(`onion service port ${virtualPort} is not a port`);
  }
  // The first publication must work: a relay that cannot be reached should not start.
  let current: Published = await publish(options, target, log);
  const { serviceId } = current;
  const backoff = new Backoff(options.retry ?? { minMs: 1_000, maxMs: 60_000 });
  let closing = false;
  let retryTimer: NodeJS.Timeout | null = null;

  /**
   * Tor restarted (or dropped us): the service went with the connection. Publish it again
   * with the stored key, so the address is the same, retrying with backoff until Tor is back.
   */
  const watch = (published: Published) => {
    published.control.on('close', (reason) => {
      if (closing) return;
      log.error(
        { reason, onion: `${serviceId}.onion` },
        'lost the Tor control connection: Tor has removed the onion service; re-adding it',
      );
      retry();
    });
  };
  const retry = () => {
    if (closing) return;
    retryTimer = setTimeout(() => {
      retryTimer = null;
      publish(options, target, log).then(
        (published) => {
          if (closing) {
            void published.control
              .request(`DEL_ONION ${published.serviceId}`)
              .catch(() => undefined);
            void published.control.close();
            return;
          }
          backoff.reset();
          current = published;
          watch(published);
        },
        (err: unknown) => {
          log.warn(
            { err: err instanceof Error ? err.message : String(err) },
            'onion service not re-added yet',
          );
          retry();
        },
      );
    }, backoff.next());
    retryTimer.unref();
  };
  watch(current);

  const hostname = `${serviceId}.onion`;
  return {
    serviceId,
    hostname,
    virtualPort,
    // ws:// and http:// default to port 80, so the usual URL has no port.
    url: (scheme, path) =>
      `${scheme}://${hostname}${virtualPort === 80 ? '' : `:${virtualPort}`}${path}`,
    async close() {
      if (closing) return;
      closing = true;
      if (retryTimer) clearTimeout(retryTimer);
      const { control } = current;
      if (!control.closed) {
        await control.request(`DEL_ONION ${serviceId}`).catch(() => undefined);
        await control.close();
      }
    },
  };
}
